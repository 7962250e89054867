package proxy_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestFloodFromOneSource: while 127.0.0.2 floods the proxy's UDP socket
// with garbage, oversized datagrams and bogus INVITEs (about 10,000
// datagrams a second, 20x what the rate limit lets through) and opens
// garbage TCP connections, good calls from 127.0.0.1 (over TCP: a UDP flood
// fills the shared socket buffer before any per-source logic can act) all
// succeed.
func TestFloodFromOneSource(t *testing.T) {
	px := startProxy(t, proxyOpts{limits: "limits:\n  requests_per_second: 100\n  burst: 200\n"})
	bob := newPhone(t, px, "bob", "tcp", phoneOpts{listen: true})
	bob.mustRegister(t)
	alice := newPhone(t, px, "alice", "tcp", phoneOpts{listen: true})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	flooding, stop := context.WithCancel(ctx)
	var sent atomic.Int64
	var wg sync.WaitGroup
	attacker := &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}
	dst, _ := net.ResolveUDPAddr("udp", px.Addr("udp"))
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialUDP("udp", attacker, dst)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			garbage := []byte("\x16\x03\x01 not sip at all\r\n\r\n")
			huge := []byte(strings.Repeat("X", 60000))
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for i := 0; flooding.Err() == nil && i < 200000; i++ {
				if i%5 == 0 {
					<-tick.C // 5 datagrams a millisecond per writer
				}
				var msg []byte
				switch i % 10 {
				case 0:
					msg = garbage
				case 1:
					msg = huge
				default:
					msg = []byte("INVITE sip:nobody" + itoa(i) + "@contoso.com SIP/2.0\r\n" +
						"Via: SIP/2.0/UDP 127.0.0.2:9;branch=z9hG4bKflood" + itoa(w) + "x" + itoa(i) + "\r\n" +
						"From: <sip:evil@fabrikam.com>;tag=" + itoa(i) + "\r\nTo: <sip:nobody@contoso.com>\r\n" +
						"Call-ID: flood-" + itoa(w) + "-" + itoa(i) + "\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
				}
				c.Write(msg)
				sent.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() { // garbage over TCP connections from the same source
		defer wg.Done()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
		for i := 0; flooding.Err() == nil && i < 2000; i++ {
			c, err := d.DialContext(flooding, "tcp", px.Addr("tcp"))
			if err != nil {
				continue
			}
			c.Write([]byte("GARBAGE\r\n\r\n" + strings.Repeat("Y", 1000)))
			c.Close()
		}
	}()

	const calls = 30
	ok := 0
	for i := range calls {
		sess, err := alice.call(ctx, uri("bob"))
		if err != nil {
			t.Errorf("good call %d during the flood: %v (%d)", i, err, statusOf(err))
			continue
		}
		sess.Ack(ctx)
		sess.Bye(ctx)
		ok++
	}
	stop()
	wg.Wait()
	t.Logf("flood: %d datagrams from 127.0.0.2; good calls %d/%d; throttled rate=%v flood=%v message_size=%v",
		sent.Load(), ok, calls, testutil.ToFloat64(px.m.Throttled.WithLabelValues("rate")),
		testutil.ToFloat64(px.m.Throttled.WithLabelValues("flood")), testutil.ToFloat64(px.m.Throttled.WithLabelValues("message_size")))
	if ok != calls {
		t.Fatalf("only %d of %d good calls succeeded during the flood", ok, calls)
	}
	if testutil.ToFloat64(px.m.Throttled.WithLabelValues("rate"))+testutil.ToFloat64(px.m.Throttled.WithLabelValues("flood")) == 0 {
		t.Fatal("the flood was never rate limited")
	}
	if n := len(bob.requests); n != calls {
		t.Fatalf("bob rang %d times, want %d (bogus INVITEs must not reach him)", n, calls)
	}
}

// TestBruteForceThrottling: a source that fails digest N times is refused
// (403, no challenge) for a while; another source is unaffected.
func TestBruteForceThrottling(t *testing.T) {
	px := startProxy(t, proxyOpts{limits: "limits:\n  auth_failures: 3\n  auth_failure_window: 1m\n  auth_block: 1m\n"})
	attacker := newPhoneFrom(t, px, "bob", "127.0.0.3")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	codes := []int{}
	for i := range 5 {
		res, err := attacker.client.Do(ctx, attacker.registerRequest(300))
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode == 401 {
			c, _ := digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
			cred, _ := digest.Digest(c, digest.Options{Method: "REGISTER", URI: "sip:contoso.com", Username: "bob", Password: "guess" + itoa(i)})
			req := attacker.registerRequest(300)
			req.AppendHeader(sip.NewHeader("Authorization", cred.String()))
			res, err = attacker.client.Do(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
		}
		codes = append(codes, res.StatusCode)
	}
	// Three wrong answers (re-challenged), then refused outright.
	want := []int{401, 401, 403, 403, 403}
	for i := range want {
		if codes[i] != want[i] {
			t.Fatalf("answers %v, want %v", codes, want)
		}
	}
	if got := testutil.ToFloat64(px.m.Throttled.WithLabelValues("auth_blocked")); got < 2 {
		t.Fatalf("throttled_total{auth_blocked} = %v", got)
	}
	// The right password from the blocked source is refused too ...
	res, err := attacker.register(ctx, 300)
	if err != nil || res.StatusCode != 403 {
		t.Fatalf("blocked source with the right password: %v %v", res, err)
	}
	// ... and another source is not affected.
	good := newPhone(t, px, "bob", "tcp", phoneOpts{listen: true})
	good.mustRegister(t)
}

// TestConnectionLimit: the connections one source may hold are bounded;
// the next one is reset at accept and counted.
func TestConnectionLimit(t *testing.T) {
	px := startProxy(t, proxyOpts{limits: "limits:\n  connections_per_source: 3\n"})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", px.Addr("tcp"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	c, err := net.Dial("tcp", px.Addr("tcp"))
	if err == nil {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil {
		t.Fatal("the 4th connection was served")
	}
	waitFor(t, "the rejection counted", func() bool {
		return testutil.ToFloat64(px.m.Throttled.WithLabelValues("connections")) == 1
	})
	conns[0].Close()
	conns = conns[1:]
	// A freed slot is usable again: a full REGISTER over a new connection.
	waitFor(t, "a free slot", func() bool {
		c, err := net.Dial("tcp", px.Addr("tcp"))
		if err != nil {
			return false
		}
		conns = append(conns, c)
		c.Write([]byte("OPTIONS sip:" + px.Addr("tcp") + " SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKopt1\r\nFrom: <sip:x@fabrikam.com>;tag=1\r\nTo: <sip:" + px.Addr("tcp") + ">\r\nCall-ID: opt1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 512)
		n, _ := c.Read(buf)
		return strings.HasPrefix(string(buf[:n]), "SIP/2.0 200")
	})
}

func itoa(i int) string { return strconv.Itoa(i) }

// newPhoneFrom is a TCP phone whose connections come from localIP (any
// 127/8 address is loopback: another source as far as the proxy knows).
func newPhoneFrom(t *testing.T, px *testProxy, user, localIP string) *phone {
	return newPhone(t, px, user, "tcp", phoneOpts{localIP: localIP})
}
