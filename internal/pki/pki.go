// Package pki generates X.509 material (ECDSA P-256) for the proxy and its
// tests: the throw-away certificate of a self_signed TLS listener, and a
// small certificate authority that issues server and client certificates,
// including client certificates that name a SIP user in a SAN URI.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// clockSkew back-dates NotBefore so that a peer whose clock is a little
// behind still accepts a certificate made a moment ago.
const clockSkew = time.Hour

// SelfSigned returns a self-signed server certificate valid for one year for
// the given DNS names and IP addresses. When hosts is empty, contains
// "localhost" or contains any IP address, the certificate is also valid for
// localhost, 127.0.0.1 and ::1, so that loopback clients can verify it.
func SelfSigned(hosts ...string) (tls.Certificate, error) {
	var dns []string
	var ips []net.IP
	loopback := len(hosts) == 0
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
			loopback = true
			continue
		}
		dns = append(dns, h)
		if h == "localhost" {
			loopback = true
		}
	}
	if loopback {
		if !slices.Contains(dns, "localhost") {
			dns = append(dns, "localhost")
		}
		for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: generate key: %w", err)
	}
	cn := "sipproxy"
	if len(dns) > 0 {
		cn = dns[0]
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	return create(tmpl, nil, key, key)
}

// CA is a certificate authority held in memory.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA returns a new root CA, valid for ten years, named commonName.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert, err := create(tmpl, nil, key, key)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert.Leaf, key: key}, nil
}

// CertPEM returns the CA certificate in PEM form.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// Pool returns a new pool that holds only this CA, for RootCAs or ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// IssueOptions describes a certificate to issue.
type IssueOptions struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	// URIs become SAN URIs, e.g. "sip:alice@contoso.com" for a client
	// certificate that names a SIP user.
	URIs []string
	// Client and Server select the extended key usages clientAuth and
	// serverAuth. With neither, the certificate has no extended key usage
	// extension (Go then accepts it for any purpose).
	Client, Server bool
	// NotAfter is the end of validity; zero means 24 hours from now.
	NotAfter time.Time
}

// Issue returns a certificate signed by the CA. Its chain holds the leaf
// only; peers are expected to trust the CA itself.
func (ca *CA) Issue(opts IssueOptions) (tls.Certificate, error) {
	uris := make([]*url.URL, 0, len(opts.URIs))
	for _, s := range opts.URIs {
		u, err := url.Parse(s)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("pki: SAN URI %q: %w", s, err)
		}
		if u.Scheme == "" {
			return tls.Certificate{}, fmt.Errorf("pki: SAN URI %q has no scheme", s)
		}
		uris = append(uris, u)
	}
	var eku []x509.ExtKeyUsage
	if opts.Server {
		eku = append(eku, x509.ExtKeyUsageServerAuth)
	}
	if opts.Client {
		eku = append(eku, x509.ExtKeyUsageClientAuth)
	}
	now := time.Now()
	notAfter := opts.NotAfter
	if notAfter.IsZero() {
		notAfter = now.Add(24 * time.Hour)
	}
	notBefore := now.Add(-clockSkew)
	if notAfter.Before(notBefore) {
		// An already expired certificate (for tests) still needs a
		// validity period that makes sense.
		notBefore = notAfter.Add(-24 * time.Hour)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: generate key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: opts.CommonName},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		DNSNames:              opts.DNSNames,
		IPAddresses:           opts.IPs,
		URIs:                  uris,
	}
	return create(tmpl, ca.cert, key, ca.key)
}

// WritePEM writes the CA certificate to dir/name.crt, creating dir if needed.
func (ca *CA) WritePEM(dir, name string) (path string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("pki: %w", err)
	}
	path = filepath.Join(dir, name+".crt")
	if err := os.WriteFile(path, ca.CertPEM(), 0o644); err != nil {
		return "", fmt.Errorf("pki: %w", err)
	}
	return path, nil
}

// WriteKeyPEM writes the CA certificate to dir/name.crt and its private key
// (PKCS #8, readable by the owner only) to dir/name.key, so that LoadCA can
// issue more certificates from it later.
func (ca *CA) WriteKeyPEM(dir, name string) (certPath, keyPath string, err error) {
	return WritePEM(dir, name, tls.Certificate{Certificate: [][]byte{ca.cert.Raw}, PrivateKey: ca.key, Leaf: ca.cert})
}

// LoadCA reads a CA written by WriteKeyPEM: a CA certificate and its ECDSA
// private key.
func LoadCA(certPath, keyPath string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("pki: CA %s: %w", certPath, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("pki: CA %s: %w", certPath, err)
	}
	if !leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("pki: %s is not a CA certificate", certPath)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("pki: CA key %s: %T is not an ECDSA key", keyPath, pair.PrivateKey)
	}
	return &CA{cert: leaf, key: key}, nil
}

// WritePEM writes the certificate chain of cert to dir/name.crt and its
// private key (PKCS #8) to dir/name.key, creating dir if needed.
func WritePEM(dir, name string, cert tls.Certificate) (certPath, keyPath string, err error) {
	if len(cert.Certificate) == 0 {
		return "", "", errors.New("pki: certificate has no chain")
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return "", "", fmt.Errorf("pki: marshal private key: %w", err)
	}
	var chain []byte
	for _, c := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("pki: %w", err)
	}
	certPath = filepath.Join(dir, name+".crt")
	keyPath = filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, chain, 0o644); err != nil {
		return "", "", fmt.Errorf("pki: %w", err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", fmt.Errorf("pki: %w", err)
	}
	return certPath, keyPath, nil
}

// create signs tmpl with signer (parent nil: self-signed) and returns it as
// a tls.Certificate with Leaf set.
func create(tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: serial number: %w", err)
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
