package proxy

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

type gaugeValue struct{ v atomic.Int64 }

func (g *gaugeValue) Set(f float64) { g.v.Store(int64(f)) }

func TestDialogsLifecycle(t *testing.T) {
	g := &gaugeValue{}
	d := newDialogs(time.Hour, g)
	d.open("a")
	d.open("a") // a second fork answered
	d.open("b")
	d.open("") // no Call-ID: not tracked
	if n := d.active(); n != 2 || g.v.Load() != 2 {
		t.Fatalf("active %d gauge %d, want 2 2", n, g.v.Load())
	}
	d.closed("a")
	if n := d.active(); n != 2 {
		t.Fatalf("after one BYE of a forked call: %d active, want 2", n)
	}
	d.closed("a")
	d.closed("b")
	d.closed("unknown")
	if n := d.active(); n != 0 || g.v.Load() != 0 {
		t.Fatalf("active %d gauge %d, want 0 0", n, g.v.Load())
	}
}

func TestDialogsSweepForgetsStaleCalls(t *testing.T) {
	g := &gaugeValue{}
	d := newDialogs(50*time.Millisecond, g)
	for _, id := range []string{"x", "y", "z"} {
		d.open(id)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.sweep(ctx, 10*time.Millisecond); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for g.v.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	d.mu.Lock()
	n := len(d.m)
	d.mu.Unlock()
	if n != 0 || g.v.Load() != 0 {
		t.Fatalf("after the sweep: %d entries, gauge %d; want 0 0", n, g.v.Load())
	}
}
