package proxy

import (
	"context"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
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
	d.answered("c1", dlgCaller, dlgInvite(t, "c1"), dlgAnswer(t, "c1", "200 OK", "b1", "<sip:bob@198.51.100.9:5080;transport=tcp>"), dlgOurs)
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
	d.refreshed("c1", dlgCallee, reinvite)
	if !d.allows("c1", dlgCaller, dlgURI(t, "sip:bob@198.51.100.9:6000")) {
		t.Error("the callee's refreshed Contact is not reachable by the caller")
	}
	// A refresh the stranger claims changes nothing.
	d.refreshed("c1", dlgStranger, dlgMsg(t, "INVITE sip:x@192.0.2.1 SIP/2.0", "Via: SIP/2.0/TCP 192.0.2.66;branch=z9hG4bK-3",
		"From: <sip:m@x>;tag=m", "To: <sip:x@y>;tag=a", "Call-ID: c1", "CSeq: 1 INVITE", "Contact: <sip:+1900@gw.contoso.com>").(*sip.Request))
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
	d.answered("f", dlgCaller, inv, dlgAnswer(t, "f", "180 Ringing", "b1", "<sip:bob@198.51.100.9:5080>"), dlgOurs)
	if n := d.active(); n != 0 {
		t.Fatalf("an early dialog counts as %d active calls", n)
	}
	if !d.allows("f", dlgCaller, dlgURI(t, "sip:bob@198.51.100.9:5080")) {
		t.Fatal("early dialog: PRACK to the callee's Contact refused")
	}
	// Two forks answer; a 2xx retransmission counts once.
	d.answered("f", dlgCaller, inv, dlgAnswer(t, "f", "200 OK", "b1", "<sip:bob@198.51.100.9:5080>"), dlgOurs)
	d.answered("f", dlgCaller, inv, dlgAnswer(t, "f", "200 OK", "b1", "<sip:bob@198.51.100.9:5080>"), dlgOurs)
	d.answered("f", netip.Addr{}, nil, dlgAnswer(t, "f", "200 OK", "b2", "<sip:bob@198.51.100.9:5090>"), dlgOurs)
	if n := d.active(); n != 1 || g.v.Load() != 1 {
		t.Fatalf("active %d gauge %d, want 1 call", n, g.v.Load())
	}
	if !d.allows("f", dlgCaller, dlgURI(t, "sip:bob@198.51.100.9:5090")) {
		t.Error("the late fork's Contact is not reachable")
	}
	d.failed("f") // an INVITE that ended after a 2xx: nothing to undo
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
	d.answered("g", dlgCaller, dlgInvite(t, "g"), dlgAnswer(t, "g", "183 Session Progress", "b", "<sip:bob@198.51.100.9>"), dlgOurs)
	d.failed("g")
	if d.allows("g", dlgCaller, dlgURI(t, "sip:bob@198.51.100.9")) {
		t.Error("a failed call's early dialog is still routable")
	}
	// No Call-ID, no To tag: nothing recorded.
	d.answered("", dlgCaller, inv, dlgAnswer(t, "h", "200 OK", "b", "<sip:bob@198.51.100.9>"), dlgOurs)
	untagged := dlgAnswer(t, "h", "200 OK", "b", "<sip:bob@198.51.100.9>")
	untagged.To().Params.Remove("tag")
	d.answered("h", dlgCaller, dlgInvite(t, "h"), untagged, dlgOurs)
	if len(d.m) != 0 {
		t.Fatalf("%d entries left, want none", len(d.m))
	}
}

func TestDialogsSweepForgetsStaleCalls(t *testing.T) {
	g := &gaugeValue{}
	d := newDialogs(50*time.Millisecond, g)
	for _, id := range []string{"x", "y", "z"} {
		d.answered(id, dlgCaller, dlgInvite(t, id), dlgAnswer(t, id, "200 OK", "t", "<sip:bob@198.51.100.9>"), dlgOurs)
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
