package proxy

import (
	"crypto/x509"
	"testing"
)

// A connection's certificate is recorded only while it is open and removed
// only by that connection: the orderings a Close can race with.
func TestPeerCertsOwnedByConnection(t *testing.T) {
	const remote = "192.0.2.7:5061"
	alice := &x509.Certificate{Raw: []byte("alice")}
	bob := &x509.Certificate{Raw: []byte("bob")}
	l := &tlsListener{certs: newPeerCerts()}
	tests := []struct {
		name string
		run  func(p *peerCerts, a, b *tlsConn)
		want *x509.Certificate
	}{
		{"open connection's certificate is found", func(p *peerCerts, a, _ *tlsConn) { p.set(a, alice) }, alice},
		{"closed connection's certificate is gone", func(p *peerCerts, a, _ *tlsConn) { p.set(a, alice); p.forget(a) }, nil},
		{"closed before its handshake ended: nothing recorded", func(p *peerCerts, a, _ *tlsConn) {
			p.forget(a)
			if p.set(a, alice) {
				t.Error("set on a closed connection reported success")
			}
		}, nil},
		{"old connection's late close keeps the new one's certificate", func(p *peerCerts, a, b *tlsConn) {
			p.set(a, alice)
			p.set(b, bob)
			p.forget(a)
		}, bob},
		{"new connection from the same ip:port without a certificate inherits nothing", func(p *peerCerts, a, b *tlsConn) {
			p.forget(a)
			p.set(a, alice) // the handshake's end, after the close
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l.certs = newPeerCerts()
			a := &tlsConn{l: l, remote: remote}
			b := &tlsConn{l: l, remote: remote}
			tt.run(l.certs, a, b)
			if got := l.certs.get(remote); got != tt.want {
				t.Errorf("certificate for %s = %v, want %v", remote, got, tt.want)
			}
		})
	}
}
