package limits

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestConnLimiter(t *testing.T) {
	type step struct {
		op   string // acquire or release
		src  string
		want bool // what Acquire returns
	}
	const (
		a = "192.0.2.1"
		b = "192.0.2.2"
	)
	tests := []struct {
		name      string
		perSource int
		exempt    []netip.Prefix
		steps     []step
	}{
		{
			name:      "counts per source",
			perSource: 2,
			steps: []step{
				{"acquire", a, true}, {"acquire", a, true}, {"acquire", a, false},
				{"acquire", b, true},
				{"release", a, false}, {"acquire", a, true}, {"acquire", a, false},
				{"release", a, false}, {"release", a, false}, {"release", b, false},
			},
		},
		{
			name:      "releasing what was not acquired does nothing",
			perSource: 2,
			steps: []step{
				{"release", a, false}, {"release", a, false},
				{"acquire", a, true}, {"acquire", a, true}, {"acquire", a, false},
				{"release", a, false}, {"release", a, false}, {"release", a, false},
			},
		},
		{
			name:      "an IPv6 /64 is one source, IPv4-mapped is IPv4",
			perSource: 2,
			steps: []step{
				{"acquire", "2001:db8::1", true}, {"acquire", "2001:db8::2", true},
				{"acquire", "2001:db8::3", false}, {"acquire", "2001:db8:0:1::1", true},
				{"acquire", a, true}, {"acquire", "::ffff:" + a, true}, {"acquire", a, false},
				{"release", "2001:db8::3", false}, {"release", "2001:db8::1", false},
				{"release", "2001:db8:0:1::1", false}, {"release", "::ffff:" + a, false}, {"release", a, false},
			},
		},
		{
			name:      "exempt prefixes are not limited",
			perSource: 1,
			exempt:    prefixes(t, "10.0.0.0/8"),
			steps: []step{
				{"acquire", "10.0.0.1", true}, {"acquire", "10.0.0.1", true}, {"acquire", "10.0.0.1", true},
				{"release", "10.0.0.1", false},
				{"acquire", a, true}, {"acquire", a, false}, {"release", a, false},
			},
		},
		{
			name:      "no limit below one",
			perSource: 0,
			steps: []step{
				{"acquire", a, true}, {"acquire", a, true}, {"acquire", a, true}, {"release", a, false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewConnLimiter(tt.perSource, tt.exempt...)
			for i, s := range tt.steps {
				src := netip.MustParseAddr(s.src)
				switch s.op {
				case "acquire":
					if got := l.Acquire(src); got != s.want {
						t.Fatalf("step %d: Acquire(%s) = %v, want %v", i, s.src, got, s.want)
					}
				case "release":
					l.Release(src)
				default:
					t.Fatalf("step %d: unknown op %q", i, s.op)
				}
			}
			// Every test releases what it took: nothing may be left held.
			if len(l.open) != 0 {
				t.Errorf("%d sources still hold connections: %v", len(l.open), l.open)
			}
		})
	}
}

func TestConnLimiterConcurrent(t *testing.T) {
	const perSource = 5
	l := NewConnLimiter(perSource)
	src := netip.MustParseAddr("192.0.2.1")
	var got atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if l.Acquire(src) {
				got.Add(1)
			}
		})
	}
	wg.Wait()
	if n := got.Load(); n != perSource || l.Open(src) != perSource {
		t.Fatalf("%d acquired, %d open; want %d", n, l.Open(src), perSource)
	}
	for range perSource {
		wg.Go(func() { l.Release(src) })
	}
	wg.Wait()
	if n := l.Open(src); n != 0 {
		t.Errorf("%d open after releasing all, want 0", n)
	}
}

func TestConnLimiterNil(t *testing.T) {
	var l *ConnLimiter
	src := netip.MustParseAddr("192.0.2.1")
	l.Release(src)
	if !l.Acquire(src) || l.Open(src) != 0 {
		t.Error("a nil limiter limits")
	}
}

// fakeListener hands out the server ends of pipes, each claiming to come
// from a given address.
type fakeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newFakeListener() *fakeListener {
	return &fakeListener{conns: make(chan net.Conn, 16), closed: make(chan struct{})}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *fakeListener) Addr() net.Addr { return fakeAddr("listener") }

type fakeAddr string

func (a fakeAddr) Network() string { return "fake" }
func (a fakeAddr) String() string  { return string(a) }

type fromConn struct {
	net.Conn
	from net.Addr
}

func (c fromConn) RemoteAddr() net.Addr { return c.from }

// dial queues a connection from from and returns its client end.
// Connections are accepted in the order dialled.
func (l *fakeListener) dial(from net.Addr) net.Conn {
	server, client := net.Pipe()
	l.conns <- fromConn{Conn: server, from: from}
	return client
}

// closedByServer reports whether the server end of c was closed.
func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF)
}

func TestLimitListener(t *testing.T) {
	fl := newFakeListener()
	lim := NewConnLimiter(2)
	var rejected []netip.Addr
	ln := LimitListener(fl, lim, func(a netip.Addr) { rejected = append(rejected, a) })
	defer ln.Close()

	v6 := &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 5060}
	src := netip.MustParseAddr("2001:db8::1")
	accept := func() net.Conn {
		t.Helper()
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	fl.dial(v6)
	first := accept()
	fl.dial(&net.TCPAddr{IP: net.ParseIP("2001:db8::2"), Port: 5060}) // same /64
	second := accept()
	over := fl.dial(v6)
	fl.dial(&net.TCPAddr{IP: net.ParseIP("192.0.2.9"), Port: 5060})
	third := accept() // skips the one over the limit
	if got := addrOf(third.RemoteAddr()); got != netip.MustParseAddr("192.0.2.9") {
		t.Fatalf("accepted %v, want the connection from 192.0.2.9", got)
	}
	if !closedByServer(over) {
		t.Error("the connection over the limit was not closed")
	}
	if len(rejected) != 1 || rejected[0] != src {
		t.Errorf("onReject saw %v, want [%v]", rejected, src)
	}

	// Close is idempotent: the second does not release another slot.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	_ = first.Close()
	if n := lim.Open(src); n != 1 {
		t.Fatalf("%d open after closing one of two twice, want 1", n)
	}
	fl.dial(v6)
	reused := accept()
	if n := lim.Open(src); n != 2 {
		t.Errorf("%d open after reusing the slot, want 2", n)
	}
	for _, c := range []net.Conn{second, third, reused} {
		_ = c.Close()
	}
	if len(lim.open) != 0 {
		t.Errorf("sources still hold connections after all closed: %v", lim.open)
	}

	// A peer that is not an IP address is not limited, nor wrapped.
	for range 3 {
		fl.dial(fakeAddr("pipe"))
		if c := accept(); c.(fromConn).from != fakeAddr("pipe") {
			t.Errorf("a non-IP connection was wrapped: %T", c)
		}
	}

	// The wrapped connection still reaches what it wraps.
	fl.dial(v6)
	if c, ok := accept().(interface{ NetConn() net.Conn }); !ok || c.NetConn() == nil {
		t.Error("an admitted connection does not expose NetConn")
	}

	// A closed listener's error comes through.
	_ = ln.Close()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on a closed listener: %v, want net.ErrClosed", err)
	}
}
