package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipproxy/sipproxy/proxy/state/statetest"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now().Truncate(time.Millisecond)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// backend opens a fresh store of one kind for a test.
type backend struct {
	name string
	open func(t *testing.T, o Options) Store
}

func backends() []backend {
	return []backend{
		{"memory", func(t *testing.T, o Options) Store { return NewMemory(o) }},
		{"file", func(t *testing.T, o Options) Store {
			s, warn := OpenFile(filepath.Join(t.TempDir(), "state.db"), o)
			if warn != nil {
				t.Fatalf("OpenFile: %v", warn)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"redis", func(t *testing.T, o Options) Store {
			return openRedis(t, statetest.RedisAddr(t), testPrefix(t), o)
		}},
	}
}

// testPrefix keeps tests apart on a shared Redis.
func testPrefix(t *testing.T) string {
	var b [4]byte
	rand.Read(b[:])
	return "sipproxy-test:" + strings.ReplaceAll(t.Name(), "/", "_") + ":" + hex.EncodeToString(b[:]) + ":"
}

func openRedis(t *testing.T, addr, prefix string, o Options) *Redis {
	t.Helper()
	s, err := OpenRedis(RedisOptions{Addrs: []string{addr}, Prefix: prefix}, o)
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func binding(aor, key string, expires time.Time) Binding {
	return Binding{
		AOR: aor, Key: key, Contact: "sip:" + key, ContactRaw: "<sip:" + key + ">",
		Expires: expires, Q: 0.5, CallID: "c1@x", CSeq: 7,
		Flow:     Flow{Transport: "tcp", Source: "127.0.0.1:5555"},
		Updated:  expires.Add(-time.Hour),
		Instance: "i1", InstanceAddr: "127.0.0.1:5060",
	}
}

func keys(bs []Binding) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.AOR + "/" + b.Key
	}
	slices.Sort(out)
	return out
}

// TestStore runs the same body against every backend.
func TestStore(t *testing.T) {
	ctx := context.Background()
	type step func(t *testing.T, s Store, c *clock)
	cases := []struct {
		name string
		run  step
	}{
		{"put and list", func(t *testing.T, s Store, c *clock) {
			exp := c.Now().Add(time.Hour)
			if err := s.WriteBindings(ctx, BindingChange{AOR: "alice@a.test", Put: []Binding{
				binding("", "a@10.0.0.1", exp), binding("", "b@10.0.0.2", exp)}}); err != nil {
				t.Fatal(err)
			}
			if err := PutBinding(ctx, s, binding("bob@a.test", "b@10.0.0.3", exp)); err != nil {
				t.Fatal(err)
			}
			got := s.ListBindings("alice@a.test")
			if want := []string{"alice@a.test/a@10.0.0.1", "alice@a.test/b@10.0.0.2"}; !slices.Equal(keys(got), want) {
				t.Fatalf("alice: %v, want %v", keys(got), want)
			}
			want := binding("alice@a.test", "a@10.0.0.1", exp)
			i := slices.IndexFunc(got, func(b Binding) bool { return b.Key == want.Key })
			if g := got[i]; !g.Expires.Equal(want.Expires) || !g.Updated.Equal(want.Updated) || g.Flow != want.Flow ||
				g.Contact != want.Contact || g.ContactRaw != want.ContactRaw || g.Q != want.Q || g.CallID != want.CallID ||
				g.CSeq != want.CSeq || g.Instance != want.Instance || g.InstanceAddr != want.InstanceAddr {
				t.Fatalf("round trip: %+v, want %+v", g, want)
			}
			if got := s.ListBindings("carol@a.test"); got != nil {
				t.Fatalf("carol: %v", got)
			}
		}},
		{"replace and delete in one change", func(t *testing.T, s Store, c *clock) {
			exp := c.Now().Add(time.Hour)
			if err := s.WriteBindings(ctx, BindingChange{AOR: "alice@a.test", Put: []Binding{
				binding("", "a", exp), binding("", "b", exp)}}); err != nil {
				t.Fatal(err)
			}
			later := binding("", "a", exp.Add(time.Hour))
			later.CSeq = 8
			if err := s.WriteBindings(ctx, BindingChange{AOR: "alice@a.test", Put: []Binding{later}, Delete: []string{"b"}}); err != nil {
				t.Fatal(err)
			}
			got := s.ListBindings("alice@a.test")
			if len(got) != 1 || got[0].Key != "a" || got[0].CSeq != 8 || !got[0].Expires.Equal(later.Expires) {
				t.Fatalf("got %+v", got)
			}
			if err := DeleteBinding(ctx, s, "alice@a.test", "a"); err != nil {
				t.Fatal(err)
			}
			if got := s.ListBindings("alice@a.test"); got != nil {
				t.Fatalf("after delete: %+v", got)
			}
		}},
		{"expired bindings are not listed and are swept", func(t *testing.T, s Store, c *clock) {
			if err := s.WriteBindings(ctx, BindingChange{AOR: "alice@a.test", Put: []Binding{
				binding("", "short", c.Now().Add(time.Minute)), binding("", "long", c.Now().Add(time.Hour))}}); err != nil {
				t.Fatal(err)
			}
			c.Advance(2 * time.Minute)
			if got := keys(s.ListBindings("alice@a.test")); !slices.Equal(got, []string{"alice@a.test/long"}) {
				t.Fatalf("got %v", got)
			}
			if got := keys(s.Load().Bindings); !slices.Equal(got, []string{"alice@a.test/long"}) {
				t.Fatalf("Load: %v", got)
			}
			n, err := s.Sweep(ctx, c.Now())
			if err != nil || n != 1 {
				t.Fatalf("Sweep = %d, %v; want 1", n, err)
			}
			if n, _ := s.Sweep(ctx, c.Now()); n != 0 {
				t.Fatalf("second Sweep = %d", n)
			}
		}},
		{"dialogs", func(t *testing.T, s Store, c *clock) {
			d := Dialog{
				CallID: "call-1", CallerTag: "ft", Confirmed: []string{"tt"},
				Caller: Party{Addrs: []string{"127.0.0.2"}, Hops: []Hop{{User: "a", Host: "127.0.0.2", Port: 5070}}},
				Callee: Party{Addrs: []string{"127.0.0.3"}, Tags: []string{"tt"}, Hops: []Hop{{Host: "127.0.0.3", Port: 5080}}},
				Since:  c.Now(), Expires: c.Now().Add(time.Hour), Instance: "i1",
			}
			if err := s.PutDialog(ctx, d); err != nil {
				t.Fatal(err)
			}
			got, ok := s.Dialog("call-1")
			if !ok || got.CallerTag != "ft" || !slices.Equal(got.Confirmed, d.Confirmed) || !slices.Equal(got.Callee.Hops, d.Callee.Hops) ||
				!slices.Equal(got.Caller.Addrs, d.Caller.Addrs) || !got.Expires.Equal(d.Expires) {
				t.Fatalf("Dialog = %+v, %v", got, ok)
			}
			got.Confirmed[0] = "changed" // the caller's copy
			if again, _ := s.Dialog("call-1"); again.Confirmed[0] != "tt" {
				t.Fatal("a returned dialog shares memory with the store")
			}
			if n := len(s.Load().Dialogs); n != 1 {
				t.Fatalf("Load: %d dialogs", n)
			}
			if err := s.DeleteDialog(ctx, "call-1"); err != nil {
				t.Fatal(err)
			}
			if _, ok := s.Dialog("call-1"); ok {
				t.Fatal("deleted dialog still there")
			}
			d.CallID, d.Expires = "call-2", c.Now().Add(time.Minute)
			if err := s.PutDialog(ctx, d); err != nil {
				t.Fatal(err)
			}
			c.Advance(2 * time.Minute)
			if _, ok := s.Dialog("call-2"); ok {
				t.Fatal("expired dialog returned")
			}
			if n, _ := s.Sweep(ctx, c.Now()); n != 1 {
				t.Fatalf("Sweep = %d, want 1", n)
			}
		}},
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					c := newClock()
					s := b.open(t, Options{Now: c.Now, Timeout: 2 * time.Second})
					if !s.Up() {
						t.Fatal("fresh store is not up")
					}
					tc.run(t, s, c)
				})
			}
		})
	}
}
