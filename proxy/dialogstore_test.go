package proxy

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/proxy/state"
	"github.com/sipproxy/sipproxy/proxy/state/statetest"
)

// sharedMemory is a store written by a pool (like Redis), in memory.
type sharedMemory struct{ *state.Memory }

func (sharedMemory) Shared() bool { return true }

// A confirmed call outlives the table that saw it set up: written to the
// store when answered, loaded by the next table (a restarted proxy), which
// relays between its parties as before, then removed by its BYE.
func TestDialogsPersisted(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	st, warn := state.OpenFile(filepath.Join(t.TempDir(), "state.db"), state.Options{})
	if warn != nil {
		t.Fatal(warn)
	}
	defer st.Close()

	before := newDialogs(time.Hour, &gaugeValue{})
	before.attach(st, "a", log)
	before.begin("c1", dlgCaller, dlgInvite(t, "c1"))
	before.answered("c1", dlgAnswer(t, "c1", "180 Ringing", "b1", "<sip:bob@198.51.100.9:5080;transport=tcp>"), dlgOurs)
	before.closeStore()
	if _, ok := st.Dialog("c1"); ok {
		t.Fatal("an early dialog was written")
	}

	before = newDialogs(time.Hour, &gaugeValue{})
	before.attach(st, "a", log)
	before.begin("c1", dlgCaller, dlgInvite(t, "c1"))
	before.answered("c1", dlgAnswer(t, "c1", "200 OK", "b1", "<sip:bob@198.51.100.9:5080;transport=tcp>"), dlgOurs)
	before.ended("c1")
	before.closeStore() // the process stops; the queue is written first

	g := &gaugeValue{}
	after := newDialogs(time.Hour, g)
	after.attach(st, "a", log)
	if g.v.Load() != 1 || after.active() != 1 {
		t.Fatalf("after restart: gauge %d, active %d; want the call", g.v.Load(), after.active())
	}
	for _, tc := range []struct {
		name string
		from string
		next string
		want bool
	}{
		{"caller to the callee's Contact", "192.0.2.1", "sip:bob@198.51.100.9:5080;transport=tcp", true},
		{"callee to the caller's Contact", "198.51.100.9", "sip:alice@192.0.2.1:5070", true},
		{"callee to the caller side's proxy", "198.51.100.9", "sip:edge.fabrikam.test;lr", true},
		{"caller to a gateway", "192.0.2.1", "sip:+19005551234@gw.contoso.com", false},
		{"a stranger", "192.0.2.66", "sip:bob@198.51.100.9:5080;transport=tcp", false},
	} {
		if got := after.allows("c1", mustAddr(t, tc.from), dlgURI(t, tc.next)); got != tc.want {
			t.Errorf("%s: allows = %v, want %v", tc.name, got, tc.want)
		}
	}
	after.closed("c1", dlgMsg(t, "BYE sip:bob@198.51.100.9 SIP/2.0", "Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK-9",
		"From: <sip:alice@fabrikam.test>;tag=a", "To: <sip:bob@contoso.com>;tag=b1", "Call-ID: c1", "CSeq: 2 BYE").(*sip.Request))
	after.closeStore()
	if _, ok := st.Dialog("c1"); ok {
		t.Fatal("the record outlived the BYE")
	}
}

// In a pool, a table loads only its own instance's calls (its drain waits
// for them), and relays another instance's call from the store's record.
func TestDialogsSharedStore(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	st := sharedMemory{state.NewMemory(state.Options{})}
	a := newDialogs(time.Hour, &gaugeValue{})
	a.attach(st, "a", log)
	a.begin("c1", dlgCaller, dlgInvite(t, "c1"))
	a.answered("c1", dlgAnswer(t, "c1", "200 OK", "b1", "<sip:bob@198.51.100.9:5080;transport=tcp>"), dlgOurs)
	a.ended("c1")
	a.closeStore()

	b := newDialogs(time.Hour, &gaugeValue{})
	b.attach(st, "b", log)
	defer b.closeStore()
	if n := b.active(); n != 0 {
		t.Fatalf("b counts %d of a's calls as its own", n)
	}
	if !b.allows("c1", dlgCaller, dlgURI(t, "sip:bob@198.51.100.9:5080;transport=tcp")) {
		t.Error("b does not relay a's call")
	}
	if b.allows("c1", dlgCaller, dlgURI(t, "sip:+19005551234@gw.contoso.com")) {
		t.Error("b relays a's caller to a gateway")
	}
	if _, ok := b.m["c1"]; ok {
		t.Error("a's call entered b's table")
	}
	if err := st.DeleteDialog(context.Background(), "c1"); err != nil {
		t.Fatal(err)
	}
	if b.allows("c1", dlgCaller, dlgURI(t, "sip:bob@198.51.100.9:5080;transport=tcp")) {
		t.Error("relayed after the record was removed")
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// In a pool on Redis: a call set up through a, whose BYE passes through b,
// is over at a too (a's drain stops waiting for it, its gauge drops).
func TestDialogsByeThroughAnotherInstance(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	addr := statetest.RedisAddr(t)
	prefix := "sipproxy-test:" + t.Name() + ":" + time.Now().Format("150405.000000") + ":"
	open := func(instance string) state.Store {
		st, err := state.OpenRedis(state.RedisOptions{Addrs: []string{addr}, Prefix: prefix}, state.Options{Instance: instance})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	stA, stB := open("a"), open("b")
	ga := &gaugeValue{}
	a := newDialogs(time.Hour, ga)
	a.attach(stA, "a", log)
	defer a.closeStore()
	b := newDialogs(time.Hour, &gaugeValue{})
	b.attach(stB, "b", log)
	defer b.closeStore()

	a.begin("c1", dlgCaller, dlgInvite(t, "c1"))
	a.answered("c1", dlgAnswer(t, "c1", "200 OK", "b1", "<sip:bob@198.51.100.9:5080;transport=tcp>"), dlgOurs)
	a.ended("c1")
	if !waitUntil(2*time.Second, func() bool { _, ok := stB.Dialog("c1"); return ok }) {
		t.Fatal("a's call never reached b's store")
	}
	if !b.allows("c1", dlgCaller, dlgURI(t, "sip:bob@198.51.100.9:5080;transport=tcp")) {
		t.Fatal("b does not relay a's call")
	}
	b.closed("c1", dlgMsg(t, "BYE sip:bob@198.51.100.9 SIP/2.0", "Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK-9",
		"From: <sip:alice@fabrikam.test>;tag=a", "To: <sip:bob@contoso.com>;tag=b1", "Call-ID: c1", "CSeq: 2 BYE").(*sip.Request))
	if !waitUntil(2*time.Second, func() bool { return a.active() == 0 }) {
		t.Fatalf("a still counts the call after its BYE passed through b (active %d)", a.active())
	}
	if ga.v.Load() != 0 {
		t.Fatalf("a's gauge %d", ga.v.Load())
	}
	if _, ok := stA.Dialog("c1"); ok {
		t.Fatal("the record is still in the store")
	}
}

func waitUntil(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for i := 0; i < 100000 && time.Now().Before(deadline); i++ {
		if cond() {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return cond()
}
