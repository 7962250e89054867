package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"slices"
	"testing"
	"time"
)

// newCert returns a parsed self-signed certificate with the given subject
// common name and subjectAltNames.
func newCert(t *testing.T, cn string, dnsNames []string, uris ...string) *x509.Certificate {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     dnsNames,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", s, err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestCertificateIdentity(t *testing.T) {
	domains := []string{"contoso.com", "Fabrikam.COM"}
	tests := []struct {
		name    string
		uris    []string
		domains []string // default domains
		want    string   // AOR; "" = no identity
	}{
		{"sip uri", []string{"sip:alice@contoso.com"}, nil, "alice@contoso.com"},
		{"sips uri", []string{"sips:alice@contoso.com"}, nil, "alice@contoso.com"},
		{"upper-case scheme", []string{"SIP:alice@contoso.com"}, nil, "alice@contoso.com"},
		{"host lower-cased, user kept", []string{"sip:Alice@CONTOSO.com"}, nil, "Alice@contoso.com"},
		{"domain list compared case-insensitively", []string{"sip:bob@fabrikam.com"}, nil, "bob@fabrikam.com"},
		{"port and parameters dropped", []string{"sip:alice@contoso.com:5061;transport=tls"}, nil, "alice@contoso.com"},
		{"foreign domain", []string{"sip:alice@evil.example"}, nil, ""},
		{"subdomain is not our domain", []string{"sip:alice@sub.contoso.com"}, nil, ""},
		{"suffix is not our domain", []string{"sip:alice@notcontoso.com"}, nil, ""},
		{"first uri in our domain wins", []string{"sip:eve@evil.example", "sip:carol@contoso.com", "sip:dave@contoso.com"}, nil, "carol@contoso.com"},
		{"other schemes ignored", []string{"https://contoso.com/alice", "tel:+15551234", "mailto:alice@contoso.com", "sip:dave@contoso.com"}, nil, "dave@contoso.com"},
		{"uri without user", []string{"sip:contoso.com"}, nil, ""},
		{"uri without user then with", []string{"sip:contoso.com", "sip:erin@contoso.com"}, nil, "erin@contoso.com"},
		{"no uris", nil, nil, ""},
		{"no domains", []string{"sip:alice@contoso.com"}, []string{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := domains
			if tt.domains != nil {
				ds = tt.domains
			}
			cert := newCert(t, "alice", nil, tt.uris...)
			id, ok := CertificateIdentity(cert, ds)
			if ok != (tt.want != "") {
				t.Fatalf("CertificateIdentity ok = %v (%+v), want %v", ok, id, tt.want != "")
			}
			want := Identity{}
			if tt.want != "" {
				want = Identity{Source: SourceCertificate, AOR: tt.want}
			}
			if id != want {
				t.Errorf("CertificateIdentity = %+v, want %+v", id, want)
			}
		})
	}
	if id, ok := CertificateIdentity(nil, domains); ok || id != (Identity{}) {
		t.Errorf("CertificateIdentity(nil) = %+v, %v", id, ok)
	}
}

func TestCertificateNames(t *testing.T) {
	tests := []struct {
		name string
		cn   string
		dns  []string
		uris []string
		want []string
	}{
		{"dns names; cn ignored when there are SANs", "um.contoso.com", []string{"um1.contoso.com", "um2.contoso.com"}, nil, []string{"um1.contoso.com", "um2.contoso.com"}},
		{"cn only when no SAN at all", "gw.contoso.com", nil, nil, []string{"gw.contoso.com"}},
		{"dns only", "", []string{"edge.fabrikam.com"}, nil, []string{"edge.fabrikam.com"}},
		{"nothing", "", nil, nil, []string{}},
		{"a user's certificate is never a peer's", "um.contoso.com", []string{"um.contoso.com"}, []string{"sip:alice@contoso.com"}, []string{}},
		{"cn of a certificate with only a URI SAN", "um.contoso.com", nil, []string{"https://example.com/x"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CertificateNames(newCert(t, tt.cn, tt.dns, tt.uris...))
			if !slices.Equal(got, tt.want) {
				t.Errorf("CertificateNames = %q, want %q", got, tt.want)
			}
		})
	}
	if got := CertificateNames(nil); got != nil {
		t.Errorf("CertificateNames(nil) = %q, want nil", got)
	}
}
