package proxy

import (
	"errors"
	"net"
	"sync"
	"time"
)

// stallGuardListener wraps accepted connections so that a peer that stops
// reading cannot hold the proxy's writers forever.
//
// sipgo sets a fresh write deadline on the shared connection before every
// write. A Go deadline applies to the write already blocked too, so while
// anyone keeps writing to a stalled peer (calls to it, replies to its own
// keep-alives) the deadline of the blocked write keeps moving and never
// fires. The guard serialises writes itself, owns the deadline (sipgo's are
// ignored), and closes the connection when a write makes no progress for
// the timeout (up to 1.5 times it, see Write): every writer then fails at
// once instead of queueing, and a half-written message never stays on the
// stream.
type stallGuardListener struct {
	net.Listener
	timeout time.Duration
}

func (l stallGuardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &stallGuardConn{Conn: c, timeout: l.timeout, local: nameAddr(c.LocalAddr()), remote: nameAddr(c.RemoteAddr())}, nil
}

type stallGuardConn struct {
	net.Conn
	timeout       time.Duration
	local, remote net.Addr // formatted once (see namedAddr)
	mu            sync.Mutex
	deadline      time.Time // the write deadline set last
	broken        bool
}

// LocalAddr and RemoteAddr return the addresses formatted at accept time.
func (c *stallGuardConn) LocalAddr() net.Addr  { return c.local }
func (c *stallGuardConn) RemoteAddr() net.Addr { return c.remote }

// namedAddr is a net.Addr whose text is made once. sipgo formats both
// addresses of a connection for a debug line every time it takes or drops
// a reference to it (several times per message, whatever the log level),
// and a *net.TCPAddr builds its text anew each time: at 1000 calls/s that
// was about 10% of the heap objects allocated.
type namedAddr struct {
	net.Addr
	text string
}

func (a namedAddr) String() string { return a.text }

func nameAddr(a net.Addr) net.Addr {
	if a == nil {
		return nil
	}
	return namedAddr{Addr: a, text: a.String()}
}

var errStalled = errors.New("peer stopped reading: connection closed")

func (c *stallGuardConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken {
		return 0, errStalled
	}
	// The deadline is moved only when less than the timeout is left (to
	// 1.5x the timeout): setting it costs a runtime timer update, which
	// once per write was about 1% of the CPU of a call.
	if now := time.Now(); c.deadline.Sub(now) < c.timeout {
		c.deadline = now.Add(c.timeout + c.timeout/2)
		if err := c.Conn.SetWriteDeadline(c.deadline); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Write(b)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.broken = true
			c.Conn.Close()
			return n, errStalled
		}
	}
	return n, err
}

// SetWriteDeadline is ignored: Write owns the write deadline.
func (c *stallGuardConn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline keeps the read half only, for the same reason.
func (c *stallGuardConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }
