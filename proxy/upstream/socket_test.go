package upstream

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/sipproxy/sipproxy/internal/resolve"
)

// dialProbe is a probe over real sockets: it connects to a TCP endpoint
// (a stand-in for the OPTIONS sender, which would then send a request).
func dialProbe(ctx context.Context, e Endpoint) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", e.Addr())
	if err != nil {
		return err
	}
	return c.Close()
}

// listen opens a TCP listener on addr (127.0.0.1:0 for a new port) that
// accepts and closes connections until it is closed.
func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestProberSockets: two UM stand-ins on loopback; one stops listening,
// is skipped after two failed probes, and comes back when it listens
// again. The URIs are numeric, so the real resolver asks no DNS server.
func TestProberSockets(t *testing.T) {
	a, b := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	aAddr, bAddr := a.Addr().String(), b.Addr().String()
	// A resolver pointed at a port nothing answers on: used, it would fail.
	r, err := resolve.New(resolve.Options{Server: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{URIs: uris(t, "sip:"+aAddr+";transport=tcp", "sip:"+bAddr+";transport=tcp"), Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	pr := p.NewProber(dialProbe, 10*time.Second, 2*time.Second)
	ctx := context.Background()
	targets := func() []string {
		t.Helper()
		eps, err := p.Targets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return keysOf(eps)
	}
	ka, kb := "tcp:"+aAddr, "tcp:"+bAddr

	if err := pr.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if got := targets(); !slices.Equal(got, []string{ka, kb}) {
		t.Fatalf("both listening: %q", got)
	}
	a.Close()
	for range 2 {
		if err := pr.Round(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := targets(); !slices.Equal(got, []string{kb}) {
		t.Fatalf("a closed for two probes: %q, want only b", got)
	}
	listen(t, aAddr)
	if err := pr.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if got := targets(); !slices.Equal(got, []string{ka, kb}) {
		t.Fatalf("a listening again: %q", got)
	}
}

// TestProberRun: the running prober finds a closed listener down on its
// own, and stops when told.
func TestProberRun(t *testing.T) {
	a := listen(t, "127.0.0.1:0")
	r, err := resolve.New(resolve.Options{Server: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{URIs: uris(t, "sip:"+a.Addr().String()+";transport=tcp"), Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	e := Endpoint{Host: "127.0.0.1", Port: a.Addr().(*net.TCPAddr).Port, Transport: "tcp"}
	a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		p.NewProber(dialProbe, 20*time.Millisecond, time.Second).Run(ctx)
		close(done)
	}()
	giveUp := time.After(time.Minute) // a hang, not a speed limit
	for p.Health(e) != Down {
		select {
		case <-done:
			t.Fatal("Run returned early")
		case <-giveUp:
			t.Fatal("the prober never found the closed listener down")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
}
