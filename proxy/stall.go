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
// the timeout: every writer then fails at once instead of queueing, and a
// half-written message never stays on the stream.
type stallGuardListener struct {
	net.Listener
	timeout time.Duration
}

func (l stallGuardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &stallGuardConn{Conn: c, timeout: l.timeout}, nil
}

type stallGuardConn struct {
	net.Conn
	timeout time.Duration
	mu      sync.Mutex
	broken  bool
}

var errStalled = errors.New("peer stopped reading: connection closed")

func (c *stallGuardConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken {
		return 0, errStalled
	}
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
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
