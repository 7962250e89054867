package proxy

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/sipproxy/sipproxy/internal/config"
)

// A gateway whose name is only in the CN of a certificate that also has
// subjectAltNames is not matched as a peer; the operator is told why.
func TestWarnIgnoredCN(t *testing.T) {
	peers := []config.Peer{{Name: "gw", TLSNames: []string{"gw.contoso.com"}}}
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		warn bool
	}{
		{"CN and an IP SAN", &x509.Certificate{Subject: pkix.Name{CommonName: "GW.contoso.com"}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}, true},
		{"CN only: matched on it", &x509.Certificate{Subject: pkix.Name{CommonName: "gw.contoso.com"}}, false},
		{"name in a DNS SAN too", &x509.Certificate{Subject: pkix.Name{CommonName: "gw.contoso.com"}, DNSNames: []string{"gw.contoso.com"}}, false},
		{"a user's certificate with a peer's CN", &x509.Certificate{Subject: pkix.Name{CommonName: "gw.contoso.com"}, URIs: []*url.URL{{Scheme: "sip", Opaque: "mallory@contoso.com"}}}, true},
		{"a CN no peer has", &x509.Certificate{Subject: pkix.Name{CommonName: "other.contoso.com"}, DNSNames: []string{"x.contoso.com"}}, false},
	} {
		var buf bytes.Buffer
		s := &Server{cfg: &config.Config{Peers: peers}, log: slog.New(slog.NewTextHandler(&buf, nil))}
		s.warnIgnoredCN("192.0.2.1:5061", tc.cert)
		if got := strings.Contains(buf.String(), "subject CN"); got != tc.warn {
			t.Errorf("%s: warned=%v, want %v (log %q)", tc.name, got, tc.warn, buf.String())
		}
	}
}
