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
