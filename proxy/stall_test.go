package proxy

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// TestStallGuard: a peer that never reads gets its connection closed once a
// write makes no progress for the timeout, although other writers keep
// writing (each of which would push a shared deadline back); every writer
// then fails promptly.
func TestStallGuard(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	g := stallGuardListener{Listener: ln, timeout: 300 * time.Millisecond}
	peer, err := net.Dial("tcp", ln.Addr().String()) // never reads
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c, err := g.Accept()
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 10*time.Second {
				// What sipgo does before each write: must not extend anything.
				c.SetWriteDeadline(time.Now().Add(time.Hour))
				if _, err := c.Write(chunk); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, errStalled) {
			t.Fatalf("writer ended with %v, want errStalled", err)
		}
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("writers released after %v", el)
	}
	// The peer sees its connection closed.
	peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1<<20)
	for {
		if _, err := peer.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("connection still open")
			}
			break
		}
	}
}
