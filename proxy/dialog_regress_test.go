package proxy_test

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// A BYE challenged downstream (401/407) does not end the dialog (RFC 3261
// 15.1.1): the caller's retry with credentials for that hop is relayed, and
// the callee's leg is torn down.
func TestDialogBYEChallengedDownstreamRetried(t *testing.T) {
	um := oxListen(t, "um", "tls")
	var byes atomic.Int32
	um.onOther = func(c *oxConn, req *sip.Request) bool {
		if req.Method != sip.BYE || byes.Add(1) > 1 {
			return false
		}
		res := sip.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
		res.AppendHeader(sip.NewHeader("Proxy-Authenticate", `Digest realm="carrier.example", nonce="abc", algorithm=MD5`))
		_ = c.write([]byte(res.String()))
		return true
	}
	px := startProxy(t, proxyOpts{voicemail: um.uri()})
	um.serve(t, px)

	caller := oxNewUA(t, "caller")
	c := caller.dial(t, px, "tcp", nil)
	mailbox := "sip:alice@contoso.com;opaque=app:voicemail"
	inv := rvRequest(c, "tcp", "INVITE", mailbox, "<sip:ext@fabrikam.com>", "<"+mailbox+">")
	res := c.do(t, inv)
	if res.StatusCode != 200 {
		t.Fatalf("INVITE: %d %s", res.StatusCode, res.Reason)
	}
	dlg := rvDialogOf(c, inv, res)
	umContact := dlg.remote
	inDialog := func(method string, seq int, extra ...string) oxRaw { return dlg.request(method, "", seq, extra...) }
	if err := c.write(oxAck(inv, res).bytes()); err != nil {
		t.Fatal(err)
	}
	um.wait(t, "ACK", 1)

	if r := rvSend(t, c, inDialog("BYE", 2), 5*time.Second); r == nil || r.StatusCode != 407 {
		t.Fatalf("first BYE: want UM's 407 relayed, got %v", r)
	}
	retry := inDialog("BYE", 3, `Proxy-Authorization: Digest username="ext", realm="carrier.example", nonce="abc", uri="`+umContact+`", response="00000000000000000000000000000000"`)
	r := rvSend(t, c, retry, 5*time.Second)
	if r == nil || r.StatusCode != 200 {
		t.Errorf("BYE retried with credentials: want it relayed (200 from UM), got %v", r)
	}
	if n := len(rvAt(um.oxUA, "BYE", inv.value("Call-ID"), 500*time.Millisecond)); n != 2 {
		t.Errorf("UM received %d BYEs, want 2: the callee leg is never torn down", n)
	}
}

// A stray 2xx (it matches no client transaction; its top Via names us) is
// forwarded statelessly but teaches the dialog table nothing: anyone can
// forge one, and with it the caller of any mailbox could add a host of its
// choosing to the callee side of its own call and relay there.
func TestDialogForgedStray2xxTeachesNothing(t *testing.T) {
	lab := rvNewRelayLab(t)
	px, far, farURI := lab.px, lab.far, lab.farURI
	mailbox := "sip:alice@contoso.com;opaque=app:voicemail"
	c := oxNewUA(t, "mallory").dial(t, px, "tcp", nil)
	inv, dlg := lab.callMailbox(t, c, "")

	// A made-up 200 OK, sent on mallory's own connection.
	forged := oxRaw{start: "SIP/2.0 200 OK", lines: []string{
		"Via: SIP/2.0/TCP " + px.Addr("tcp") + ";branch=z9hG4bK-forged1",
		fmt.Sprintf("Via: SIP/2.0/TCP 127.0.0.1:%d;branch=z9hG4bK-forged0", c.localPort()),
		inv.get("From")[0],
		"To: <" + mailbox + ">;tag=evil",
		inv.get("Call-ID")[0],
		"CSeq: 1 INVITE",
		"Contact: <" + farURI + ">",
		"Content-Length: 0",
	}}
	if err := c.write(forged.bytes()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)

	m := dlg.request("MESSAGE", farURI, 2)
	r := rvSend(t, c, m, 5*time.Second)
	if got := rvAt(far.oxUA, "MESSAGE", inv.value("Call-ID"), 500*time.Millisecond); len(got) > 0 {
		t.Errorf("relayed to a host outside the dialog after a forged stray 200 (response %v)", r.StartLine())
	}
}

// An unidentified caller at 127.0.0.2 calls carol, who rings and is
// cancelled after 1 s (unanswered rule); UM answers. The caller re-INVITEs
// with a new Contact; UM's BYE, over a new connection, reaches it there.
func TestDialogForwardStagesRefreshAndBye(t *testing.T) {
	um := oxListen(t, "um", "tcp")
	px := startProxy(t, proxyOpts{voicemail: um.uri(), rulesYAML: "rules:\n  - user: sip:carol@contoso.com\n    unanswered: {target: \"sip:carol@contoso.com;opaque=app:voicemail\", after: 1s}\n"})
	um.serve(t, px)
	carol := oxRegisterRaw(t, px, "carol")
	carol.mu.Lock()
	carol.onInvite = func(tx *oxTx) {
		tx.respond(180, "Ringing", nil)
		<-tx.cancelled
		tx.respond(487, "Request Terminated", nil)
	}
	carol.mu.Unlock()

	caller := oxNewUA(t, "caller")
	c := rvDialFrom(t, caller, px, net.IPv4(127, 0, 0, 2))
	inv := rvRequest(c, "tcp", "INVITE", "sip:carol@contoso.com", "<sip:ext@fabrikam.com>", "<sip:carol@contoso.com>")
	inv.set("Contact", fmt.Sprintf("<sip:ext@127.0.0.2:%d;transport=tcp>", c.localPort()))
	res := c.do(t, inv)
	if res.StatusCode != 200 {
		t.Fatalf("INVITE: %d", res.StatusCode)
	}
	dlg := rvDialogOf(c, inv, res)
	seq := 1
	inDialog := func(method string) oxRaw { seq++; return dlg.request(method, "", seq) }
	if err := c.write(oxAck(inv, res).bytes()); err != nil {
		t.Fatal(err)
	}
	um.wait(t, "ACK", 1)
	re := inDialog("INVITE")
	newContact := fmt.Sprintf("sip:ext@127.0.0.2:%d;transport=tcp", c.localPort()+1)
	re.set("Contact", "<"+newContact+">")
	if r := c.do(t, re); r.StatusCode != 200 {
		t.Fatalf("re-INVITE: %d", r.StatusCode)
	}
	// UM's BYE to the caller's new Contact, over a new connection from UM's address.
	umInv := um.requests("INVITE")[0].req
	uc := um.oxUA.dial(t, px, "tcp", nil)
	bye := oxRaw{start: "BYE " + newContact + " SIP/2.0", lines: []string{
		fmt.Sprintf("Via: SIP/2.0/TCP 127.0.0.1:%d;branch=z9hG4bK-umbye%s", uc.localPort(), sip.GenerateTagN(6)),
		"Max-Forwards: 70",
		"From: " + res.To().Value(),
		"To: " + inv.value("From"),
		"Call-ID: " + inv.value("Call-ID"),
		"CSeq: 1 BYE",
	}}
	for _, h := range umInv.GetHeaders("Record-Route") {
		bye.lines = append(bye.lines, "Route: "+h.Value())
	}
	bye.lines = append(bye.lines, "Content-Length: 0")
	if r := rvSend(t, uc, bye, 5*time.Second); r == nil || r.StatusCode != 200 {
		t.Fatalf("UM's BYE to the caller's refreshed Contact: %v", r)
	}
	// The caller's crossing BYE, after UM's completed.
	if r := rvSend(t, c, inDialog("BYE"), 5*time.Second); r == nil {
		t.Fatalf("caller's BYE: no answer")
	} else {
		t.Logf("caller's crossing BYE after UM's BYE: %d %s", r.StatusCode, r.Reason)
	}
}
