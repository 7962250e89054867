package proxy_test

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestStreamFloodClosed: a TCP or TLS connection whose source sends far
// beyond its rate (the read filter's flood limit, five times
// requests_per_second and burst) is closed unparsed, as on UDP the datagrams
// are dropped. The read filter finds the source in the connection's remote
// address; the stall guard wraps every accepted connection and must hand
// that address on in a form the filter knows (it once returned a formatted
// copy of its own type, and the flood limit silently stopped applying to
// TCP and TLS).
func TestStreamFloodClosed(t *testing.T) {
	for _, transport := range []string{"tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			px := startProxy(t, proxyOpts{limits: "limits:\n  requests_per_second: 1\n  burst: 1\n"})
			var c net.Conn
			var err error
			if transport == "tls" {
				c, err = tls.Dial("tcp", px.Addr("tls"), px.pki.clientTLS(t, "sip:alice@contoso.com"))
			} else {
				c, err = net.Dial("tcp", px.Addr("tcp"))
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Drain what the proxy answers so that its writes never block.
			closed := make(chan struct{})
			go func() {
				defer close(closed)
				buf := make([]byte, 64<<10)
				for {
					_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
			local := c.LocalAddr().String()
			// 40 requests in well under a second: 8x the flood burst (5).
			for i := range 40 {
				msg := "OPTIONS sip:" + px.Addr(transport) + " SIP/2.0\r\n" +
					"Via: SIP/2.0/" + strings.ToUpper(transport) + " " + local + ";branch=z9hG4bKfl" + itoa(i) + "\r\n" +
					"Max-Forwards: 70\r\nFrom: <sip:x@example.com>;tag=f" + itoa(i) + "\r\nTo: <sip:" + px.Addr(transport) + ">\r\n" +
					"Call-ID: streamflood-" + itoa(i) + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
				if _, err := c.Write([]byte(msg)); err != nil {
					break // closed by the proxy: what we want
				}
				time.Sleep(2 * time.Millisecond) // one request per read
			}
			waitFor(t, "the flood throttled", func() bool {
				return testutil.ToFloat64(px.m.Throttled.WithLabelValues("flood")) >= 1
			})
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("the flooding connection stayed open")
			}
		})
	}
}

// TestOversizeStreamHeadersRefused: headers dripped in pieces smaller than
// the read buffer, as one line that never ends or as many complete lines,
// are bounded by max_message_bytes like a body is: the connection is closed
// once the message passes the limit, with no end of headers ever sent.
func TestOversizeStreamHeadersRefused(t *testing.T) {
	for _, shape := range []string{"one-line", "many-lines"} {
		t.Run(shape, func(t *testing.T) {
			px := startProxy(t, proxyOpts{limits: "limits:\n  max_message_bytes: 20000\n"})
			c, err := net.Dial("tcp", px.Addr("tcp"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			head := "OPTIONS sip:" + px.Addr("tcp") + " SIP/2.0\r\nVia: SIP/2.0/TCP " + c.LocalAddr().String() + ";branch=z9hG4bKdrip\r\n"
			var rest string
			if shape == "one-line" {
				rest = "X-Pad: " + strings.Repeat("y", 60000)
			} else {
				rest = strings.Repeat("X-Pad: "+strings.Repeat("y", 50)+"\r\n", 1200)
			}
			b := []byte(head + rest)
			closedEarly := false
			for len(b) > 0 {
				n := min(500, len(b))
				if _, err := c.Write(b[:n]); err != nil {
					closedEarly = true
					break
				}
				b = b[n:]
				time.Sleep(200 * time.Microsecond)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 4096)); err == nil || (!closedEarly && isTimeout(err)) {
				t.Fatalf("the connection stayed open after %s of headers over max_message_bytes (read: %v)", shape, err)
			}
		})
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
