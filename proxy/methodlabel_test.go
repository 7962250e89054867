package proxy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A sender inventing methods must not add metric series: each invented
// method is counted under method="other".
func TestInventedMethodsAddNoSeries(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	conn, local, proxyAddr := rawUDP(t, px)
	const n = 40
	for i := range n {
		method := fmt.Sprintf("XMETHOD%d", i)
		callID := sip.GenerateTagN(16)
		msg := fmt.Sprintf("%s sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:scanner@evil.example>;tag=%s\r\nTo: <sip:bob@contoso.com>\r\nCall-ID: %s\r\nCSeq: 1 %s\r\n"+
			"Content-Length: 0\r\n\r\n", method, local, sip.GenerateTagN(10), sip.GenerateTagN(6), callID, method)
		if _, err := conn.WriteTo([]byte(msg), proxyAddr); err != nil {
			t.Fatal(err)
		}
		// Wait for the final answer so that every request was counted.
		buf := make([]byte, 65535)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, _, err := conn.ReadFrom(buf)
			if err != nil {
				t.Fatalf("%s: no final response: %v", method, err)
			}
			if strings.Contains(string(buf[:k]), callID) && !strings.HasPrefix(string(buf[:k]), "SIP/2.0 1") {
				break
			}
		}
	}
	if got := testutil.ToFloat64(px.m.Requests.WithLabelValues("other", "udp")); got != n {
		t.Errorf(`requests_total{method="other",transport="udp"} = %v, want %d`, got, n)
	}
	// Series: every method label in requests_total is a method SIP defines or "other".
	if got := testutil.CollectAndCount(px.m.Requests); got > 2 {
		t.Errorf("requests_total has %d series after %d invented methods, want at most 2", got, n)
	}
}
