package proxy

import (
	"context"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/proxy/router"
)

type gaugeValue struct{ v atomic.Int64 }

func (g *gaugeValue) Set(f float64) { g.v.Store(int64(f)) }

// dlgMsg parses one SIP message (lines joined with CRLF).
func dlgMsg(t *testing.T, lines ...string) sip.Message {
	t.Helper()
	m, err := sip.NewParser().ParseSIP([]byte(strings.Join(lines, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return m
}

// dlgInvite is the INVITE as the caller (at 192.0.2.1) sent it: one proxy
// before us, its Contact at 192.0.2.1:5070.
func dlgInvite(t *testing.T, callID string) *sip.Request {
	return dlgMsg(t,
		"INVITE sip:bob@contoso.com SIP/2.0",
		"Via: SIP/2.0/TCP 192.0.2.1:5070;branch=z9hG4bK-1",
		"Record-Route: <sip:edge.fabrikam.test;lr>",
		"From: <sip:alice@fabrikam.test>;tag=a",
		"To: <sip:bob@contoso.com>",
		"Call-ID: "+callID,
		"CSeq: 1 INVITE",
		"Contact: <sip:alice@192.0.2.1:5070;transport=tcp>",
	).(*sip.Request)
}

// dlgAnswer is the callee's response (from 198.51.100.9, via one proxy on
// its side), with our two Record-Route entries and the caller side's.
func dlgAnswer(t *testing.T, callID, status, tag, contact string) *sip.Response {
	res := dlgMsg(t,
		"SIP/2.0 "+status,
		"Via: SIP/2.0/TCP 203.0.113.5:5060;branch=z9hG4bK-ours",
		"Record-Route: <sip:sbc.contoso.com;lr>",
		"Record-Route: <sip:203.0.113.5:5060;transport=tcp;lr;flow=x>",
		"Record-Route: <sip:203.0.113.5:5060;transport=tcp;lr;flow=y>",
		"Record-Route: <sip:edge.fabrikam.test;lr>",
		"From: <sip:alice@fabrikam.test>;tag=a",
		"To: <sip:bob@contoso.com>;tag="+tag,
		"Call-ID: "+callID,
		"CSeq: 1 INVITE",
		"Contact: "+contact,
	).(*sip.Response)
	res.SetSource("198.51.100.9:5060")
	return res
}

func dlgOurs(u sip.Uri) bool { return u.Host == "203.0.113.5" }

func dlgURI(t *testing.T, s string) sip.Uri {
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatal(err)
	}
	return u
}

var (
	dlgCaller   = netip.MustParseAddr("192.0.2.1")
	dlgCallee   = netip.MustParseAddr("198.51.100.9")
	dlgStranger = netip.MustParseAddr("192.0.2.66")
)

func TestDialogsAllows(t *testing.T) {
	g := &gaugeValue{}
	d := newDialogs(time.Hour, g)
	d.begin("c1", dlgCaller, dlgInvite(t, "c1"))
	d.answered("c1", dlgAnswer(t, "c1", "200 OK", "b1", "<sip:bob@198.51.100.9:5080;transport=tcp>"), dlgOurs)
	d.ended("c1")
	if g.v.Load() != 1 {
		t.Fatalf("gauge %d after one answered call, want 1", g.v.Load())
	}
	for _, tc := range []struct {
		name   string
		callID string
		from   netip.Addr
		next   string
		want   bool
	}{
		{"caller to the callee's Contact", "c1", dlgCaller, "sip:bob@198.51.100.9:5080;transport=tcp", true},
		{"caller to the callee side's proxy", "c1", dlgCaller, "sip:sbc.contoso.com;lr", true},
		{"callee to the caller's Contact", "c1", dlgCallee, "sip:alice@192.0.2.1:5070", true},
		{"callee to the caller side's proxy", "c1", dlgCallee, "sip:EDGE.fabrikam.test:5060;lr", true},
		{"caller to its own Contact (its own choice, maybe a gateway)", "c1", dlgCaller, "sip:alice@192.0.2.1:5070", false},
		{"caller to its own side's proxy", "c1", dlgCaller, "sip:edge.fabrikam.test;lr", false},
		{"caller to a gateway", "c1", dlgCaller, "sip:+19005551234@gw.contoso.com", false},
		{"callee's Contact on another port", "c1", dlgCaller, "sip:bob@198.51.100.9:5081", false},
		{"callee's Contact with another user", "c1", dlgCaller, "sip:carol@198.51.100.9:5080", false},
		{"a stranger to the callee's Contact", "c1", dlgStranger, "sip:bob@198.51.100.9:5080", false},
		{"an unknown Call-ID", "c2", dlgCaller, "sip:bob@198.51.100.9:5080", false},
	} {
		if got := d.allows(tc.callID, tc.from, dlgURI(t, tc.next)); got != tc.want {
			t.Errorf("%s: allows = %v, want %v", tc.name, got, tc.want)
		}
	}

	// A target refresh from the callee moves its Contact; the caller may
	// then reach the new one.
	reinvite := dlgMsg(t, "INVITE sip:alice@192.0.2.1:5070 SIP/2.0", "Via: SIP/2.0/TCP 198.51.100.9;branch=z9hG4bK-2",
		"From: <sip:bob@contoso.com>;tag=b1", "To: <sip:alice@fabrikam.test>;tag=a", "Call-ID: c1", "CSeq: 1 INVITE",
		"Contact: <sip:bob@198.51.100.9:6000>").(*sip.Request)
	d.refreshed("c1", dlgCallee, reinvite, false, "b1")
	if !d.allows("c1", dlgCaller, dlgURI(t, "sip:bob@198.51.100.9:6000")) {
		t.Error("the callee's refreshed Contact is not reachable by the caller")
	}
	// A refresh the stranger claims changes nothing.
	d.refreshed("c1", dlgStranger, dlgMsg(t, "INVITE sip:x@192.0.2.1 SIP/2.0", "Via: SIP/2.0/TCP 192.0.2.66;branch=z9hG4bK-3",
		"From: <sip:m@x>;tag=m", "To: <sip:x@y>;tag=a", "Call-ID: c1", "CSeq: 1 INVITE", "Contact: <sip:+1900@gw.contoso.com>").(*sip.Request), false, "m")
	if d.allows("c1", dlgCallee, dlgURI(t, "sip:+1900@gw.contoso.com")) || d.allows("c1", dlgCaller, dlgURI(t, "sip:+1900@gw.contoso.com")) {
		t.Error("a stranger's Contact became a target of the dialog")
	}
}

func TestDialogsLifecycle(t *testing.T) {
	g := &gaugeValue{}
	d := newDialogs(time.Hour, g)
	inv := dlgInvite(t, "f")
	bye := func(toTag string) *sip.Request {
		return dlgMsg(t, "BYE sip:bob@198.51.100.9 SIP/2.0", "Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK-9",
			"From: <sip:alice@fabrikam.test>;tag=a", "To: <sip:bob@contoso.com>;tag="+toTag, "Call-ID: f", "CSeq: 2 BYE").(*sip.Request)
	}

	// Early: reachable for PRACK, not counted.
	d.begin("f", dlgCaller, inv)
	d.answered("f", dlgAnswer(t, "f", "180 Ringing", "b1", "<sip:bob@198.51.100.9:5080>"), dlgOurs)
	if n := d.active(); n != 0 {
		t.Fatalf("an early dialog counts as %d active calls", n)
	}
	if !d.allows("f", dlgCaller, dlgURI(t, "sip:bob@198.51.100.9:5080")) {
		t.Fatal("early dialog: PRACK to the callee's Contact refused")
	}
	// Two forks answer; a 2xx retransmission counts once.
	d.answered("f", dlgAnswer(t, "f", "200 OK", "b1", "<sip:bob@198.51.100.9:5080>"), dlgOurs)
	d.answered("f", dlgAnswer(t, "f", "200 OK", "b1", "<sip:bob@198.51.100.9:5080>"), dlgOurs)
	d.answered("f", dlgAnswer(t, "f", "200 OK", "b2", "<sip:bob@198.51.100.9:5090>"), dlgOurs)
	if n := d.active(); n != 1 || g.v.Load() != 1 {
		t.Fatalf("active %d gauge %d, want 1 call", n, g.v.Load())
	}
	if !d.allows("f", dlgCaller, dlgURI(t, "sip:bob@198.51.100.9:5090")) {
		t.Error("the late fork's Contact is not reachable")
	}
	d.ended("f") // the INVITE transaction is over; the call goes on
	d.closed("f", bye("b1"))
	if n := d.active(); n != 1 {
		t.Fatalf("after the BYE of one fork: %d active, want 1", n)
	}
	d.closed("f", bye("zzz")) // not one of its dialogs
	d.closed("f", bye("b2"))
	if n := d.active(); n != 0 || g.v.Load() != 0 {
		t.Fatalf("after both BYEs: active %d gauge %d, want 0 0", n, g.v.Load())
	}
	if d.allows("f", dlgCaller, dlgURI(t, "sip:bob@198.51.100.9:5080")) {
		t.Error("a request after the last BYE is still relayed")
	}

	// An early dialog whose INVITE failed is forgotten.
	d.begin("g", dlgCaller, dlgInvite(t, "g"))
	d.answered("g", dlgAnswer(t, "g", "183 Session Progress", "b", "<sip:bob@198.51.100.9>"), dlgOurs)
	d.ended("g")
	if d.allows("g", dlgCaller, dlgURI(t, "sip:bob@198.51.100.9")) {
		t.Error("a failed call's early dialog is still routable")
	}
	// No Call-ID, no To tag: nothing recorded.
	d.begin("", dlgCaller, inv)
	d.answered("", dlgAnswer(t, "h", "200 OK", "b", "<sip:bob@198.51.100.9>"), dlgOurs)
	untagged := dlgAnswer(t, "h", "200 OK", "b", "<sip:bob@198.51.100.9>")
	untagged.To().Params.Remove("tag")
	d.begin("h", dlgCaller, dlgInvite(t, "h"))
	d.answered("h", untagged, dlgOurs)
	d.ended("h")
	if len(d.m) != 0 {
		t.Fatalf("%d entries left, want none", len(d.m))
	}
}

func TestDialogsSweepForgetsStaleCalls(t *testing.T) {
	g := &gaugeValue{}
	d := newDialogs(50*time.Millisecond, g)
	for _, id := range []string{"x", "y", "z"} {
		d.begin(id, dlgCaller, dlgInvite(t, id))
		d.answered(id, dlgAnswer(t, id, "200 OK", "t", "<sip:bob@198.51.100.9>"), dlgOurs)
		d.ended(id)
	}
	if g.v.Load() != 3 {
		t.Fatalf("gauge %d, want 3", g.v.Load())
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

// A spiral (the INVITE leaves us and comes back with the same Call-ID) or
// an upstream fork to two of our users: two transactions share the entry;
// both callers are learned, and the one that fails does not end the other.
func TestDialogsSharedCallID(t *testing.T) {
	d := newDialogs(time.Hour, &gaugeValue{})
	gw := netip.MustParseAddr("198.51.100.50")
	d.begin("s", gw, dlgInvite(t, "s"))        // the inner pass of a spiral, from the routing hop
	d.begin("s", dlgCaller, dlgInvite(t, "s")) // the caller's own
	d.answered("s", dlgAnswer(t, "s", "183 Session Progress", "b1", "<sip:bob@198.51.100.9:5080;transport=tcp>"), dlgOurs)
	d.ended("s") // one of them fails
	if !d.allows("s", dlgCaller, dlgURI(t, "sip:bob@198.51.100.9:5080;transport=tcp")) {
		t.Error("the caller's PRACK to the callee's Contact is refused")
	}
	d.ended("s")
	if d.allows("s", dlgCaller, dlgURI(t, "sip:bob@198.51.100.9:5080;transport=tcp")) {
		t.Error("both transactions failed, yet the early dialog is still routable")
	}
}

// maxAge is an idle timeout: a call whose in-dialog requests keep passing
// (session refreshes) is never forgotten, however long it lasts.
func TestDialogsIdleNotAge(t *testing.T) {
	d := newDialogs(200*time.Millisecond, &gaugeValue{})
	d.begin("l", dlgCaller, dlgInvite(t, "l"))
	d.answered("l", dlgAnswer(t, "l", "200 OK", "b1", "<sip:bob@198.51.100.9:5080>"), dlgOurs)
	d.ended("l")
	callee := dlgURI(t, "sip:bob@198.51.100.9:5080")
	for i := range 6 { // a refresh every 60 ms: 360 ms in all
		if !d.allows("l", dlgCaller, callee) {
			t.Fatalf("refresh %d refused", i)
		}
		time.Sleep(60 * time.Millisecond)
		d.active()
	}
	time.Sleep(250 * time.Millisecond)
	if d.active(); d.allows("l", dlgCaller, callee) {
		t.Error("an idle call outlived maxAge")
	}
}

// A refresh from an identified sender (a peer, or the answer to our own
// request) is placed by its tag, and its new address is learned: a
// multi-homed UM may re-INVITE from another address than it answered from.
// An unidentified sender claiming a tag changes nothing.
func TestDialogsRefreshByTag(t *testing.T) {
	d := newDialogs(time.Hour, &gaugeValue{})
	d.begin("p", dlgCaller, dlgInvite(t, "p"))
	d.answered("p", dlgAnswer(t, "p", "200 OK", "u1", "<sip:um@198.51.100.9:5061;transport=tls>"), dlgOurs)
	d.ended("p")
	second := netip.MustParseAddr("198.51.100.10")
	reinvite := func(contact string) *sip.Request {
		return dlgMsg(t, "INVITE sip:alice@192.0.2.1:5070 SIP/2.0", "Via: SIP/2.0/TLS 198.51.100.10;branch=z9hG4bK-2",
			"From: <sip:bob@contoso.com>;tag=u1", "To: <sip:alice@fabrikam.test>;tag=a", "Call-ID: p", "CSeq: 2 INVITE",
			"Contact: <"+contact+">").(*sip.Request)
	}
	d.refreshed("p", dlgStranger, reinvite("sip:evil@192.0.2.66"), false, "u1")
	if d.allows("p", dlgCaller, dlgURI(t, "sip:evil@192.0.2.66")) {
		t.Error("an unidentified sender's claimed tag placed its Contact")
	}
	d.refreshed("p", second, reinvite("sip:um@198.51.100.10:5061;transport=tls"), true, "u1")
	if !d.allows("p", dlgCaller, dlgURI(t, "sip:um@198.51.100.10:5061;transport=tls")) {
		t.Error("the caller's BYE to the peer's refreshed Contact is refused")
	}
	if !d.allows("p", second, dlgURI(t, "sip:alice@192.0.2.1:5070")) {
		t.Error("the peer's new address is not recognised as the callee side")
	}
	d.refreshed("p", second, reinvite("sip:x@198.51.100.11"), true, "unknown-tag")
	if d.allows("p", dlgCaller, dlgURI(t, "sip:x@198.51.100.11")) {
		t.Error("a refresh with a tag of neither side placed its Contact")
	}
}

// On a transport we dial but do not listen on, our Via and Record-Route
// name listenerFor's stand-in; they are still ours.
func TestOwnViaOnUnlistenedTransport(t *testing.T) {
	udp := &listener{transport: "udp", host: "203.0.113.5", port: 5060, bound: netip.MustParseAddrPort("203.0.113.5:5060")}
	rt, err := router.New(router.Config{Domains: []string{"contoso.com"}})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{router: rt, byTrans: map[string]*listener{}}
	s.addListener(udp)
	l := s.listenerFor("tcp")
	if !s.router.IsOurAddress(l.host, l.port, l.transport) {
		t.Errorf("our own Via SIP/2.0/%s %s:%d is not recognised as ours", l.transport, l.host, l.port)
	}
	if s.router.IsOurAddress("203.0.113.5", 5070, "tcp") || s.router.IsOurAddress("203.0.113.6", 5060, "tcp") {
		t.Error("another port or host on that transport taken for ours")
	}
}
