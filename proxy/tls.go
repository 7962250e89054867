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
	m  map[string]peerCert
}

// peerCert is a verified certificate and the connection it came with: only
// that connection, while open, may record or remove it. Keyed by ip:port
// alone, a Close racing the end of its handshake left the certificate behind
// for the next connection from the same ip:port, and a late Close of an old
// connection removed the certificate of a new one on a reused port.
type peerCert struct {
	cert  *x509.Certificate
	owner *tlsConn
}

func newPeerCerts() *peerCerts { return &peerCerts{m: make(map[string]peerCert)} }

func (p *peerCerts) get(remote string) *x509.Certificate {
	p.mu.RLock()
	c := p.m[remote].cert
	p.mu.RUnlock()
	return c
}

// set records conn's certificate unless conn is already closed; it reports
// whether it did.
func (p *peerCerts) set(conn *tlsConn, c *x509.Certificate) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if conn.closed {
		return false
	}
	p.m[conn.remote] = peerCert{cert: c, owner: conn}
	return true
}

// forget marks conn closed and removes its certificate, not another
// connection's recorded since under the same ip:port.
func (p *peerCerts) forget(conn *tlsConn) {
	p.mu.Lock()
	conn.closed = true
	if e, ok := p.m[conn.remote]; ok && e.owner == conn {
		delete(p.m, conn.remote)
	}
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
	closed    bool // guarded by l.certs.mu
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
		if c.l.certs.set(c, st.VerifiedChains[0][0]) && c.l.onCertificate != nil {
			c.l.onCertificate(c.remote, st.VerifiedChains[0][0])
		}
	}
	return nil
}

func (c *tlsConn) Close() error {
	c.l.certs.forget(c)
	return c.Conn.Close()
}
