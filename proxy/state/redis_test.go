package state

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sipproxy/sipproxy/proxy/state/statetest"
)

// visibilityBound is the bound on how soon a write at one instance
// is seen at another. It is a correctness bound, not a benchmark: a test
// waits up to visibilityWait for each write (a loaded CI machine under
// -race can stall any one of them), requires the median of what it
// measured to be within the bound, and logs every figure.
const (
	visibilityBound = 100 * time.Millisecond
	visibilityWait  = 2 * time.Second
)

// checkVisibility fails the test when the median of the measured
// visibility latencies exceeds visibilityBound, and logs them.
func checkVisibility(t *testing.T, what string, took []time.Duration) {
	t.Helper()
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	med := sorted[len(sorted)/2]
	rounded := make([]time.Duration, len(took))
	for i, d := range took {
		rounded[i] = d.Round(100 * time.Microsecond)
	}
	t.Logf("%s: cross-instance visibility median %v, worst %v, of %d writes: %v (bound %v)",
		what, med.Round(100*time.Microsecond), sorted[len(sorted)-1].Round(100*time.Microsecond), len(took), rounded, visibilityBound)
	if med > visibilityBound {
		t.Errorf("%s: median visibility %v exceeds %v", what, med, visibilityBound)
	}
}

// waitFor polls cond every millisecond for at most limit and returns how
// long it took, or false.
func waitFor(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for i := 0; i < 100000; i++ {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start), false
}

// events collects what a store tells its subscriber.
type events struct {
	mu  sync.Mutex
	got []Event
}

func (e *events) add(ev Event) {
	e.mu.Lock()
	e.got = append(e.got, ev)
	e.mu.Unlock()
}

// kinds lists the kinds of the events received, without reloads (a
// session can reconnect on a loaded machine; a reload is then expected).
func (e *events) kinds() []EventKind {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []EventKind
	for _, ev := range e.got {
		if ev.Kind != Resynced {
			out = append(out, ev.Kind)
		}
	}
	return out
}

func (e *events) resyncs() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.got {
		if ev.Kind == Resynced {
			n++
		}
	}
	return n
}

func TestRedisTwoInstances(t *testing.T) {
	ctx := context.Background()
	addr := statetest.RedisAddr(t)
	prefix := testPrefix(t)
	a := openRedis(t, addr, prefix, Options{Instance: "a"})
	b := openRedis(t, addr, prefix, Options{Instance: "b"})
	var seenAtB, seenAtA events
	b.Subscribe(seenAtB.add)
	a.Subscribe(seenAtA.add)

	var took []time.Duration
	for i, aor := range []string{"alice@a.test", "bob@a.test", "carol@a.test", "dave@a.test", "erin@a.test"} {
		bd := binding(aor, "k", time.Now().Add(time.Hour))
		bd.CSeq = uint32(i + 1)
		if err := PutBinding(ctx, a, bd); err != nil {
			t.Fatal(err)
		}
		d, ok := waitFor(visibilityWait, func() bool { return len(b.ListBindings(aor)) == 1 })
		if !ok {
			t.Fatalf("REGISTER of %s at a not visible at b after %v", aor, d)
		}
		took = append(took, d)
	}
	checkVisibility(t, "standalone", took)

	// Deletes and dialogs travel the same way, in both directions.
	if err := DeleteBinding(ctx, b, "alice@a.test", "k"); err != nil {
		t.Fatal(err)
	}
	if took, ok := waitFor(visibilityWait, func() bool { return len(a.ListBindings("alice@a.test")) == 0 }); !ok {
		t.Fatalf("delete at b not visible at a after %v", took)
	}
	if err := a.PutDialog(ctx, Dialog{CallID: "d1", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if took, ok := waitFor(visibilityWait, func() bool { _, ok := b.Dialog("d1"); return ok }); !ok {
		t.Fatalf("dialog at a not visible at b after %v", took)
	}
	if err := a.DeleteDialog(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if took, ok := waitFor(visibilityWait, func() bool { _, ok := b.Dialog("d1"); return !ok }); !ok {
		t.Fatalf("dialog delete at a not visible at b after %v", took)
	}

	// Subscribers hear of the other instance's writes only.
	want := []EventKind{BindingsChanged, BindingsChanged, BindingsChanged, BindingsChanged, BindingsChanged, DialogPut, DialogDeleted}
	if got := seenAtB.kinds(); !equalKinds(got, want) {
		t.Fatalf("b's subscriber got %v, want %v", got, want)
	}
	if got := seenAtA.kinds(); !equalKinds(got, []EventKind{BindingsChanged}) {
		t.Fatalf("a's subscriber got %v", got)
	}

	// A third instance starting now loads everything.
	c := openRedis(t, addr, prefix, Options{Instance: "c"})
	if got := keys(c.Load().Bindings); len(got) != 4 {
		t.Fatalf("new instance loaded %v", got)
	}
}

func equalKinds(a, b []EventKind) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The bindings key carries the registration's expiry: Redis forgets it by
// itself.
func TestRedisKeyExpires(t *testing.T) {
	ctx := context.Background()
	s := openRedis(t, statetest.RedisAddr(t), testPrefix(t), Options{})
	short := binding("alice@a.test", "short", time.Now().Add(300*time.Millisecond))
	long := binding("alice@a.test", "long", time.Now().Add(time.Hour))
	if err := s.WriteBindings(ctx, BindingChange{AOR: "alice@a.test", Put: []Binding{short}}); err != nil {
		t.Fatal(err)
	}
	ttl, err := s.client.PTTL(ctx, s.bindingsKey("alice@a.test")).Result()
	if err != nil || ttl <= 0 || ttl > 300*time.Millisecond {
		t.Fatalf("PTTL = %v, %v; want (0, 300ms]", ttl, err)
	}
	if _, ok := waitFor(5*time.Second, func() bool {
		n, _ := s.client.Exists(ctx, s.bindingsKey("alice@a.test")).Result()
		return n == 0
	}); !ok {
		t.Fatal("the key did not expire with its binding")
	}
	if err := s.WriteBindings(ctx, BindingChange{AOR: "alice@a.test", Put: []Binding{long}}); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := s.client.PTTL(ctx, s.bindingsKey("alice@a.test")).Result(); ttl < 59*time.Minute {
		t.Fatalf("PTTL = %v, want about an hour", ttl)
	}
}

// Redis stops mid-test: reads go on from memory, writes are refused, Up
// says so; when it is back, everything resumes and the dialogs written
// meanwhile reach it.
func TestRedisOutage(t *testing.T) {
	ctx := context.Background()
	srv := statetest.StartRedis(t) // our own: this test kills it
	prefix := testPrefix(t)
	g := &syncGauge{}
	a := openRedis(t, srv.Addr, prefix, Options{Instance: "a", Timeout: 500 * time.Millisecond, Up: g})
	var seen events
	a.Subscribe(seen.add)
	if g.get() != 1 {
		t.Fatalf("gauge %v while up", g.get())
	}
	alice := binding("alice@a.test", "k", time.Now().Add(time.Hour))
	alice.Instance = "a"
	if err := PutBinding(ctx, a, alice); err != nil {
		t.Fatal(err)
	}
	// b's binding is b's to restore, not a's.
	other := binding("carol@a.test", "k", time.Now().Add(time.Hour))
	other.Instance = "b"
	if err := PutBinding(ctx, a, other); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	took, ok := waitFor(10*time.Second, func() bool { return !a.Up() })
	if !ok {
		t.Fatal("Up still true 10s after Redis stopped")
	}
	t.Logf("outage noticed after %v", took)
	if g.get() != 0 {
		t.Fatalf("gauge %v while down", g.get())
	}
	if len(a.ListBindings("alice@a.test")) != 1 {
		t.Fatal("cached binding not served while Redis is down")
	}
	start := time.Now()
	err := PutBinding(ctx, a, binding("bob@a.test", "k", time.Now().Add(time.Hour)))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write while down: %v", err)
	}
	t.Logf("write refused in %v: %v", time.Since(start), err)
	if len(a.ListBindings("bob@a.test")) != 0 {
		t.Fatal("a refused write changed the cache")
	}
	// A dialog confirmed during the outage is kept and written back later.
	if err := a.PutDialog(ctx, Dialog{CallID: "during-outage", Expires: time.Now().Add(time.Hour)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("dialog while down: %v", err)
	}
	if _, ok := a.Dialog("during-outage"); !ok {
		t.Fatal("dialog not kept locally")
	}

	srv.Start() // empty: it keeps nothing (--save '')
	took, ok = waitFor(15*time.Second, func() bool { return a.Up() })
	if !ok {
		t.Fatal("Up still false 15s after Redis came back")
	}
	t.Logf("recovery noticed after %v", took)
	if g.get() != 1 {
		t.Fatalf("gauge %v after recovery", g.get())
	}
	if err := PutBinding(ctx, a, binding("bob@a.test", "k", time.Now().Add(time.Hour))); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	// The restarted Redis was empty: a wrote back what it held (alice's
	// binding) and the dialog it kept during the outage.
	b := openRedis(t, srv.Addr, prefix, Options{Instance: "b"})
	if _, ok := b.Dialog("during-outage"); !ok {
		t.Fatal("the dialog written during the outage did not reach Redis")
	}
	if len(b.ListBindings("alice@a.test")) != 1 || len(a.ListBindings("alice@a.test")) != 1 {
		t.Fatal("the binding held before the outage was lost with Redis's data")
	}
	if len(b.ListBindings("bob@a.test")) != 1 {
		t.Fatal("write after recovery not in Redis")
	}
	if len(b.ListBindings("carol@a.test")) != 0 {
		t.Fatal("a wrote back a binding another instance holds")
	}
	if seen.resyncs() == 0 {
		t.Fatal("the subscriber was not given the reload after recovery")
	}
}

type syncGauge struct {
	mu sync.Mutex
	v  float64
}

func (g *syncGauge) Set(v float64) { g.mu.Lock(); g.v = v; g.mu.Unlock() }
func (g *syncGauge) get() float64  { g.mu.Lock(); defer g.mu.Unlock(); return g.v }

// Redis that is not there at start: the store opens, says so, and catches
// up when Redis appears.
func TestRedisUnreachableAtStart(t *testing.T) {
	srv := statetest.StartRedis(t)
	srv.Stop()
	s, err := OpenRedis(RedisOptions{Addrs: []string{srv.Addr}, Prefix: testPrefix(t)}, Options{Timeout: 200 * time.Millisecond})
	if err == nil {
		t.Fatal("no warning for an unreachable Redis")
	}
	defer s.Close()
	if s.Up() {
		t.Fatal("up without Redis")
	}
	srv.Start()
	if _, ok := waitFor(15*time.Second, s.Up); !ok {
		t.Fatal("never came up")
	}
}

// A slow Redis (writes paused longer than the timeout): the write fails
// within about the timeout instead of holding the REGISTER, and writes work
// again once Redis answers.
func TestRedisSlow(t *testing.T) {
	ctx := context.Background()
	srv := statetest.StartRedis(t)
	s := openRedis(t, srv.Addr, testPrefix(t), Options{Timeout: 300 * time.Millisecond})
	if err := s.client.Do(ctx, "CLIENT", "PAUSE", "1500", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := PutBinding(ctx, s, binding("alice@a.test", "k", time.Now().Add(time.Hour)))
	took := time.Since(start)
	if err == nil {
		t.Fatal("write succeeded while Redis was paused")
	}
	t.Logf("write failed after %v: %v", took, err)
	if took > 5*time.Second {
		t.Fatalf("write held for %v", took)
	}
	if len(s.ListBindings("alice@a.test")) != 0 {
		t.Fatal("a failed write changed the cache")
	}
	if _, ok := waitFor(10*time.Second, func() bool {
		return PutBinding(ctx, s, binding("alice@a.test", "k", time.Now().Add(time.Hour))) == nil
	}); !ok {
		t.Fatal("writes never resumed")
	}
}

// TestRedisWriteDialogs: a batch of dialog changes in one pipeline reaches
// Redis and the other instance, and this instance's own echoes change
// nothing in its cache.
func TestRedisWriteDialogs(t *testing.T) {
	ctx := context.Background()
	addr := statetest.RedisAddr(t)
	prefix := testPrefix(t)
	a := openRedis(t, addr, prefix, Options{Instance: "a"})
	b := openRedis(t, addr, prefix, Options{Instance: "b"})
	exp := time.Now().Add(time.Hour)
	if err := a.PutDialog(ctx, Dialog{CallID: "gone", Expires: exp}); err != nil {
		t.Fatal(err)
	}
	var puts []Dialog
	for i := range 100 {
		puts = append(puts, Dialog{CallID: fmt.Sprintf("call-%03d", i), Expires: exp})
	}
	if err := a.WriteDialogs(ctx, puts, []string{"gone"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitFor(visibilityWait, func() bool {
		_, gone := b.Dialog("gone")
		_, last := b.Dialog("call-099")
		return !gone && last
	}); !ok {
		t.Fatal("the batch did not reach the other instance")
	}
	if _, ok := a.Dialog("gone"); ok {
		t.Fatal("deleted dialog still in the writer's cache")
	}
	c := openRedis(t, addr, prefix, Options{Instance: "c"}) // loads from Redis
	if n := len(c.Load().Dialogs); n != 100 {
		t.Fatalf("Redis holds %d dialogs, want 100", n)
	}
}
