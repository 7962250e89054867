package proxy_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sipproxy/sipproxy/proxy/state"
	"github.com/sipproxy/sipproxy/proxy/state/statetest"
)

// A caller the proxy cannot identify (a digest-only phone: its BYE carries
// no credentials) calls a mailbox; the proxy restarts at the same address.
// With a state file the restarted proxy still knows the call and relays
// the caller's BYE; with memory state it refuses it, as before.
func TestRestartRelaysUnidentifiedBYE(t *testing.T) {
	for _, tc := range []struct {
		name    string
		state   string // %s: a path in the test's directory
		relayed bool
	}{
		{"memory state forgets the call", "", false},
		{"file state keeps it", "state: {backend: file, path: %q}\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			um := oxListen(t, "um", "tcp")
			o := proxyOpts{
				voicemail: um.uri(),
				tcpPort:   freePort(t, "tcp"),
				authExtra: "  secret: restart-test-secret", // Record-Route tokens outlive the process
			}
			if tc.state != "" {
				o.state = fmt.Sprintf(tc.state, filepath.Join(t.TempDir(), "state.db"))
			}
			before := startProxy(t, o)
			um.serve(t, before)

			caller := oxNewUA(t, "caller")
			c := caller.dial(t, before, "tcp", nil)
			mailbox := "sip:alice@contoso.com;opaque=app:voicemail"
			inv := rvRequest(c, "tcp", "INVITE", mailbox, "<sip:ext@fabrikam.com>", "<"+mailbox+">")
			res := c.do(t, inv)
			if res.StatusCode != 200 {
				t.Fatalf("INVITE: %d %s", res.StatusCode, res.Reason)
			}
			dlg := rvDialogOf(c, inv, res)
			if err := c.write(oxAck(inv, res).bytes()); err != nil {
				t.Fatal(err)
			}
			um.wait(t, "ACK", 1)

			// Stop without waiting for the call's BYE (the drain would).
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			_ = before.Shutdown(ctx)
			cancel()

			after := startProxy(t, o)
			c2 := caller.dial(t, after, "tcp", nil)
			dlg.c = c2
			r := rvSend(t, c2, dlg.request("BYE", "", 2), 5*time.Second)
			got := rvAt(um.oxUA, "BYE", inv.value("Call-ID"), time.Second)
			switch {
			case tc.relayed && len(got) == 0:
				t.Fatalf("the restarted proxy did not relay the BYE (answered %v)", r)
			case !tc.relayed && len(got) != 0:
				t.Fatalf("the BYE was relayed without state")
			case !tc.relayed && (r == nil || r.StatusCode != 481):
				t.Fatalf("BYE without state answered %v, want the proxy's 481", r)
			}
			if tc.relayed && (r == nil || r.StatusCode != 200) {
				t.Errorf("BYE answered %v, want UM's 200", r)
			}
		})
	}
}

// Two proxies sharing Redis: a REGISTER at one is in the other's Lookup
// (no round trip: its memdb is kept current by the store's feed), and a
// call placed at the other reaches the phone at its Contact.
func TestPoolSharesRegistrations(t *testing.T) {
	addr := statetest.RedisAddr(t)
	st := fmt.Sprintf("state: {backend: redis, addrs: [%q], prefix: %q}\n", addr, "sipproxy-test:pool:"+time.Now().Format("150405.000000")+":")
	a := startProxy(t, proxyOpts{state: st})
	b := startProxy(t, proxyOpts{state: st})
	for name, px := range map[string]*testProxy{"a": a, "b": b} {
		if up := testutil.ToFloat64(px.m.StateBackendUp); up != 1 {
			t.Fatalf("%s: sipproxy_state_backend_up = %v", name, up)
		}
	}

	alice := newPhone(t, a, "alice", "udp", phoneOpts{listen: true})
	alice.mustRegister(t)
	start := time.Now()
	var seen bool
	for i := 0; i < 2000 && time.Since(start) < 2*time.Second; i++ {
		if bs := b.Registrar().Lookup("alice@contoso.com"); len(bs) == 1 {
			seen = true
			if bs[0].InstanceAddr == "" || bs[0].Flow.Transport != "udp" {
				t.Errorf("binding at b: %+v", bs[0])
			}
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !seen {
		t.Fatal("alice's REGISTER at a is not in b's Lookup")
	}
	t.Logf("REGISTER through a seen by b's Lookup after %v", time.Since(start))

	bob := newPhone(t, b, "bob", "udp", phoneOpts{listen: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dlg, err := bob.call(ctx, uri("alice"))
	if err != nil {
		t.Fatalf("bob at b calling alice registered at a: %v", err)
	}
	defer dlg.Close()
	if dlg.InviteResponse == nil || dlg.InviteResponse.StatusCode != 200 {
		t.Fatalf("call answered %v", dlg.InviteResponse)
	}
}

// TestPoolCallsThroughTheHoldingInstance (issue 10, point 2): two instances
// on one Redis, peers of each other with one auth.secret. Alice's phone
// registers over TCP at a from a port it does not listen on (a phone
// behind NAT: only its connection to a reaches it). Bob, at b, calls her:
// b sends the call to a with a Route naming a and the flow, and a delivers
// it over alice's connection. Her unREGISTER at a removes the binding at
// both.
func TestPoolCallsThroughTheHoldingInstance(t *testing.T) {
	addr := statetest.RedisAddr(t)
	prefix := "sipproxy-test:flow:" + time.Now().Format("150405.000000") + ":"
	st := func(instance string) string {
		return fmt.Sprintf("state: {backend: redis, addrs: [%q], prefix: %q, instance: %s}\n", addr, prefix, instance)
	}
	opts := func(instance string) proxyOpts {
		return proxyOpts{
			state:       st(instance),
			authExtra:   "  secret: one-secret-for-the-pool",
			peers:       "peers:\n  - {name: pool, sources: [\"127.0.0.1/32\"]}\n",
			serverExtra: "",
		}
	}
	a := startProxy(t, opts("a"))
	b := startProxy(t, opts("b"))

	// Phones on 127.0.0.3: not peers.
	alice := newPhone(t, a, "alice", "tcp", phoneOpts{localIP: "127.0.0.3"})
	alice.mustRegister(t)
	waitBinding := func(px *testProxy, want int) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for len(px.Registrar().Lookup("alice@contoso.com")) != want {
			if time.Now().After(deadline) {
				t.Fatalf("alice has %d bindings, want %d", len(px.Registrar().Lookup("alice@contoso.com")), want)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitBinding(b, 1)
	if c := b.Registrar().Lookup("alice@contoso.com")[0].Contact; c.Port != 1 {
		t.Fatalf("alice's contact %s: the test wants a contact nobody listens on", c.String())
	}

	bob := newPhone(t, b, "bob", "udp", phoneOpts{listen: true, localIP: "127.0.0.3"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dlg, err := bob.call(ctx, uri("alice"))
	if err != nil {
		t.Fatalf("bob at b calling alice, whose connection a holds: %v (%d)", err, statusOf(err))
	}
	_ = dlg.Ack(ctx)
	inv := lastRequest(t, alice)
	vias := inv.GetHeaders("Via")
	if len(vias) != 3 {
		t.Errorf("alice's INVITE has %d Via headers, want 3 (a, b, bob)", len(vias))
	}
	aTCP := a.Addr("tcp")
	if len(vias) > 0 && !strings.Contains(vias[0].Value(), aTCP) {
		t.Errorf("alice's INVITE came through %s, want a (%s)", vias[0].Value(), aTCP)
	}
	if err := dlg.Bye(ctx); err != nil {
		t.Errorf("BYE: %v", err)
	}

	// unREGISTER at a: gone at both.
	if res, err := alice.register(ctx, 0); err != nil || res.StatusCode != 200 {
		t.Fatalf("unREGISTER: %v %v", res, err)
	}
	waitBinding(a, 0)
	waitBinding(b, 0)
}

// TestRedisOutageEndToEnd (issue 10, point 4): Redis stops under a running
// proxy: sipproxy_state_backend_up goes to 0, calls to a registered phone
// are still served from what the instance holds, a REGISTER gets 503 with
// Retry-After; Redis comes back (empty: no persistence): the gauge is 1
// again, the binding the instance held is in Redis again, and REGISTER
// works.
func TestRedisOutageEndToEnd(t *testing.T) {
	srv := statetest.StartRedis(t) // our own: this test stops it
	prefix := "sipproxy-test:outage:"
	px := startProxy(t, proxyOpts{state: fmt.Sprintf("state: {backend: redis, addrs: [%q], prefix: %q, instance: a, timeout: 300ms}\n", srv.Addr, prefix)})
	alice := newPhone(t, px, "alice", "udp", phoneOpts{listen: true})
	alice.mustRegister(t)
	bob := newPhone(t, px, "bob", "udp", phoneOpts{listen: true})
	waitGauge := func(want float64) time.Duration {
		t.Helper()
		start := time.Now()
		for testutil.ToFloat64(px.m.StateBackendUp) != want {
			if time.Since(start) > 15*time.Second {
				t.Fatalf("state_backend_up did not become %v in 15 s", want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		dlg, err := bob.call(ctx, uri("alice"))
		if err != nil {
			return err
		}
		_ = dlg.Ack(ctx)
		return dlg.Bye(ctx)
	}

	if up := testutil.ToFloat64(px.m.StateBackendUp); up != 1 {
		t.Fatalf("state_backend_up = %v before the outage, want 1", up)
	}
	srv.Stop()
	t.Logf("MEASURED state_backend_up 0 after %v", waitGauge(0).Round(time.Millisecond))
	if err := call(); err != nil {
		t.Fatalf("call while Redis is down: %v (%d)", err, statusOf(err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := alice.register(ctx, 300)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 503 || res.GetHeader("Retry-After") == nil {
		t.Fatalf("REGISTER while Redis is down: %d %s (Retry-After %v), want 503 with Retry-After", res.StatusCode, res.Reason, res.GetHeader("Retry-After"))
	}

	srv.Start()
	t.Logf("MEASURED state_backend_up 1 again %v after Redis restarted", waitGauge(1).Round(time.Millisecond))
	// The instance wrote its binding back into the empty Redis.
	reader, err := state.OpenRedis(state.RedisOptions{Addrs: []string{srv.Addr}, Prefix: prefix}, state.Options{Instance: "reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(reader.ListBindings("alice@contoso.com")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("alice's binding is not back in Redis")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := call(); err != nil {
		t.Fatalf("call after Redis came back: %v", err)
	}
	res, err = alice.register(ctx, 300)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER after Redis came back: %v %v", res, err)
	}
}
