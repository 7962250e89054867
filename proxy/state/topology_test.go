package state

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sipproxy/sipproxy/proxy/state/statetest"
)

// The same two-instance exchange against a Redis Cluster (three masters:
// the AORs' keys spread over them) and through a Sentinel.
func TestRedisTopologies(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts func(t *testing.T) RedisOptions
	}{
		{"cluster", func(t *testing.T) RedisOptions {
			return RedisOptions{Addrs: statetest.StartCluster(t, 3), Cluster: true}
		}},
		{"sentinel", func(t *testing.T) RedisOptions {
			master := statetest.StartRedis(t)
			return RedisOptions{Addrs: []string{statetest.StartSentinel(t, "mymaster", master.Addr)}, SentinelMaster: "mymaster"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			ro := tc.opts(t)
			ro.Prefix = testPrefix(t)
			open := func(instance string) *Redis {
				s, err := OpenRedis(ro, Options{Instance: instance, Timeout: 2 * time.Second})
				if err != nil {
					t.Fatalf("OpenRedis: %v", err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
			a, b := open("a"), open("b")
			const n = 20
			var took []time.Duration
			for i := range n {
				aor := fmt.Sprintf("user%d@a.test", i)
				if err := PutBinding(ctx, a, binding(aor, "k", time.Now().Add(time.Hour))); err != nil {
					t.Fatal(err)
				}
				d, ok := waitFor(visibilityWait, func() bool { return len(b.ListBindings(aor)) == 1 })
				if !ok {
					t.Fatalf("%s not visible at b after %v", aor, d)
				}
				took = append(took, d)
			}
			checkVisibility(t, tc.name, took)
			if err := a.PutDialog(ctx, Dialog{CallID: "d1", Expires: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			if err := DeleteBinding(ctx, b, "user0@a.test", "k"); err != nil {
				t.Fatal(err)
			}
			if _, ok := waitFor(visibilityWait, func() bool { return len(a.ListBindings("user0@a.test")) == 0 }); !ok {
				t.Fatal("delete at b not visible at a")
			}
			// A new instance loads everything, from every master.
			c := open("c")
			snap := c.Load()
			if len(snap.Bindings) != n-1 || len(snap.Dialogs) != 1 {
				t.Fatalf("new instance loaded %d bindings and %d dialogs, want %d and 1", len(snap.Bindings), len(snap.Dialogs), n-1)
			}
		})
	}
}
