package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func ipStrings(ips []net.IP) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

func TestSelfSigned(t *testing.T) {
	tests := []struct {
		name    string
		hosts   []string
		wantDNS []string
		wantIPs []string
	}{
		{"none means loopback", nil, []string{"localhost"}, []string{"127.0.0.1", "::1"}},
		{"localhost and IPv4", []string{"localhost", "127.0.0.1"}, []string{"localhost"}, []string{"127.0.0.1", "::1"}},
		{"name only", []string{"sip.contoso.com"}, []string{"sip.contoso.com"}, nil},
		{"other IP adds loopback", []string{"10.0.0.5"}, []string{"localhost"}, []string{"10.0.0.5", "127.0.0.1", "::1"}},
		{"name and localhost", []string{"sip.contoso.com", "localhost"}, []string{"sip.contoso.com", "localhost"}, []string{"127.0.0.1", "::1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := SelfSigned(tt.hosts...)
			if err != nil {
				t.Fatal(err)
			}
			leaf := c.Leaf
			if !slices.Equal(leaf.DNSNames, tt.wantDNS) {
				t.Errorf("DNS names = %q, want %q", leaf.DNSNames, tt.wantDNS)
			}
			if got := ipStrings(leaf.IPAddresses); !slices.Equal(got, tt.wantIPs) {
				t.Errorf("IPs = %q, want %q", got, tt.wantIPs)
			}
			if d := leaf.NotAfter.Sub(time.Now()); d < 364*24*time.Hour || d > 366*24*time.Hour {
				t.Errorf("valid for %v more, want one year", d)
			}
			if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
				t.Errorf("ExtKeyUsage = %v, want serverAuth", leaf.ExtKeyUsage)
			}
			roots := x509.NewCertPool()
			roots.AddCert(leaf)
			for _, name := range append(slices.Clone(tt.wantDNS), tt.wantIPs...) {
				if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
					t.Errorf("verify for %s: %v", name, err)
				}
			}
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "elsewhere.example", Roots: roots}); err == nil {
				t.Error("certificate verified for a name it does not carry")
			}
		})
	}
}

func TestIssue(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	if !ca.cert.IsCA {
		t.Fatal("CA certificate is not a CA")
	}
	fixed := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	tests := []struct {
		name     string
		opts     IssueOptions
		wantErr  bool
		wantEKU  []x509.ExtKeyUsage
		wantURIs []string
		wantLife time.Duration // approximate remaining validity
	}{
		{"client with SIP URI", IssueOptions{CommonName: "alice", URIs: []string{"sip:alice@contoso.com"}, Client: true},
			false, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, []string{"sip:alice@contoso.com"}, 24 * time.Hour},
		{"server and client", IssueOptions{DNSNames: []string{"um.contoso.com"}, Client: true, Server: true, NotAfter: fixed},
			false, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, nil, 72 * time.Hour},
		{"no usage", IssueOptions{CommonName: "any"}, false, nil, nil, 24 * time.Hour},
		{"URI without scheme", IssueOptions{URIs: []string{"alice@contoso.com"}}, true, nil, nil, 0},
		{"unparsable URI", IssueOptions{URIs: []string{"sip:alice\x7f@contoso.com"}}, true, nil, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ca.Issue(tt.opts)
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			leaf := c.Leaf
			if !slices.Equal(leaf.ExtKeyUsage, tt.wantEKU) {
				t.Errorf("ExtKeyUsage = %v, want %v", leaf.ExtKeyUsage, tt.wantEKU)
			}
			var uris []string
			for _, u := range leaf.URIs {
				uris = append(uris, u.String())
			}
			if !slices.Equal(uris, tt.wantURIs) {
				t.Errorf("URIs = %q, want %q", uris, tt.wantURIs)
			}
			if d := time.Until(leaf.NotAfter); d > tt.wantLife || d < tt.wantLife-time.Minute {
				t.Errorf("valid for %v more, want about %v", d, tt.wantLife)
			}
			if leaf.IsCA {
				t.Error("issued certificate is a CA")
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Errorf("does not verify against its CA: %v", err)
			}
		})
	}
}

func TestWritePEM(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(IssueOptions{DNSNames: []string{"sip.contoso.com"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	self, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tls") // does not exist yet
	for _, tt := range []struct {
		name string
		cert tls.Certificate
	}{{"issued", leaf}, {"self", self}} {
		t.Run(tt.name, func(t *testing.T) {
			certPath, keyPath, err := WritePEM(dir, tt.name, tt.cert)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(dir, tt.name+".crt"); certPath != want {
				t.Errorf("cert path = %s, want %s", certPath, want)
			}
			fi, err := os.Stat(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("key mode = %v, want 0600", fi.Mode().Perm())
			}
			got, err := tls.LoadX509KeyPair(certPath, keyPath)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Leaf.Equal(tt.cert.Leaf) {
				t.Error("read back a different certificate")
			}
		})
	}
	t.Run("CA", func(t *testing.T) {
		path, err := ca.WritePEM(dir, "ca")
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			t.Fatal("CA file holds no certificate")
		}
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "sip.contoso.com", Roots: pool}); err != nil {
			t.Errorf("issued certificate does not verify against the written CA: %v", err)
		}
	})
	t.Run("empty certificate", func(t *testing.T) {
		if _, _, err := WritePEM(dir, "empty", tls.Certificate{}); err == nil {
			t.Error("no error for a certificate without a chain")
		}
	})
}

// TestLoadCA: a CA written with its key issues again after LoadCA, and
// what it issues verifies against the CA written before; a leaf
// certificate is not a CA.
func TestLoadCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := ca.WriteKeyPEM(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key %s: %v, mode %v; want 0600", keyPath, err, fi.Mode().Perm())
	}
	again, err := LoadCA(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := again.Issue(IssueOptions{CommonName: "alice", URIs: []string{"sip:alice@contoso.com"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued by the loaded CA, not verified by the original: %v", err)
	}
	lc, lk, err := WritePEM(dir, "leaf", leaf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(lc, lk); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("LoadCA of a leaf: %v, want not a CA", err)
	}
	if _, err := LoadCA(filepath.Join(dir, "missing.crt"), keyPath); err == nil {
		t.Error("LoadCA of a missing file succeeded")
	}
}
