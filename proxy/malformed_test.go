package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// syncBuffer is a log sink the proxy's goroutines write to concurrently.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// malformedKinds are requests sipgo's parser cannot read, each with the
// reason it is counted under. Their Via is fine: each gets a 400.
var malformedKinds = []struct {
	reason string
	header string // the header line that breaks the request
}{
	{"contact", "Contact: x@host"},
	{"from", "From: Alice"},
	{"cseq", "CSeq: abc REGISTER"},
	{"line_break", "Contact: <sip:alice@127.0.0.1>\nMs-Exchange-Command: skip-pin"},
}

// malformedRegister is a REGISTER from a UA at via (host:port) with one
// broken header line (a broken From or CSeq replaces the good one).
func malformedRegister(transport, via string, n int, bad string) string {
	lines := []string{
		"REGISTER sip:contoso.com SIP/2.0",
		fmt.Sprintf("Via: SIP/2.0/%s %s;branch=z9hG4bK-mal%d;rport", strings.ToUpper(transport), via, n),
		"Max-Forwards: 70",
		"From: <sip:alice@contoso.com>;tag=mal" + fmt.Sprint(n),
		"To: <sip:alice@contoso.com>",
		fmt.Sprintf("Call-ID: mal-%s-%d", transport, n),
		"CSeq: 1 REGISTER",
	}
	name, _, _ := strings.Cut(bad, ":")
	kept := lines[:0]
	for _, l := range lines {
		if !strings.HasPrefix(l, name+":") {
			kept = append(kept, l)
		}
	}
	kept = append(kept, bad, "Content-Length: 0")
	return strings.Join(kept, "\r\n") + "\r\n\r\n"
}

// TestMalformedFloodStaysOutOfTheLog: 1,000 unreadable requests over UDP
// (and some over TCP) are counted by reason, each is answered 400 where its
// Via can be read, and the log (at the operator's level, info) gets a
// summary line per source and minute instead of one ERROR line with the
// whole message per datagram (about 680 bytes each before).
func TestMalformedFloodStaysOutOfTheLog(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	px := startProxy(t, proxyOpts{limits: "limits:\n  requests_per_second: 0\n", logger: logger})
	started := len(logs.String()) // the listening lines

	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	dst, _ := net.ResolveUDPAddr("udp", px.Addr("udp"))
	// The Via names a port nobody listens on: rport sends the 400 to the
	// socket the request came from (RFC 3581), as for any request.
	const total = 1000
	answered := make(chan string, total)
	go func() {
		buf := make([]byte, 65535)
		for {
			n, _, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			status, callID := statusLineOf(buf[:n])
			if strings.HasPrefix(status, "SIP/2.0 400 ") {
				answered <- callID
			}
		}
	}()
	// At most 32 unanswered at a time, as a UA's transactions would be: the
	// socket buffers never overflow, however slow the machine.
	got := map[string]bool{}
	receive := func() bool {
		select {
		case id := <-answered:
			got[id] = true
			return true
		case <-time.After(10 * time.Second):
			return false
		}
	}
	for i := range total {
		for i-len(got) >= 32 {
			if !receive() {
				t.Fatalf("%d of %d malformed requests answered 400", len(got), i)
			}
		}
		k := malformedKinds[i%len(malformedKinds)]
		if _, err := uc.WriteTo([]byte(malformedRegister("udp", "127.0.0.1:9", i, k.header)), dst); err != nil {
			t.Fatal(err)
		}
	}
	for len(got) < total {
		if !receive() {
			t.Errorf("%d of %d malformed requests answered 400", len(got), total)
			break
		}
	}
	for ki, k := range malformedKinds {
		want := 0.0
		for i := range total {
			if i%len(malformedKinds) == ki {
				want++
			}
		}
		if n := testutil.ToFloat64(px.m.Malformed.WithLabelValues("udp", k.reason)); n != want {
			t.Errorf("malformed_total{udp,%s} = %v, want %v", k.reason, n, want)
		}
	}

	// Over TCP the 400 comes back on the connection, which stays open.
	c, err := net.Dial("tcp", px.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i, k := range malformedKinds {
		via := c.LocalAddr().String()
		if _, err := c.Write([]byte(malformedRegister("tcp", via, i, k.header))); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		raw, err := readResponse(br)
		if err != nil {
			t.Fatalf("TCP %s: no response: %v", k.reason, err)
		}
		status, callID := statusLineOf(raw)
		if !strings.HasPrefix(status, "SIP/2.0 400 ") || callID != fmt.Sprintf("mal-tcp-%d", i) {
			t.Errorf("TCP %s: got %q for %q", k.reason, status, callID)
		}
		// What did not parse is echoed as received (From) or as CSeq 0.
		if want := map[string]string{"from": "\r\nFrom: Alice\r\n", "cseq": "\r\nCSeq: 0 REGISTER\r\n"}[k.reason]; !bytes.Contains(raw, []byte(want)) {
			t.Errorf("TCP %s: the 400 lacks %q:\n%s", k.reason, want, raw)
		}
		if n := testutil.ToFloat64(px.m.Malformed.WithLabelValues("tcp", k.reason)); n != 1 {
			t.Errorf("malformed_total{tcp,%s} = %v, want 1", k.reason, n)
		}
	}

	// What sipgo cannot read at all (no request line: no Via to answer)
	// is counted from sipgo's own report, and kept out of the log too.
	for i := range 100 {
		if _, err := uc.WriteTo([]byte("\x16\x03\x01 not sip at all\r\n\r\n"), dst); err != nil {
			t.Fatal(err)
		}
		if i%20 == 19 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(t, "100 unreadable datagrams counted", func() bool {
		return testutil.ToFloat64(px.m.Malformed.WithLabelValues("udp", "start_line")) == 100
	})

	out := logs.String()[started:]
	lines := strings.Count(out, "\n")
	t.Logf("log after %d malformed messages: %d bytes, %d lines:\n%s", total+len(malformedKinds)+100, len(out), lines, out)
	// One summary line for 127.0.0.1 (UDP and TCP alike) and one for the
	// messages sipgo reports without a source.
	if lines > 3 || len(out) > 2048 {
		t.Errorf("the log grew by %d bytes in %d lines; want at most 3 lines", len(out), lines)
	}
	if strings.Contains(out, "level=ERROR") {
		t.Error("a malformed message was logged at ERROR")
	}
}

// TestReadFilterCoversStreams: the read filter (max_message_bytes, flood)
// applies to TCP as to UDP. sipgo gives a transport passed in the read
// filter set at that moment, so the filter must be set before the
// transports; it was not, and TCP and TLS reads went unfiltered.
func TestReadFilterCoversStreams(t *testing.T) {
	px := startProxy(t, proxyOpts{limits: "limits:\n  max_message_bytes: 1000\n"})
	c, err := net.Dial("tcp", px.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := "OPTIONS sip:" + px.Addr("tcp") + " SIP/2.0\r\nX-Pad: " + strings.Repeat("y", 2000) + "\r\n\r\n"
	if _, err := c.Write([]byte(big)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an oversized TCP read throttled", func() bool {
		return testutil.ToFloat64(px.m.Throttled.WithLabelValues("message_size")) >= 1
	})
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the connection stayed open after an oversized read")
	}
}

// TestMalformedResponsesCounted: responses a next hop sends with a header
// that does not parse are not relayed (the caller gets 502 for the final
// one), are counted, and take one log line however many there are.
func TestMalformedResponsesCounted(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	um := oxListen(t, "um", "tls")
	um.onInvite = func(tx *oxTx) {
		for _, code := range []int{180, 180, 180, 180, 180, 486} {
			res := sip.NewResponseFromRequest(tx.req, code, "Whatever", nil)
			res.To().Params.Add("tag", tx.tag)
			res.AppendHeader(sip.NewHeader("Contact", "x@host"))
			_ = tx.c.write([]byte(res.String()))
		}
	}
	px := startProxy(t, proxyOpts{voicemail: um.uri(), logger: logger})
	um.serve(t, px)
	started := len(logs.String())
	alice := oxNewUA(t, "alice")
	c := alice.dial(t, px, "tls", px.pki.clientTLS(t, "sip:alice@contoso.com"))
	mailbox := "sip:alice@contoso.com;opaque=app:voicemail"
	inv := rvRequest(c, "tls", "INVITE", mailbox, "<sip:alice@contoso.com>", "<"+mailbox+">")
	if res := rvSend(t, c, inv, 5*time.Second); res == nil || res.StatusCode != 502 {
		t.Fatalf("want 502 for a malformed 486, got %v", res)
	}
	// The 486 is counted before the 502 goes out; the 180s, handled on
	// goroutines of their own, only when they reach the call before it ends.
	if n := testutil.ToFloat64(px.m.Malformed.WithLabelValues("tls", "contact")); n < 1 {
		t.Errorf("malformed_total{tls,contact} = %v, want the 486 counted", n)
	}
	out := logs.String()[started:]
	if n := strings.Count(out, "malformed SIP message"); n != 1 {
		t.Errorf("%d malformed lines, want 1:\n%s", n, out)
	}
}
