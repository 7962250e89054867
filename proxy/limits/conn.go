package limits

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// ConnLimiter counts open connections per source and refuses more than a
// set number. Only sources with open connections are held, so its memory is
// bounded by the open connections themselves, which a spoofing attacker
// cannot create (TCP needs the handshake). One mutex is enough: connections
// arrive far more slowly than requests. It is safe for concurrent use; a nil
// *ConnLimiter admits everything.
type ConnLimiter struct {
	perSource int
	exempt    exemptSet
	mu        sync.Mutex
	open      map[sourceKey]int
}

// NewConnLimiter returns a limiter admitting perSource connections from each
// source at a time (no limit when perSource < 1), except from the exempt
// prefixes (trusted peers), which are never limited.
func NewConnLimiter(perSource int, exempt ...netip.Prefix) *ConnLimiter {
	return &ConnLimiter{
		perSource: perSource,
		exempt:    newExemptSet(exempt),
		open:      make(map[sourceKey]int),
	}
}

// Acquire takes a connection slot for src and reports whether one was free.
// Every successful Acquire must be matched by one Release.
func (l *ConnLimiter) Acquire(src netip.Addr) bool {
	if l == nil || l.perSource < 1 || l.exempt.contains(src) {
		return true
	}
	k := keyOf(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.open[k]
	if n >= l.perSource {
		return false
	}
	l.open[k] = n + 1
	return true
}

// Release gives back a slot taken by Acquire. Releasing a source with no
// slots taken does nothing.
func (l *ConnLimiter) Release(src netip.Addr) {
	if l == nil || l.perSource < 1 || l.exempt.contains(src) {
		return
	}
	k := keyOf(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch n := l.open[k]; {
	case n > 1:
		l.open[k] = n - 1
	case n == 1:
		delete(l.open, k)
	}
}

// Open returns how many connections src holds.
func (l *ConnLimiter) Open(src netip.Addr) int {
	if l == nil {
		return 0
	}
	k := keyOf(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[k]
}

// LimitListener returns a listener that admits at most lim's limit of
// connections from each source. A connection over the limit is reset and
// closed as soon as it is accepted, onReject (when not nil) is told its
// source, and Accept goes on to the next connection: rejections are never
// returned as errors, which would stop a server's accept loop. An admitted
// connection gives its slot back when first closed. Connections whose peer
// is not an IP address are not limited.
//
// Wrap the TCP listener, below any TLS: a refused connection then costs no
// handshake. onReject runs on the accepting goroutine and should be quick
// (count it, log it at debug level).
func LimitListener(l net.Listener, lim *ConnLimiter, onReject func(netip.Addr)) net.Listener {
	return &limitListener{Listener: l, lim: lim, onReject: onReject}
}

type limitListener struct {
	net.Listener
	lim      *ConnLimiter
	onReject func(netip.Addr)
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := addrOf(c.RemoteAddr())
		if !src.IsValid() {
			return c, nil
		}
		if l.lim.Acquire(src) {
			return &limitConn{Conn: c, lim: l.lim, src: src}, nil
		}
		// An abortive close (RST) leaves no TIME_WAIT behind on our side
		// however fast the connections come.
		if tc, ok := c.(interface{ SetLinger(int) error }); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
		if l.onReject != nil {
			l.onReject(src)
		}
	}
}

// limitConn is an admitted connection; it releases its slot on Close.
type limitConn struct {
	net.Conn
	lim    *ConnLimiter
	src    netip.Addr
	closed atomic.Bool
}

// Close closes the connection and, the first time, releases its slot.
func (c *limitConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.lim.Release(c.src)
	}
	return err
}

// NetConn returns the connection underneath, as tls.Conn's NetConn does.
func (c *limitConn) NetConn() net.Conn { return c.Conn }
