package limits

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// TestLimitListenerLoopback runs LimitListener over real loopback TCP: with
// a limit of two, the third connection from 127.0.0.1 is closed by the
// server while the first two are served, and a slot freed by a client
// hanging up is used by the next connection.
func TestLimitListenerLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback TCP: %v", err)
	}
	lim := NewConnLimiter(2)
	rejected := make(chan netip.Addr, 10)
	lln := LimitListener(ln, lim, func(a netip.Addr) { rejected <- a })

	// Cleanups run last first: the clients hang up, then the listener
	// closes, then the server's goroutines are waited for.
	var served sync.WaitGroup
	t.Cleanup(served.Wait)
	t.Cleanup(func() { _ = lln.Close() })
	served.Go(func() { // an echo server
		for {
			c, err := lln.Accept()
			if err != nil {
				return
			}
			served.Go(func() {
				_, _ = io.Copy(c, c)
				_ = c.Close()
			})
		}
	})

	loopback := netip.MustParseAddr("127.0.0.1")
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	echoes := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		_, err := io.ReadFull(c, make([]byte, 1))
		return err
	}

	first, second := dial(), dial()
	for i, c := range []net.Conn{first, second} {
		if err := echoes(c); err != nil {
			t.Fatalf("connection %d within the limit: %v", i+1, err)
		}
	}

	// The server may reset the connection before the client's connect has
	// even returned: both are the server closing it.
	over, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err == nil {
		t.Cleanup(func() { _ = over.Close() })
		err = echoes(over)
	}
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the third connection: %v, want it closed by the server", err)
	}
	select {
	case a := <-rejected:
		if a != loopback {
			t.Errorf("onReject(%v), want %v", a, loopback)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the third connection was not rejected")
	}
	if err := echoes(second); err != nil {
		t.Fatalf("the second connection after the rejection: %v", err)
	}

	// Hang up the first; once the server has closed its end the slot is free.
	_ = first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for lim.Open(loopback) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d open after the first hung up, want 1", lim.Open(loopback))
		}
		time.Sleep(time.Millisecond)
	}
	if err := echoes(dial()); err != nil {
		t.Errorf("a connection into the freed slot: %v", err)
	}
	select {
	case a := <-rejected:
		t.Errorf("rejected %v although a slot was free", a)
	default:
	}
}
