package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestCertsThenCheckExample is what config.example.yaml tells a newcomer
// to do, in a copy of it: run the `sipproxy certs` command its header
// names, in its directory, and `sipproxy check -config config.example.yaml`
// then passes with no warning (as shipped it failed for want of tls/).
// The certificates are what the configuration says they are.
func TestCertsThenCheckExample(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"config.example.yaml", "rules.example.yaml"} {
		data, err := os.ReadFile(filepath.Join(repoRoot, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	example, _ := os.ReadFile(filepath.Join(dir, "config.example.yaml"))
	m := regexp.MustCompile(`(?m)^#\s+sipproxy (certs .*)$`).FindStringSubmatch(string(example))
	if m == nil {
		t.Fatal("config.example.yaml does not say which `sipproxy certs` command makes its certificates")
	}
	t.Chdir(dir)

	var out, errb bytes.Buffer
	if code := run([]string{"check", "-config", "config.example.yaml"}, &out, &errb); code != 1 {
		t.Fatalf("check before certs: exit %d, want 1 (no tls/ yet)", code)
	}
	out.Reset()
	errb.Reset()
	if code := run(strings.Fields(m[1]), &out, &errb); code != 0 {
		t.Fatalf("sipproxy %s: exit %d\n%s%s", m[1], code, out.String(), errb.String())
	}
	t.Logf("sipproxy %s:\n%s", m[1], out.String())
	out.Reset()
	errb.Reset()
	if code := run([]string{"check", "-config", "config.example.yaml"}, &out, &errb); code != 0 || errb.Len() != 0 {
		t.Fatalf("check after certs: exit %d\n%s%s", code, out.String(), errb.String())
	}

	internal, clients := certPool(t, "tls/internal-ca.crt"), certPool(t, "tls/clients-ca.crt")
	server := leaf(t, "tls/server.crt")
	if _, err := server.Verify(x509.VerifyOptions{DNSName: "sip.contoso.com", Roots: internal, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("server certificate as a server: %v", err)
	}
	if _, err := server.Verify(x509.VerifyOptions{Roots: internal, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("server certificate as UM's mutual-TLS client: %v", err)
	}
	for _, user := range []string{"alice", "bob"} {
		c := leaf(t, "tls/"+user+".crt")
		if _, err := c.Verify(x509.VerifyOptions{Roots: clients, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s's client certificate: %v", user, err)
		}
		var uris []string
		for _, u := range c.URIs {
			uris = append(uris, u.String())
		}
		if want := "sip:" + user + "@contoso.com"; !slices.Equal(uris, []string{want}) {
			t.Errorf("%s's SAN URIs %q, want [%s]", user, uris, want)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: internal, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			t.Errorf("%s's certificate verifies against the servers' CA", user)
		}
		if fi, err := os.Stat("tls/" + user + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("tls/%s.key: %v, want mode 0600", user, err)
		}
	}

	// A later run for another user reuses the CAs: certificates already
	// handed out stay valid.
	caBefore, _ := os.ReadFile("tls/clients-ca.crt")
	out.Reset()
	if code := run([]string{"certs", "-dir", "tls", "-users", "carol@contoso.com"}, &out, &errb); code != 0 {
		t.Fatalf("certs for carol: exit %d\n%s", code, errb.String())
	}
	if caAfter, _ := os.ReadFile("tls/clients-ca.crt"); !bytes.Equal(caBefore, caAfter) {
		t.Error("a second run replaced the clients CA")
	}
	if _, err := leaf(t, "tls/carol.crt").Verify(x509.VerifyOptions{Roots: clients, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("carol's certificate from the reused CA: %v", err)
	}
}

// TestCertsErrors: bad requests exit 2, and a CA certificate without its
// key (an operator's own bundle) is neither used nor replaced.
func TestCertsErrors(t *testing.T) {
	dir := t.TempDir()
	bundle := filepath.Join(dir, "internal-ca.crt")
	os.WriteFile(bundle, []byte("operator's bundle"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-users", "alice"}, 2, `"alice" is not user@domain`},
		{[]string{"-users", "alice@contoso.com,alice@fabrikam.com"}, 2, "would overwrite"},
		{[]string{"-days", "0"}, 2, "-days"},
		{[]string{"extra"}, 2, "unexpected argument"},
		{[]string{"-dir", dir, "-server", "sip.contoso.com"}, 1, "exists without its key"},
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"certs"}, tc.args...), &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.msg) {
			t.Errorf("certs %q: exit %d, stderr %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.msg)
		}
	}
	if data, _ := os.ReadFile(bundle); string(data) != "operator's bundle" {
		t.Error("the operator's CA bundle was replaced")
	}
}

func certPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	p.AddCert(leaf(t, path))
	return p
}

func leaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
