package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// handshake runs one TLS handshake over a loopback TCP connection. The
// server writes "ok" after a successful handshake so that the client also
// learns whether the server accepted it (in TLS 1.3 the client finishes its
// handshake before the server has checked the client certificate).
func handshake(t *testing.T, server, client *tls.Config) (state tls.ConnectionState, serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	type result struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		if err := tc.HandshakeContext(ctx); err != nil {
			done <- result{err: err}
			return
		}
		_, err = tc.Write([]byte("ok"))
		done <- result{state: tc.ConnectionState(), err: err}
	}()

	d := tls.Dialer{Config: client}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err == nil {
		var got []byte
		got, err = io.ReadAll(c)
		if err == nil && string(got) != "ok" {
			err = io.ErrUnexpectedEOF
		}
		c.Close()
	}
	r := <-done
	return r.state, r.err, err
}

func peerURIs(s tls.ConnectionState) []string {
	if len(s.PeerCertificates) == 0 {
		return nil
	}
	var out []string
	for _, u := range s.PeerCertificates[0].URIs {
		out = append(out, u.String())
	}
	return out
}

func TestHandshakeClientCertificate(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := ca.Issue(IssueOptions{CommonName: "proxy", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(issuer *CA, o IssueOptions) *tls.Certificate {
		t.Helper()
		c, err := issuer.Issue(o)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	alice := issue(ca, IssueOptions{CommonName: "alice", URIs: []string{"sip:alice@contoso.com"}, Client: true})
	stranger := issue(other, IssueOptions{CommonName: "mallory", URIs: []string{"sip:mallory@contoso.com"}, Client: true})
	serverOnly := issue(ca, IssueOptions{CommonName: "bob", URIs: []string{"sip:bob@contoso.com"}, Server: true})
	expired := issue(ca, IssueOptions{CommonName: "carol", URIs: []string{"sip:carol@contoso.com"}, Client: true, NotAfter: time.Now().Add(-time.Hour)})

	tests := []struct {
		name       string
		auth       tls.ClientAuthType
		clientCert *tls.Certificate
		wantOK     bool
		wantURIs   []string
	}{
		{"require, valid SAN URI", tls.RequireAndVerifyClientCert, alice, true, []string{"sip:alice@contoso.com"}},
		{"if given, valid SAN URI", tls.VerifyClientCertIfGiven, alice, true, []string{"sip:alice@contoso.com"}},
		{"if given, none", tls.VerifyClientCertIfGiven, nil, true, nil},
		{"require, none", tls.RequireAndVerifyClientCert, nil, false, nil},
		{"require, other CA", tls.RequireAndVerifyClientCert, stranger, false, nil},
		{"if given, other CA", tls.VerifyClientCertIfGiven, stranger, false, nil},
		{"if given, serverAuth only", tls.VerifyClientCertIfGiven, serverOnly, false, nil},
		{"if given, expired", tls.VerifyClientCertIfGiven, expired, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tt.auth, ClientCAs: ca.Pool()}
			client := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
			if tt.clientCert != nil {
				// Present the certificate whatever CAs the server asks
				// for, as a careless or hostile client would; Go's
				// default selection would quietly send none.
				client.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					return tt.clientCert, nil
				}
			}
			state, serr, cerr := handshake(t, server, client)
			if tt.wantOK {
				if serr != nil || cerr != nil {
					t.Fatalf("handshake failed: server %v, client %v", serr, cerr)
				}
				if got := peerURIs(state); !slices.Equal(got, tt.wantURIs) {
					t.Errorf("peer URIs = %q, want %q", got, tt.wantURIs)
				}
				return
			}
			if serr == nil {
				t.Errorf("server accepted the handshake, peer URIs %q", peerURIs(state))
			}
			if cerr == nil {
				t.Error("client did not see the rejection")
			}
		})
	}
}

func TestHandshakeServerCertificate(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	self, err := SelfSigned("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	selfPool := x509.NewCertPool()
	selfPool.AddCert(self.Leaf)
	issued := func(o IssueOptions) tls.Certificate {
		t.Helper()
		c, err := ca.Issue(o)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	good := issued(IssueOptions{DNSNames: []string{"um.contoso.com"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	expired := issued(IssueOptions{DNSNames: []string{"um.contoso.com"}, Server: true, NotAfter: time.Now().Add(-time.Minute)})
	clientOnly := issued(IssueOptions{DNSNames: []string{"um.contoso.com"}, Client: true})

	tests := []struct {
		name       string
		cert       tls.Certificate
		roots      *x509.CertPool
		serverName string
		wantOK     bool
	}{
		{"self-signed by name", self, selfPool, "localhost", true},
		{"self-signed by IPv4", self, selfPool, "127.0.0.1", true},
		{"self-signed, wrong name", self, selfPool, "um.contoso.com", false},
		{"self-signed, not trusted", self, ca.Pool(), "localhost", false},
		{"issued by name", good, ca.Pool(), "um.contoso.com", true},
		{"issued by IP", good, ca.Pool(), "127.0.0.1", true},
		{"issued, expired", expired, ca.Pool(), "um.contoso.com", false},
		{"issued, clientAuth only", clientOnly, ca.Pool(), "um.contoso.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := &tls.Config{Certificates: []tls.Certificate{tt.cert}}
			client := &tls.Config{RootCAs: tt.roots, ServerName: tt.serverName}
			_, serr, cerr := handshake(t, server, client)
			if ok := serr == nil && cerr == nil; ok != tt.wantOK {
				t.Errorf("handshake ok = %v, want %v (server %v, client %v)", ok, tt.wantOK, serr, cerr)
			}
		})
	}
}
