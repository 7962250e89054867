package registrar

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/proxy/state"
	"github.com/sipproxy/sipproxy/proxy/state/statetest"
)

// visibilityBound: a REGISTER at one instance is seen by another's Lookup
// within this (issue 10). A correctness bound, not a benchmark: each wait
// is bounded by visibilityWait (a loaded CI machine under -race can stall
// any one), the median of the measured figures must be within the bound,
// and they are logged.
const (
	visibilityBound = 100 * time.Millisecond
	visibilityWait  = 2 * time.Second
)

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

// nowClock is a fake clock that starts at the real time, so that the
// expiry times Redis sees are in the future.
func nowClock() *fakeClock { return &fakeClock{t: time.Now().Truncate(time.Second)} }

func newStoreRegistrar(t *testing.T, st state.Store, clock *fakeClock, instance string) (*Registrar, *fakeGauge) {
	t.Helper()
	g := &fakeGauge{}
	o := Options{Store: st, Instance: instance, Active: g,
		Advertise: func(tr string) string { return instance + ".test:5060;" + tr }}
	if clock != nil {
		o.Now = clock.Now
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, g
}

func mustRegister(t *testing.T, r *Registrar, req *sip.Request, flow Flow) {
	t.Helper()
	if res := r.Register(req, alice, flow); res.StatusCode != sip.StatusOK {
		t.Fatalf("REGISTER: %d %s", res.StatusCode, res.Reason)
	}
}

func TestFileStoreSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	clock := nowClock()
	st, warn := state.OpenFile(path, state.Options{Now: clock.Now})
	if warn != nil {
		t.Fatal(warn)
	}
	r, _ := newStoreRegistrar(t, st, clock, "a")
	mustRegister(t, r, register(t, "call-1", 1,
		`Contact: "Alice" <sip:alice@192.0.2.10:50612;transport=tcp;ob>;q=0.7;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";expires=600`,
		`Contact: <sip:alice@192.0.2.11>;expires=60`), tcpFlow)
	before := r.Lookup(alice)
	r.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	clock.Advance(2 * time.Minute) // the 60 s binding expires while we are down
	st, warn = state.OpenFile(path, state.Options{Now: clock.Now})
	if warn != nil {
		t.Fatal(warn)
	}
	defer st.Close()
	r, g := newStoreRegistrar(t, st, clock, "a")
	after := r.Lookup(alice)
	if len(after) != 1 {
		t.Fatalf("after restart: %+v", after)
	}
	i := slices.IndexFunc(before, func(b Binding) bool { return b.Contact.Host == "192.0.2.10" })
	if a, b := after[0], before[i]; a.Contact.String() != b.Contact.String() || a.ContactRaw != b.ContactRaw ||
		!a.Expires.Equal(b.Expires) || a.Q != b.Q || a.CallID != b.CallID || a.CSeq != b.CSeq || a.Flow != b.Flow ||
		!a.Updated.Equal(b.Updated) || a.Instance != "a" || a.InstanceAddr != "a.test:5060;tcp" {
		t.Fatalf("after restart %+v\nbefore %+v", a, b)
	}
	if g.Value() != 1 {
		t.Fatalf("registrations gauge %v after load", g.Value())
	}
	// The 200 of a refresh lists the loaded binding with its parameters.
	res := r.Register(register(t, "call-2", 1), alice, tcpFlow) // a query
	var contacts []string
	for _, h := range res.GetHeaders("Contact") {
		contacts = append(contacts, h.Value())
	}
	want := []string{`<sip:alice@192.0.2.10:50612;transport=tcp;ob>;q=0.7;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";expires=480`}
	if !slices.Equal(contacts, want) {
		t.Fatalf("200 contacts %q, want %q", contacts, want)
	}
	// CSeq ordering survives the restart (RFC 3261 10.3 step 7).
	stale := r.Register(register(t, "call-1", 1, `Contact: <sip:alice@192.0.2.10:50612;transport=tcp;ob>`), alice, tcpFlow)
	if stale.StatusCode != sip.StatusInternalServerError {
		t.Fatalf("replayed CSeq after restart: %d", stale.StatusCode)
	}
	// Removing the binding removes it from the file.
	mustRegister(t, r, register(t, "call-1", 2, "Contact: *", "Expires: 0"), tcpFlow)
	if n := len(st.Load().Bindings); n != 0 {
		t.Fatalf("%d bindings left in the store after Contact: *", n)
	}
}

// failingStore refuses every binding write, like Redis while down.
type failingStore struct{ *state.Memory }

func (failingStore) WriteBindings(context.Context, state.BindingChange) error {
	return state.ErrUnavailable
}

func TestStoreRefusesWrite(t *testing.T) {
	mem := state.NewMemory(state.Options{})
	clock := nowClock()
	r, g := newStoreRegistrar(t, failingStore{mem}, clock, "a")
	// A binding that exists before the trouble (loaded from the store).
	if err := state.PutBinding(context.Background(), mem, (&bindingRow{Binding: Binding{
		AOR: alice, ContactRaw: "<sip:alice@192.0.2.10>", Expires: clock.Now().Add(time.Hour), Q: 1, CallID: "call-0", CSeq: 1,
	}, Key: contactKey(sip.Uri{Scheme: "sip", User: "alice", Host: "192.0.2.10"})}).toState()); err != nil {
		t.Fatal(err)
	}
	r.replace(mem.Load().Bindings)
	before := r.Lookup(alice)

	for _, tc := range []struct {
		name    string
		headers []string
	}{
		{"new contact", []string{"Contact: <sip:alice@192.0.2.99>"}},
		{"refresh", []string{"Contact: <sip:alice@192.0.2.10>;expires=600"}},
		{"remove", []string{"Contact: <sip:alice@192.0.2.10>;expires=0"}},
		{"remove all", []string{"Contact: *", "Expires: 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := r.Register(register(t, "call-9", 1, tc.headers...), alice, udpFlow)
			if res.StatusCode != sip.StatusServiceUnavailable {
				t.Fatalf("got %d %s, want 503", res.StatusCode, res.Reason)
			}
			if ra := res.GetHeader("Retry-After"); ra == nil || ra.Value() != "5" {
				t.Fatalf("Retry-After %v, want 5", ra)
			}
			if after := r.Lookup(alice); len(after) != len(before) || !after[0].Expires.Equal(before[0].Expires) {
				t.Fatalf("bindings changed: %+v", after)
			}
			if g.Value() != 1 {
				t.Fatalf("gauge %v", g.Value())
			}
		})
	}
	// A query needs no write.
	if res := r.Register(register(t, "call-9", 1), alice, udpFlow); res.StatusCode != sip.StatusOK {
		t.Fatalf("query: %d", res.StatusCode)
	}
}

func openRedis(t *testing.T, addr, prefix string, o state.Options) *state.Redis {
	t.Helper()
	s, err := state.OpenRedis(state.RedisOptions{Addrs: []string{addr}, Prefix: prefix}, o)
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRedisTwoRegistrars(t *testing.T) {
	addr := statetest.RedisAddr(t)
	prefix := "sipproxy-test:" + t.Name() + ":" + time.Now().Format("150405.000000") + ":"
	a, ga := newStoreRegistrar(t, openRedis(t, addr, prefix, state.Options{}), nil, "a")
	b, gb := newStoreRegistrar(t, openRedis(t, addr, prefix, state.Options{}), nil, "b")

	// Five REGISTERs at a, each adding a contact, each waited for at b.
	var took []time.Duration
	for i := 1; i <= 5; i++ {
		contact := fmt.Sprintf("Contact: <sip:alice@192.0.2.%d>;expires=3600", 100+i)
		mustRegister(t, a, register(t, fmt.Sprintf("call-x%d", i), 1, contact), udpFlow)
		d, ok := waitFor(visibilityWait, func() bool { return len(b.Lookup(alice)) == i })
		if !ok {
			t.Fatalf("REGISTER %d at a not in b's Lookup after %v", i, d)
		}
		took = append(took, d)
	}
	slices.Sort(took)
	t.Logf("REGISTER at a seen by b's Lookup: median %v, worst %v of %d (bound %v)", took[2], took[4], len(took), visibilityBound)
	if took[2] > visibilityBound {
		t.Errorf("median visibility %v exceeds %v", took[2], visibilityBound)
	}
	mustRegister(t, a, register(t, "call-x9", 2, "Contact: *", "Expires: 0"), udpFlow)
	if _, ok := waitFor(visibilityWait, func() bool { return len(b.Lookup(alice)) == 0 }); !ok {
		t.Fatal("unregister at a not seen at b")
	}

	mustRegister(t, a, register(t, "call-1", 1, "Contact: <sip:alice@192.0.2.10:50612;transport=tcp>;expires=3600"), tcpFlow)
	if d, ok := waitFor(visibilityWait, func() bool { return len(b.Lookup(alice)) == 1 }); !ok {
		t.Fatalf("REGISTER at a not in b's Lookup after %v", d)
	}
	got := b.Lookup(alice)[0]
	if got.Instance != "a" || got.InstanceAddr != "a.test:5060;tcp" || got.Flow != tcpFlow || got.Contact.Host != "192.0.2.10" {
		t.Fatalf("b sees %+v", got)
	}
	if gb.Value() != 1 || ga.Value() != 1 {
		t.Fatalf("gauges a %v b %v", ga.Value(), gb.Value())
	}

	// b refreshes it (same Call-ID, higher CSeq: b knows the CSeq from a).
	stale := b.Register(register(t, "call-1", 1, "Contact: <sip:alice@192.0.2.10:50612;transport=tcp>"), alice, tcpFlow)
	if stale.StatusCode != sip.StatusInternalServerError {
		t.Fatalf("stale CSeq at b: %d", stale.StatusCode)
	}
	mustRegister(t, b, register(t, "call-1", 2, "Contact: <sip:alice@192.0.2.10:50612;transport=tcp>;expires=1800"), tcpFlow)
	if _, ok := waitFor(visibilityWait, func() bool {
		bs := a.Lookup(alice)
		return len(bs) == 1 && bs[0].CSeq == 2 && bs[0].Instance == "b"
	}); !ok {
		t.Fatalf("refresh at b not seen at a: %+v", a.Lookup(alice))
	}
	// Unregister at a: gone at b.
	mustRegister(t, a, register(t, "call-1", 3, "Contact: *", "Expires: 0"), tcpFlow)
	if took, ok := waitFor(visibilityWait, func() bool { return len(b.Lookup(alice)) == 0 }); !ok {
		t.Fatalf("unregister at a still in b's Lookup after %v", took)
	}
	if gb.Value() != 0 {
		t.Fatalf("b's gauge %v", gb.Value())
	}
}

// A binding expires at both instances and in Redis, with no REGISTER.
func TestRedisBindingExpiresAtBoth(t *testing.T) {
	addr := statetest.RedisAddr(t)
	prefix := "sipproxy-test:" + t.Name() + ":" + time.Now().Format("150405.000000") + ":"
	open := func(instance string) *Registrar {
		st := openRedis(t, addr, prefix, state.Options{})
		r, err := New(Options{Store: st, Instance: instance, MinExpires: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		return r
	}
	a, b := open("a"), open("b")
	mustRegister(t, a, register(t, "call-1", 1, "Contact: <sip:alice@192.0.2.10>;expires=1"), udpFlow)
	if _, ok := waitFor(visibilityWait, func() bool { return len(b.Lookup(alice)) == 1 }); !ok {
		t.Fatal("not seen at b")
	}
	if _, ok := waitFor(5*time.Second, func() bool { return len(a.Lookup(alice))+len(b.Lookup(alice)) == 0 }); !ok {
		t.Fatal("binding did not expire at both")
	}
	a.Sweep()
	b.Sweep()
	if a.Count()+b.Count() != 0 {
		t.Fatal("Count after expiry")
	}
	// Redis forgot it too: a new instance loads nothing.
	if _, ok := waitFor(5*time.Second, func() bool {
		return len(openRedis(t, addr, prefix, state.Options{}).Load().Bindings) == 0
	}); !ok {
		t.Fatal("Redis still holds the expired binding")
	}
}

// Redis down: REGISTER gets 503 with Retry-After, Lookup still answers
// from memory; Redis back: REGISTER works again.
func TestRedisDownRegistrar(t *testing.T) {
	srv := statetest.StartRedis(t)
	st := openRedis(t, srv.Addr, "sipproxy-test:", state.Options{Instance: "a", Timeout: 300 * time.Millisecond})
	r, _ := newStoreRegistrar(t, st, nil, "a")
	mustRegister(t, r, register(t, "call-1", 1, "Contact: <sip:alice@192.0.2.10>"), udpFlow)

	srv.Stop()
	if _, ok := waitFor(10*time.Second, func() bool { return !st.Up() }); !ok {
		t.Fatal("store still up")
	}
	res := r.Register(register(t, "call-1", 2, "Contact: <sip:alice@192.0.2.10>"), alice, udpFlow)
	if res.StatusCode != sip.StatusServiceUnavailable || res.GetHeader("Retry-After") == nil {
		t.Fatalf("REGISTER while Redis is down: %d", res.StatusCode)
	}
	if bs := r.Lookup(alice); len(bs) != 1 || bs[0].CSeq != 1 {
		t.Fatalf("Lookup while Redis is down: %+v", bs)
	}

	srv.Start()
	if _, ok := waitFor(15*time.Second, st.Up); !ok {
		t.Fatal("store never came back")
	}
	// The restarted Redis is empty (no persistence in the test): the
	// instance wrote back the binding it held, for the whole pool.
	if bs := r.Lookup(alice); len(bs) != 1 {
		t.Fatalf("after reload from an empty Redis: %+v", bs)
	}
	if n := len(openRedis(t, srv.Addr, "sipproxy-test:", state.Options{}).ListBindings(alice)); n != 1 {
		t.Fatalf("another instance sees %d bindings after the recovery, want 1", n)
	}
	mustRegister(t, r, register(t, "call-1", 3, "Contact: <sip:alice@192.0.2.10>"), udpFlow)
	if bs := st.ListBindings(alice); len(bs) != 1 || bs[0].CSeq != 3 {
		t.Fatalf("REGISTER after recovery not in the store: %+v", bs)
	}
}

// Concurrent REGISTERs through a file store, of many AORs and several to
// one: the memdb and the store agree at the end.
func TestConcurrentRegisterThroughStore(t *testing.T) {
	st, warn := state.OpenFile(filepath.Join(t.TempDir(), "state.db"), state.Options{})
	if warn != nil {
		t.Fatal(warn)
	}
	defer st.Close()
	r, _ := newStoreRegistrar(t, st, nil, "a")
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				aor := fmt.Sprintf("user%d@contoso.com", w)
				req := register(t, fmt.Sprintf("w%d", w), i+1, fmt.Sprintf("Contact: <sip:u@192.0.2.%d>", i%4+1))
				if res := r.Register(req, aor, udpFlow); res.StatusCode != sip.StatusOK {
					t.Errorf("worker %d: %d", w, res.StatusCode)
					return
				}
				// Everyone also refreshes one shared AOR.
				shared := register(t, fmt.Sprintf("s%d-%d", w, i), 1, fmt.Sprintf("Contact: <sip:alice@192.0.2.%d>", w+1))
				if res := r.Register(shared, alice, udpFlow); res.StatusCode != sip.StatusOK {
					t.Errorf("worker %d shared: %d", w, res.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	for w := range workers {
		aor := fmt.Sprintf("user%d@contoso.com", w)
		if got, stored := len(r.Lookup(aor)), len(st.ListBindings(aor)); got != 4 || stored != 4 {
			t.Errorf("%s: Lookup %d, store %d, want 4", aor, got, stored)
		}
	}
	if got, stored := len(r.Lookup(alice)), len(st.ListBindings(alice)); got != workers || stored != workers {
		t.Errorf("alice: Lookup %d, store %d, want %d", got, stored, workers)
	}
	if n := r.Count(); n != 4*workers+workers {
		t.Errorf("Count %d", n)
	}
}

// BenchmarkRegisterStore: one REGISTER (a refresh, CSeq rising) written
// through each backend, one at a time, and a Lookup with the store
// attached (it never touches the backend).
func BenchmarkRegisterStore(b *testing.B) {
	for _, bc := range []struct {
		name string
		open func(b *testing.B) state.Store
	}{
		{"none", func(*testing.B) state.Store { return nil }},
		{"file", func(b *testing.B) state.Store {
			st, warn := state.OpenFile(filepath.Join(b.TempDir(), "state.db"), state.Options{})
			if warn != nil {
				b.Fatal(warn)
			}
			b.Cleanup(func() { st.Close() })
			return st
		}},
		{"redis", func(b *testing.B) state.Store {
			st, err := state.OpenRedis(state.RedisOptions{Addrs: []string{statetest.RedisAddr(b)}, Prefix: "sipproxy-bench:" + time.Now().Format("150405.000000") + ":"}, state.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			return st
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r, err := New(Options{Store: bc.open(b)})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			b.Run("register-parallel", func(b *testing.B) {
				var n atomic.Int64
				b.SetParallelism(32) // phones rebooting together: many REGISTERs at once
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := n.Add(1)
						req := register(b, sip.GenerateTagN(10), 1, fmt.Sprintf("Contact: <sip:u%d@192.0.2.1>", i))
						if res := r.Register(req, fmt.Sprintf("u%d@contoso.com", i), udpFlow); res.StatusCode != sip.StatusOK {
							b.Errorf("%d", res.StatusCode)
							return
						}
					}
				})
			})
			b.Run("register", func(b *testing.B) {
				seq := 0
				for b.Loop() {
					seq++
					req := register(b, "bench", seq, "Contact: <sip:alice@192.0.2.10:50612;transport=tcp>")
					if res := r.Register(req, alice, tcpFlow); res.StatusCode != sip.StatusOK {
						b.Fatalf("%d", res.StatusCode)
					}
				}
			})
			b.Run("lookup", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if len(r.Lookup(alice)) != 1 {
						b.Fatal("lost the binding")
					}
				}
			})
		})
	}
}
