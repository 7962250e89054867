package auth

import (
	"crypto/x509"
	"strings"

	"github.com/sipproxy/sipproxy/internal/aor"
)

// CertificateIdentity returns the user a verified TLS client certificate
// names: the first subjectAltName URI sip:user@host or sips:user@host whose
// host is one of domains (case-insensitive), as Identity{Source:
// SourceCertificate, AOR: "user@host"} with the host lower-cased. URIs of
// other schemes, without a user part or in foreign domains are ignored.
// Verifying the certificate chain is the TLS layer's job, not this one's.
func CertificateIdentity(cert *x509.Certificate, domains []string) (Identity, bool) {
	if cert == nil {
		return Identity{}, false
	}
	for _, u := range cert.URIs {
		if u == nil {
			continue
		}
		scheme := strings.ToLower(u.Scheme)
		if scheme != "sip" && scheme != "sips" {
			continue
		}
		uri, a, err := aor.Parse(u.String())
		if err != nil || uri.User == "" {
			continue
		}
		for _, d := range domains {
			if strings.EqualFold(uri.Host, d) {
				return Identity{Source: SourceCertificate, AOR: a}, true
			}
		}
	}
	return Identity{}, false
}

// CertificateNames returns the names a certificate can be matched on
// against a peer's tls_names: its DNS subjectAltNames; the subject common
// name only when the certificate has no subjectAltName at all (RFC 6125
// 6.4.4: a CN is free text a user's own certificate request may choose).
// A certificate naming a SIP user (a sip: or sips: URI) is a user's, never
// a peer's: it has no peer names.
func CertificateNames(cert *x509.Certificate) []string {
	if cert == nil {
		return nil
	}
	for _, u := range cert.URIs {
		if s := strings.ToLower(u.Scheme); s == "sip" || s == "sips" {
			return []string{}
		}
	}
	names := make([]string, 0, len(cert.DNSNames)+1)
	names = append(names, cert.DNSNames...)
	noSAN := len(cert.DNSNames) == 0 && len(cert.URIs) == 0 && len(cert.IPAddresses) == 0 && len(cert.EmailAddresses) == 0
	if cn := cert.Subject.CommonName; cn != "" && noSAN {
		names = append(names, cn)
	}
	return names
}
