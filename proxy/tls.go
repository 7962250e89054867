package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"time"
)

// peerCerts remembers, per remote address, the verified client certificate
// of each live TLS connection. sipgo does not hand the tls.ConnectionState to
// request handlers, so our own listener records it after the handshake and
// the pipeline looks it up by the request's source address.
type peerCerts struct {
	mu sync.RWMutex
	m  map[string]*x509.Certificate
}

func newPeerCerts() *peerCerts { return &peerCerts{m: make(map[string]*x509.Certificate)} }

func (p *peerCerts) get(remote string) *x509.Certificate {
	p.mu.RLock()
	c := p.m[remote]
	p.mu.RUnlock()
	return c
}

func (p *peerCerts) set(remote string, c *x509.Certificate) {
	p.mu.Lock()
	p.m[remote] = c
	p.mu.Unlock()
}

func (p *peerCerts) forget(remote string) {
	p.mu.Lock()
	delete(p.m, remote)
	p.mu.Unlock()
}

// tlsListener accepts TCP connections and wraps them in TLS. The handshake
// runs on the connection's first Read (in sipgo's per-connection reader
// goroutine), bounded by handshakeTimeout, so a slow or silent client never
// blocks Accept.
type tlsListener struct {
	net.Listener
	config           *tls.Config
	handshakeTimeout time.Duration
	certs            *peerCerts
	onHandshakeError func(remote string, err error)
	onCertificate    func(remote string, cert *x509.Certificate) // a verified client certificate
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: tls.Server(c, l.config), l: l, remote: c.RemoteAddr().String()}, nil
}

type tlsConn struct {
	*tls.Conn
	l         *tlsListener
	remote    string
	handshake sync.Once
	err       error
}

func (c *tlsConn) Read(b []byte) (int, error) {
	c.handshake.Do(func() {
		// On a goroutine of its own, which ends with it: the handshake's
		// crypto grows a goroutine's stack, and sipgo's reader, which
		// lives as long as the connection, would keep the grown stack.
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.err = c.doHandshake()
		}()
		<-done
	})
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(b)
}

func (c *tlsConn) doHandshake() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.l.handshakeTimeout)
	defer cancel()
	if err := c.Conn.HandshakeContext(ctx); err != nil {
		if c.l.onHandshakeError != nil {
			c.l.onHandshakeError(c.remote, err)
		}
		return err
	}
	st := c.Conn.ConnectionState()
	// Only a certificate that chained to client_ca counts; with
	// VerifyClientCertIfGiven an unverifiable one fails the handshake.
	if len(st.VerifiedChains) > 0 && len(st.VerifiedChains[0]) > 0 {
		c.l.certs.set(c.remote, st.VerifiedChains[0][0])
		if c.l.onCertificate != nil {
			c.l.onCertificate(c.remote, st.VerifiedChains[0][0])
		}
	}
	return nil
}

func (c *tlsConn) Close() error {
	c.l.certs.forget(c.remote)
	return c.Conn.Close()
}
