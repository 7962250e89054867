package proxy_test

// sipgo reads each connection through a small buffer (streamReadBuffer,
// readbuf.go), and UDP listeners read datagrams whole around it. These
// tests send messages larger than that buffer over real sockets: a UDP
// datagram (and one larger than sipgo's old 32 KiB buffer), TCP and TLS
// messages written in pieces that cut lines anywhere, and several messages
// in one write. Each must reach the next hop with its body intact; a
// message over limits.max_message_bytes is still refused.

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const rbPeer = "peers:\n  - {name: gw, sources: [\"127.0.0.1/32\"]}\n"

// rbInvite is an INVITE from the trusted source to a voicemail mailbox whose
// body is about size bytes long and unique to the call.
func rbInvite(transport, local string, size int) (msg []byte, callID, body string) {
	callID = "rb-" + sip.GenerateTagN(16)
	pad := size - len(testSDP) - 32
	body = testSDP + "a=x-pad:" + callID + ":" + strings.Repeat("0123456789", pad/10+1)[:max(pad, 0)] + "\r\n"
	mailbox := "sip:alice@contoso.com;opaque=app:voicemail"
	m := oxRaw{start: "INVITE " + mailbox + " SIP/2.0", lines: []string{
		fmt.Sprintf("Via: SIP/2.0/%s %s;branch=%s-rb%s", strings.ToUpper(transport), local, sip.RFC3261BranchMagicCookie, sip.GenerateTagN(10)),
		"Max-Forwards: 70",
		"From: <sip:+15550100@contoso.com>;tag=" + sip.GenerateTagN(8),
		"To: <" + mailbox + ">",
		"Call-ID: " + callID,
		"CSeq: 1 INVITE",
		"Contact: <sip:gw@" + local + ";transport=" + transport + ">",
		"Content-Type: application/sdp",
		fmt.Sprintf("Content-Length: %d", len(body)),
	}, body: body}
	return m.bytes(), callID, body
}

// rbStart is a proxy whose voicemail is a raw UA over TCP that declines
// every INVITE (so nothing stays open).
func rbStart(t *testing.T, limits string) (*testProxy, *oxListener) {
	t.Helper()
	um := oxListen(t, "um", "tcp")
	um.onInvite = func(tx *oxTx) { tx.respond(603, "Decline", nil) }
	px := startProxy(t, proxyOpts{voicemail: um.uri(), peers: rbPeer, limits: limits})
	um.serve(t, px)
	return px, um
}

// rbRelayed checks that um received the INVITE callID once, body intact.
func rbRelayed(t *testing.T, um *oxListener, callID, body string) {
	t.Helper()
	got := rvAt(um.oxUA, "INVITE", callID, 5*time.Second)
	if len(got) != 1 {
		t.Errorf("%s: the next hop received %d INVITEs, want 1", callID, len(got))
		return
	}
	if b := string(got[0].req.Body()); b != body {
		t.Errorf("%s: body of %d bytes relayed as %d bytes", callID, len(body), len(b))
	}
}

// rbWritePieces writes b in pieces of a prime size, so that the cuts fall
// inside lines, inside CRLF pairs and inside the body.
func rbWritePieces(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	for len(b) > 0 {
		n := min(997, len(b))
		if _, err := c.Write(b[:n]); err != nil {
			t.Fatalf("write: %v", err)
		}
		b = b[n:]
		time.Sleep(time.Millisecond) // pace the pieces into segments of their own
	}
}

func TestLargeDatagramRelayedWhole(t *testing.T) {
	px, um := rbStart(t, "")
	c, err := net.Dial("udp", px.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Over the stream read buffer; and over sipgo's old 32 KiB buffer, which
	// used to cut it (max_message_bytes is 65,535 by default).
	for _, size := range []int{12000, 40000} {
		msg, callID, body := rbInvite("udp", c.LocalAddr().String(), size)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		rbRelayed(t, um, callID, body)
	}
}

func TestOversizeDatagramRefused(t *testing.T) {
	px, um := rbStart(t, "limits:\n  max_message_bytes: 20000\n")
	c, err := net.Dial("udp", px.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big, bigID, _ := rbInvite("udp", c.LocalAddr().String(), 30000)
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an oversized datagram throttled", func() bool {
		return testutil.ToFloat64(px.m.Throttled.WithLabelValues("message_size")) >= 1
	})
	// Under the limit, over the read buffer: relayed, and the big one was not.
	msg, callID, body := rbInvite("udp", c.LocalAddr().String(), 15000)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	rbRelayed(t, um, callID, body)
	if got := rvAt(um.oxUA, "INVITE", bigID, 0); len(got) != 0 {
		t.Errorf("a datagram over max_message_bytes was relayed")
	}
}

// rbDial connects to the proxy's TCP or TLS listener.
func rbDial(t *testing.T, px *testProxy, transport string) net.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if transport == "tls" {
		c, err = tls.DialWithDialer(d, "tcp", px.Addr("tls"), px.pki.clientTLS(t, ""))
	} else {
		c, err = d.Dial("tcp", px.Addr("tcp"))
	}
	if err != nil {
		t.Fatalf("dial %s: %v", transport, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestLargeStreamMessagesParsed(t *testing.T) {
	for _, transport := range []string{"tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			px, um := rbStart(t, "")
			c := rbDial(t, px, transport)
			local := c.LocalAddr().String()
			// Three messages in one write: small, over the buffer, small.
			a, aID, aBody := rbInvite(transport, local, 600)
			b, bID, bBody := rbInvite(transport, local, 9000)
			d, dID, dBody := rbInvite(transport, local, 700)
			if _, err := c.Write(append(append(a, b...), d...)); err != nil {
				t.Fatal(err)
			}
			// One over the buffer several times, in pieces.
			e, eID, eBody := rbInvite(transport, local, 30000)
			rbWritePieces(t, c, e)
			rbRelayed(t, um, aID, aBody)
			rbRelayed(t, um, bID, bBody)
			rbRelayed(t, um, dID, dBody)
			rbRelayed(t, um, eID, eBody)
		})
	}
}

func TestOversizeStreamMessageRefused(t *testing.T) {
	for _, transport := range []string{"tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			px, um := rbStart(t, "limits:\n  max_message_bytes: 20000\n")
			c := rbDial(t, px, transport)
			msg, callID, _ := rbInvite(transport, c.LocalAddr().String(), 30000)
			// The proxy may close the connection before the last piece.
			for b := msg; len(b) > 0; {
				n := min(997, len(b))
				if _, err := c.Write(b[:n]); err != nil {
					break
				}
				b = b[n:]
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatal("the connection stayed open after a message over max_message_bytes")
					}
					break
				}
			}
			if got := rvAt(um.oxUA, "INVITE", callID, 0); len(got) != 0 {
				t.Errorf("a message over max_message_bytes was relayed")
			}
		})
	}
}
