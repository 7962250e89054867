package proxy_test

// Regression tests for the attacks a security review found (skip-pin
// smuggling, digest transplant, open relay, identity spoofing, a next hop
// that ignores CANCEL). Each one failed on the code as reviewed. Helpers
// start with "rv"; the raw SIP endpoint (oxUA, oxListen, oxRaw) comes from
// ocexum_test.go.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/sipproxy/sipproxy/internal/pki"
	"github.com/sipproxy/sipproxy/proxy"
)

// rvRequest builds a raw request sent on c (tcp or tls) with a fresh Via,
// tags and Call-ID. extra lines go after the mandatory headers.
func rvRequest(c *oxConn, transport, method, ruri, from, to string, extra ...string) oxRaw {
	m := oxRaw{start: method + " " + ruri + " SIP/2.0", lines: []string{
		fmt.Sprintf("Via: SIP/2.0/%s 127.0.0.1:%d;branch=%s-rv%s", strings.ToUpper(transport), c.localPort(), sip.RFC3261BranchMagicCookie, sip.GenerateTagN(10)),
		"Max-Forwards: 70",
		"From: " + from + ";tag=" + sip.GenerateTagN(8),
		"To: " + to,
		"Call-ID: rv-" + sip.GenerateTagN(16),
		"CSeq: 1 " + method,
		fmt.Sprintf("Contact: <sip:x@127.0.0.1:%d;transport=%s>", c.localPort(), transport),
	}}
	m.lines = append(m.lines, extra...)
	m.lines = append(m.lines, "Content-Length: 0")
	return m
}

// rvSend writes m and returns its final response (nil after wait without one).
func rvSend(t testing.TB, c *oxConn, m oxRaw, wait time.Duration) *sip.Response {
	t.Helper()
	if err := c.write(m.bytes()); err != nil {
		t.Fatalf("write: %v", err)
	}
	callID := m.value("Call-ID")
	deadline := time.After(wait)
	for {
		select {
		case r := <-c.responses:
			if r.res.CallID() == nil || r.res.CallID().Value() != callID || r.res.IsProvisional() {
				continue
			}
			return r.res
		case <-deadline:
			return nil
		}
	}
}

// rvAt returns what ua received with a Call-ID (waiting up to wait).
func rvAt(ua *oxUA, method, callID string, wait time.Duration) []oxMsg {
	deadline := time.Now().Add(wait)
	for {
		var out []oxMsg
		for _, m := range ua.requests(method) {
			if m.req.CallID() != nil && m.req.CallID().Value() == callID {
				out = append(out, m)
			}
		}
		if len(out) > 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rvDialFrom connects a raw UA to the proxy's TCP listener from a local
// address of the test's choosing (127.0.0.2: a party the proxy can tell
// apart from the others on 127.0.0.1).
func rvDialFrom(t testing.TB, ua *oxUA, px *testProxy, ip net.IP) *oxConn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: ip}}
	nc, err := d.Dial("tcp", px.Addr("tcp"))
	if err != nil {
		t.Skipf("cannot dial from %v: %v", ip, err)
	}
	return ua.serveConn(nc)
}

// rvDialog is the caller's side of a dialog it set up with inv on c and
// the 2xx res: what it needs for in-dialog requests (RFC 3261 12.1.2).
type rvDialog struct {
	c      *oxConn
	inv    oxRaw
	routes []string // the route set as Route lines: the Record-Route reversed
	toTag  string
	remote string // the remote target: the answer's Contact
}

func rvDialogOf(c *oxConn, inv oxRaw, res *sip.Response) *rvDialog {
	d := &rvDialog{c: c, inv: inv, remote: res.Contact().Address.String()}
	for _, h := range res.GetHeaders("Record-Route") {
		d.routes = append([]string{"Route: " + h.Value()}, d.routes...)
	}
	d.toTag, _ = res.To().Params.Get("tag")
	return d
}

// request builds an in-dialog request to ruri ("" is the remote target)
// along the route set, extra lines after it.
func (d *rvDialog) request(method, ruri string, seq int, extra ...string) oxRaw {
	if ruri == "" {
		ruri = d.remote
	}
	m := rvRequest(d.c, "tcp", method, ruri, "<sip:x@invalid>", d.inv.value("To")+";tag="+d.toTag, append(slices.Clone(d.routes), extra...)...)
	m.set("Call-ID", d.inv.value("Call-ID"))
	m.set("From", d.inv.value("From"))
	m.set("CSeq", fmt.Sprintf("%d %s", seq, method))
	return m
}

// rvRelayLab is a proxy with a UM behind TLS and a far host on TCP that
// nothing should ever relay to: the setting of the open-relay tests.
type rvRelayLab struct {
	px      *testProxy
	um, far *oxListener
	farURI  string
}

func rvNewRelayLab(t testing.TB) *rvRelayLab {
	um := oxListen(t, "um", "tls")
	far := oxListen(t, "far", "tcp")
	px := startProxy(t, proxyOpts{voicemail: um.uri()})
	um.serve(t, px)
	far.serve(t, px)
	return &rvRelayLab{px: px, um: um, far: far, farURI: fmt.Sprintf("sip:victim@127.0.0.1:%d;transport=tcp", far.port)}
}

// callMailbox places an unauthenticated call from c to alice's mailbox
// (contact: its Contact, "" for rvRequest's) and returns the INVITE and
// the caller's side of the answered dialog.
func (l *rvRelayLab) callMailbox(t testing.TB, c *oxConn, contact string) (oxRaw, *rvDialog) {
	t.Helper()
	mailbox := "sip:alice@contoso.com;opaque=app:voicemail"
	inv := rvRequest(c, "tcp", "INVITE", mailbox, "<sip:mallory@fabrikam.com>", "<"+mailbox+">")
	if contact != "" {
		inv.set("Contact", contact)
	}
	res := c.do(t, inv)
	if res.StatusCode != 200 {
		t.Fatalf("INVITE to the mailbox: %d %s", res.StatusCode, res.Reason)
	}
	return inv, rvDialogOf(c, inv, res)
}

// rvHasSkipPinLine reports whether raw bytes carry an Ms-Exchange-Command
// line for any parser that accepts a bare LF as a line end.
func rvHasSkipPinLine(raw []byte) bool {
	return bytes.Contains(bytes.ToLower(raw), []byte("\nms-exchange-command"))
}

// ---------------------------------------------------------------------------
// F1. A bare LF inside a header line smuggles Ms-Exchange-Command past the
// policy: sipgo ends lines only at CR (sip/parser.go nextLine), so
// "X-Note: a\nMs-Exchange-Command: skip-pin" is ONE header X-Note for the
// proxy, and is relayed byte for byte to UM over TLS. Any UM/front-end
// parser that accepts LF line ends (most lenient stacks do) sees
// Ms-Exchange-Command: skip-pin from the trusted proxy, for alice's mailbox,
// sent by an unauthenticated stranger over TCP.
func TestBareLFCannotSmuggleSkipPin(t *testing.T) {
	um := oxListen(t, "um", "tls")
	px := startProxy(t, proxyOpts{voicemail: um.uri()})
	um.serve(t, px)
	for _, tc := range []struct{ name, line string }{
		{"LF in a value", "X-Note: hello\nMs-Exchange-Command: skip-pin"},
		{"LF in a name", "X-Note\nMs-Exchange-Command: skip-pin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mallory := oxNewUA(t, "mallory")
			c := mallory.dial(t, px, "tcp", nil)
			inv := rvRequest(c, "tcp", "INVITE", "sip:alice@contoso.com;opaque=app:voicemail",
				"<sip:mallory@fabrikam.com>", "<sip:alice@contoso.com;opaque=app:voicemail>", tc.line)
			res := rvSend(t, c, inv, 5*time.Second)
			got := rvAt(um.oxUA, "INVITE", inv.value("Call-ID"), time.Second)
			if len(got) == 0 {
				t.Logf("not relayed (final %v): fine", res)
				return
			}
			if rvHasSkipPinLine(got[0].raw) {
				t.Errorf("UM received an Ms-Exchange-Command line from an unauthenticated TCP caller:\n%s", got[0].raw)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// F2. Duplicate single-instance headers. sipgo keeps every line and
// re-serialises them all, but the proxy reads only one of them: the LAST
// Content-Length frames the message (parser.go parseHeadersOnly), and the
// LAST From/To/Call-ID/CSeq is what req.From() etc. return (headers.go
// AppendHeader -> setHeaderRef overwrites). Downstream stacks commonly take
// the first. Two consequences, both over the proxy's trusted TLS hop to UM:
//
//   - From: alice, authenticated, sends "From: bob" then "From: alice" with
//     skip-pin to her own mailbox: the rule checks the last From (alice) and
//     keeps skip-pin; a UM that identifies the caller by the first From
//     logs into bob's mailbox without PIN (and identify.go's "a local user
//     may only speak as themselves" is bypassed the same way).
//   - Content-Length (below).
func TestDuplicateFromRefused(t *testing.T) {
	um := oxListen(t, "um", "tls")
	px := startProxy(t, proxyOpts{voicemail: um.uri()})
	um.serve(t, px)
	alice := oxNewUA(t, "alice")
	c := alice.dial(t, px, "tls", px.pki.clientTLS(t, "sip:alice@contoso.com"))
	mailbox := "sip:alice@contoso.com;opaque=app:voicemail"
	inv := rvRequest(c, "tls", "INVITE", mailbox, "<sip:alice@contoso.com>", "<"+mailbox+">", "Ms-Exchange-Command: skip-pin")
	// "From: bob" goes first, before alice's From line.
	inv.lines = append(inv.lines[:2], append([]string{"From: <sip:bob@contoso.com>;tag=bobtag"}, inv.lines[2:]...)...)
	rvSend(t, c, inv, 5*time.Second)
	for _, m := range rvAt(um.oxUA, "INVITE", inv.value("Call-ID"), time.Second) {
		raw := oxMustRaw(t, m.raw)
		if len(raw.get("Ms-Exchange-Command")) > 0 && len(raw.get("From")) != 1 {
			t.Errorf("UM got skip-pin with From lines %q", raw.get("From"))
		}
	}
}

// F2 (continued). Duplicate Content-Length. sipgo frames a message by the LAST
// Content-Length (parser.go parseHeadersOnly) but keeps and re-serialises
// every Content-Length line, so the proxy relays two conflicting lengths to
// UM on its trusted TLS connection. A UM (or any hop) that frames by the
// FIRST one reads the body as a second request, from the proxy, over TLS:
// here an INVITE for alice's mailbox with Ms-Exchange-Command: skip-pin,
// sent by an unauthenticated stranger over TCP (request smuggling).
func TestDuplicateContentLengthRefused(t *testing.T) {
	um := oxListen(t, "um", "tls")
	px := startProxy(t, proxyOpts{voicemail: um.uri()})
	um.serve(t, px)
	for _, first := range []string{"Content-Length: 0", "l: 0"} {
		t.Run(first, func(t *testing.T) {
			mallory := oxNewUA(t, "mallory")
			c := mallory.dial(t, px, "tcp", nil)
			inner := "INVITE sip:alice@contoso.com;opaque=app:voicemail SIP/2.0\r\n" +
				"Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-rv-inner\r\n" +
				"Max-Forwards: 70\r\nFrom: <sip:alice@contoso.com>;tag=in1\r\nTo: <sip:alice@contoso.com>\r\n" +
				"Call-ID: rv-inner\r\nCSeq: 1 INVITE\r\nMs-Exchange-Command: skip-pin\r\nContent-Length: 0\r\n\r\n"
			outer := rvRequest(c, "tcp", "INVITE", "sip:alice@contoso.com;opaque=app:voicemail",
				"<sip:mallory@fabrikam.com>", "<sip:alice@contoso.com;opaque=app:voicemail>", first)
			outer.lines[len(outer.lines)-1] = fmt.Sprintf("Content-Length: %d", len(inner))
			outer.lines = append(outer.lines, "Content-Type: message/sip")
			outer.body = inner
			rvSend(t, c, outer, 5*time.Second)
			got := rvAt(um.oxUA, "INVITE", outer.value("Call-ID"), time.Second)
			if len(got) == 0 {
				return
			}
			n := 0
			for _, l := range oxMustRaw(t, got[0].raw).lines {
				if name := strings.ToLower(oxName(l)); name == "content-length" || name == "l" {
					n++
				}
			}
			if n != 1 {
				t.Errorf("UM got %d Content-Length lines (the first says 0, the body is an INVITE with skip-pin):\n%s", n, got[0].raw)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// F3. Digest credentials are neither bound to the Request-URI (identify.go
// never compares the digest uri= with the Request-URI; auth/digest.go says
// it is "the caller's choice") nor to the transport/connection the nonce
// was issued on. So credentials alice computed for any INVITE (say to bob,
// over UDP/TCP) are accepted once, over TLS, for "INVITE
// sip:alice@contoso.com;opaque=app:voicemail" with skip-pin: an on-path
// attacker on a non-TLS hop who holds back alice's INVITE gets her mailbox
// without the PIN (the exact attack docs/security.md rule 2 claims to stop).
func TestDigestTransplantRefused(t *testing.T) {
	um := oxListen(t, "um", "tls")
	px := startProxy(t, proxyOpts{voicemail: um.uri()})
	um.serve(t, px)
	mailbox := "sip:alice@contoso.com;opaque=app:voicemail"

	// challenge returns a 407 challenge obtained on c.
	challenge := func(t *testing.T, c *oxConn, transport, ruri string) *digest.Challenge {
		t.Helper()
		inv := rvRequest(c, transport, "INVITE", ruri, "<sip:alice@contoso.com>", "<"+ruri+">")
		res := rvSend(t, c, inv, 5*time.Second)
		if res == nil || res.StatusCode != 407 {
			t.Fatalf("want 407, got %v", res)
		}
		_ = c.write(oxAck(inv, res).bytes())
		ch, err := digest.ParseChallenge(res.GetHeader("Proxy-Authenticate").Value())
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	attack := func(t *testing.T, ch *digest.Challenge, credURI string) {
		t.Helper()
		cred, err := digest.Digest(ch, digest.Options{Method: "INVITE", URI: credURI, Username: "alice", Password: "alice-pw"})
		if err != nil {
			t.Fatal(err)
		}
		// Mallory, over TLS without a client certificate.
		mallory := oxNewUA(t, "mallory")
		c := mallory.dial(t, px, "tls", px.pki.clientTLS(t, ""))
		inv := rvRequest(c, "tls", "INVITE", mailbox, "<sip:alice@contoso.com>", "<"+mailbox+">",
			"Ms-Exchange-Command: skip-pin", "Proxy-Authorization: "+cred.String())
		res := rvSend(t, c, inv, 5*time.Second)
		for _, m := range rvAt(um.oxUA, "INVITE", inv.value("Call-ID"), time.Second) {
			if len(oxMustRaw(t, m.raw).get("Ms-Exchange-Command")) > 0 {
				t.Errorf("UM got skip-pin for alice's mailbox with transplanted credentials (final %d)", res.StatusCode)
			}
		}
	}
	t.Run("credentials for another Request-URI", func(t *testing.T) {
		alice := oxNewUA(t, "alice")
		c := alice.dial(t, px, "tls", px.pki.clientTLS(t, ""))
		ch := challenge(t, c, "tls", "sip:bob@contoso.com")
		attack(t, ch, "sip:bob@contoso.com") // uri= is bob, the request is alice's mailbox
	})
	t.Run("nonce issued over TCP, used over TLS", func(t *testing.T) {
		alice := oxNewUA(t, "alice")
		c := alice.dial(t, px, "tcp", nil)
		ch := challenge(t, c, "tcp", mailbox)
		attack(t, ch, mailbox)
	})
}

// ---------------------------------------------------------------------------
// F4. Open relay for anything that looks in-dialog. route.go accepts, with no
// identity at all: (a) any request with a To tag and a Route header that is
// not ours (loose-routed to it), and (b) any request with a To tag and a
// Route naming one of our addresses, even without a (MACed) flow token, to
// its Request-URI. needsIdentity exempts in-dialog requests, ACKs are not
// even rate limited. A stranger relays MESSAGE/INVITE/OPTIONS to any host,
// including UM over the proxy's own TLS.
func TestInDialogNoOpenRelay(t *testing.T) {
	far := oxListen(t, "far", "tcp")
	px := startProxy(t, proxyOpts{})
	far.serve(t, px)
	farURI := fmt.Sprintf("sip:victim@127.0.0.1:%d;transport=tcp", far.port)
	ourRoute := fmt.Sprintf("Route: <sip:%s;transport=tcp;lr>", px.Addr("tcp"))
	for _, tc := range []struct {
		name, method, ruri string
		route              string
	}{
		{"foreign Route", "MESSAGE", "sip:victim@fabrikam.example", fmt.Sprintf("Route: <sip:127.0.0.1:%d;transport=tcp;lr>", far.port)},
		{"our Route without flow token", "MESSAGE", farURI, ourRoute},
		{"INVITE, our Route", "INVITE", farURI, ourRoute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stranger := oxNewUA(t, "stranger")
			c := stranger.dial(t, px, "tcp", nil)
			m := rvRequest(c, "tcp", tc.method, tc.ruri, "<sip:spam@fabrikam.example>",
				"<sip:victim@fabrikam.example>;tag=forged", tc.route)
			res := rvSend(t, c, m, 5*time.Second)
			if got := rvAt(far.oxUA, tc.method, m.value("Call-ID"), time.Second); len(got) > 0 {
				t.Errorf("unauthenticated in-dialog %s relayed to an arbitrary host (final %v):\n%s", tc.method, res, got[0].raw)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// F5. A trusted peer (here recognised by source address only, the commonest
// gateway configuration) is exempt from REGISTER authentication
// (identify.go: the peer match returns before the challenge, and the
// "speak only as yourself" check only runs for user identities). Anyone in
// the peer's CIDR, or anyone spoofing its address over UDP, binds any
// user's AOR and receives their calls, including UM's Play-On-Phone calls.
func TestPeerCannotRegisterUsers(t *testing.T) {
	px := startProxy(t, proxyOpts{peers: "peers:\n  - {name: gw, sources: [\"127.0.0.1/32\"]}\n"})
	conn, err := net.Dial("udp", px.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	reg := "REGISTER sip:contoso.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-rv-reg1\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@contoso.com>;tag=rv1\r\n" +
		"To: <sip:alice@contoso.com>\r\n" +
		"Call-ID: rv-reg-hijack\r\n" +
		"CSeq: 1 REGISTER\r\n" +
		"Contact: <sip:mallory@203.0.113.66:5060>\r\n" +
		"Expires: 300\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := conn.Write([]byte(reg)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	n, _ := conn.Read(buf)
	if bs := px.Registrar().Lookup("alice@contoso.com"); len(bs) > 0 {
		t.Errorf("REGISTER without credentials from a peer's source bound alice to %s (response %q)",
			bs[0].Contact.String(), strings.SplitN(string(buf[:n]), "\r\n", 2)[0])
	}
}

// ---------------------------------------------------------------------------
// F6. Peer matching by certificate subject CN. A user's client certificate
// (issued, as docs/security.md shows, from the user's own CSR subject, by
// the same client_ca that vouches for peers) whose CN equals a peer's
// tls_name makes the user that peer: with trust_skip_pin the user skips the
// PIN of ANY mailbox. auth.CertificateNames adds the CN to the DNS SANs
// even when the certificate has SANs, and user certificates (with a sip:
// URI SAN) are not excluded.
func TestUserCertificateCNIsNotPeer(t *testing.T) {
	um := oxListen(t, "um", "tls")
	px := startProxy(t, proxyOpts{voicemail: um.uri(), peers: oxTrustedPeer})
	um.serve(t, px)
	cert, err := px.pki.ca.Issue(pki.IssueOptions{CommonName: "um-peer.contoso.com", URIs: []string{"sip:mallory@contoso.com"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{RootCAs: px.pki.ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	mallory := oxNewUA(t, "mallory")
	c := mallory.dial(t, px, "tls", tc)
	mailbox := "sip:alice@contoso.com;opaque=app:voicemail"
	inv := rvRequest(c, "tls", "INVITE", mailbox, "<sip:alice@contoso.com>", "<"+mailbox+">", "Ms-Exchange-Command: skip-pin")
	rvSend(t, c, inv, 5*time.Second)
	for _, m := range rvAt(um.oxUA, "INVITE", inv.value("Call-ID"), time.Second) {
		if len(oxMustRaw(t, m.raw).get("Ms-Exchange-Command")) > 0 {
			t.Errorf("mallory's user certificate (CN=um-peer.contoso.com) kept skip-pin for alice's mailbox")
		}
	}
}

// ---------------------------------------------------------------------------
// F7. skip-pin is kept for alice's own mailbox, but the identity headers UM
// may prefer over From are relayed from the user untouched: alice reaches
// UM without PIN while asserting to be bob (P-Asserted-Identity, RFC 3325
// says a proxy MUST strip it from untrusted senders), or with a Diversion /
// History-Info naming bob's mailbox (UM picks the mailbox from them when
// present: the proxy itself relies on that for forwarding to voicemail).
func TestForeignIdentityHeadersDroppedBeforeUM(t *testing.T) {
	um := oxListen(t, "um", "tls")
	px := startProxy(t, proxyOpts{voicemail: um.uri()})
	um.serve(t, px)
	mailbox := "sip:alice@contoso.com;opaque=app:voicemail"
	for _, extra := range []string{
		"P-Asserted-Identity: <sip:bob@contoso.com>",
		"Diversion: <sip:bob@contoso.com>;reason=no-answer;counter=1",
		"History-Info: <sip:bob@contoso.com>;index=1",
	} {
		name, _, _ := strings.Cut(extra, ":")
		t.Run(name, func(t *testing.T) {
			alice := oxNewUA(t, "alice")
			c := alice.dial(t, px, "tls", px.pki.clientTLS(t, "sip:alice@contoso.com"))
			inv := rvRequest(c, "tls", "INVITE", mailbox, "<sip:alice@contoso.com>", "<"+mailbox+">", "Ms-Exchange-Command: skip-pin", extra)
			rvSend(t, c, inv, 5*time.Second)
			for _, m := range rvAt(um.oxUA, "INVITE", inv.value("Call-ID"), time.Second) {
				raw := oxMustRaw(t, m.raw)
				if len(raw.get("Ms-Exchange-Command")) > 0 && len(raw.get(name)) > 0 {
					t.Errorf("UM got skip-pin together with the user-supplied %q", raw.get(name))
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------
// F8. A branch that got a provisional response and then ignores our CANCEL
// (no 200/487, connection kept open) never ends: sipgo's INVITE client
// transaction stops Timer B in Proceeding, call.go sends the CANCEL on Timer C
// but never gives the branch up (RFC 3261 9.1: 64*T1 after the CANCEL), so
// runStage never returns and the caller never gets a final response; the
// call goroutine, both transactions and the request stay forever (the drain
// in Shutdown waits on them too).
//
// T1 is shortened here so that 64*T1 is 1.3 s; the fix should bound the
// wait after CANCEL by 64*sip.T1 (read at run time) or by Timer C again.
func TestBranchIgnoringCancelGivenUp(t *testing.T) {
	sip.SetTimers(20*time.Millisecond, sip.T2, sip.T4)
	t.Cleanup(func() { sip.SetTimers(500*time.Millisecond, 4*time.Second, 5*time.Second); proxy.ConfigureSIPStack() })

	callee := oxListen(t, "callee", "tcp")
	callee.onInvite = func(tx *oxTx) {
		tx.respond(180, "Ringing", nil)
		<-tx.cancelled // answers the CANCEL 200 (oxUA does), but never 487
	}
	px := startProxy(t, proxyOpts{timerC: "1s",
		routes: fmt.Sprintf("  - {domain: fabrikam.com, next_hop: \"sip:127.0.0.1:%d;transport=tcp\"}", callee.port)})
	callee.serve(t, px)
	alice := oxNewUA(t, "alice")
	c := alice.dial(t, px, "tls", px.pki.clientTLS(t, "sip:alice@contoso.com"))
	inv := rvRequest(c, "tls", "INVITE", "sip:carl@fabrikam.com", "<sip:alice@contoso.com>", "<sip:carl@fabrikam.com>")
	res := rvSend(t, c, inv, 8*time.Second) // Timer C 1 s + 64*T1 1.3 s + slack
	if res == nil {
		t.Fatalf("no final response 8 s after the INVITE (Timer C 1 s, CANCEL sent, callee silent since)")
	}
}

// Credentials for our realm end at the proxy whichever way the sender was
// identified (RFC 3261 22.3); credentials for other realms travel on, in
// order, for the hops that asked for them.
func TestOwnRealmCredentialsConsumed(t *testing.T) {
	um := oxListen(t, "um", "tls")
	px := startProxy(t, proxyOpts{voicemail: um.uri()})
	um.serve(t, px)
	mailbox := "sip:alice@contoso.com;opaque=app:voicemail"
	ours := `Digest username="alice", realm="contoso.com", nonce="x", uri="` + mailbox + `", response="00", algorithm=MD5`
	theirs1 := `Digest username="alice", realm="um.example", nonce="y", uri="` + mailbox + `", response="11", algorithm=MD5`
	theirs2 := `Digest username="alice", realm="gw.example", nonce="z", uri="` + mailbox + `", response="22", algorithm=MD5`
	want := []string{"Proxy-Authorization: " + theirs1, "Proxy-Authorization: " + theirs2}

	t.Run("certificate identity", func(t *testing.T) {
		alice := oxNewUA(t, "alice")
		c := alice.dial(t, px, "tls", px.pki.clientTLS(t, "sip:alice@contoso.com"))
		inv := rvRequest(c, "tls", "INVITE", mailbox, "<sip:alice@contoso.com>", "<"+mailbox+">",
			"Proxy-Authorization: "+theirs1, "Proxy-Authorization: "+ours, "Proxy-Authorization: "+theirs2)
		res := rvSend(t, c, inv, 5*time.Second)
		got := rvAt(um.oxUA, "INVITE", inv.value("Call-ID"), 2*time.Second)
		if len(got) == 0 {
			t.Fatalf("not relayed to UM (final %v)", res)
		}
		if pa := oxMustRaw(t, got[0].raw).get("Proxy-Authorization"); !slices.Equal(pa, want) {
			t.Errorf("UM got Proxy-Authorization %q, want only the other realms' %q", pa, want)
		}
	})
	t.Run("digest identity", func(t *testing.T) {
		alice := oxNewUA(t, "alice")
		c := alice.dial(t, px, "tls", px.pki.clientTLS(t, ""))
		inv := rvRequest(c, "tls", "INVITE", mailbox, "<sip:alice@contoso.com>", "<"+mailbox+">",
			"Proxy-Authorization: "+theirs1, "Proxy-Authorization: "+theirs2)
		res, sent := c.doDigest(t, inv, "alice", "alice-pw")
		if res.StatusCode >= 300 {
			t.Fatalf("authenticated INVITE: %d %s", res.StatusCode, res.Reason)
		}
		got := rvAt(um.oxUA, "INVITE", sent.value("Call-ID"), 2*time.Second)
		if len(got) == 0 {
			t.Fatal("not relayed to UM")
		}
		if pa := oxMustRaw(t, got[0].raw).get("Proxy-Authorization"); !slices.Equal(pa, want) {
			t.Errorf("UM got Proxy-Authorization %q, want only the other realms' %q", pa, want)
		}
	})
}

// A Route naming our domain rather than an address (a client configured
// with the domain as its outbound proxy) is ours to remove (RFC 3261 16.4),
// not a next hop to resolve and relay to.
func TestRouteNamingOurDomainIsPopped(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	bob := oxRegisterRaw(t, px, "bob")
	for _, route := range []string{
		"Route: <sip:contoso.com;lr>",
		"Route: <sip:CONTOSO.com;transport=tls;lr>",
		"Route: <sip:contoso.com:" + px.Addr("tls")[strings.LastIndex(px.Addr("tls"), ":")+1:] + ";lr>",
	} {
		t.Run(route, func(t *testing.T) {
			alice := oxNewUA(t, "alice")
			c := alice.dial(t, px, "tls", px.pki.clientTLS(t, "sip:alice@contoso.com"))
			inv := rvRequest(c, "tls", "INVITE", "sip:bob@contoso.com", "<sip:alice@contoso.com>", "<sip:bob@contoso.com>", route)
			if err := c.write(inv.bytes()); err != nil {
				t.Fatal(err)
			}
			got := rvAt(bob, "INVITE", inv.value("Call-ID"), 3*time.Second)
			if len(got) == 0 {
				t.Fatalf("INVITE with %q did not reach bob", route)
			}
			if rts := oxMustRaw(t, got[0].raw).get("Route"); len(rts) > 0 {
				t.Errorf("bob got Route %q: the proxy should have consumed it", rts)
			}
		})
	}
}

// URI parameter names compare case-insensitively (RFC 3261 19.1.4): a
// mailbox spelled OPAQUE=APP:VOICEMAIL is routed to UM, and policed as a
// mailbox, like opaque=app:voicemail; it must not fall through to the
// user's own phones or forwarding rules.
func TestMailboxParameterCaseInsensitive(t *testing.T) {
	um := oxListen(t, "um", "tls")
	px := startProxy(t, proxyOpts{voicemail: um.uri()})
	um.serve(t, px)
	for _, tc := range []struct {
		name, ruri string
		keep       bool
	}{
		{"own mailbox, upper case", "sip:alice@contoso.com;OPAQUE=APP:VOICEMAIL", true},
		{"another mailbox, mixed case", "sip:bob@contoso.com;Opaque=App:VoiceMail", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice := oxNewUA(t, "alice")
			c := alice.dial(t, px, "tls", px.pki.clientTLS(t, "sip:alice@contoso.com"))
			inv := rvRequest(c, "tls", "INVITE", tc.ruri, "<sip:alice@contoso.com>", "<"+tc.ruri+">", "Ms-Exchange-Command: skip-pin")
			res := rvSend(t, c, inv, 5*time.Second)
			got := rvAt(um.oxUA, "INVITE", inv.value("Call-ID"), 2*time.Second)
			if len(got) == 0 {
				t.Fatalf("%s did not reach UM (final %v)", tc.ruri, res)
			}
			raw := oxMustRaw(t, got[0].raw)
			if !strings.HasPrefix(raw.start, "INVITE "+tc.ruri+" ") {
				t.Errorf("UM got Request-URI %q, want %q unchanged", raw.start, tc.ruri)
			}
			if kept := len(raw.get("Ms-Exchange-Command")) > 0; kept != tc.keep {
				t.Errorf("skip-pin kept=%v, want %v", kept, tc.keep)
			}
		})
	}
}

// A bare LF in the request line's version field: sipgo takes the whole rest
// of the line as the version and would write it back out as it came.
func TestBareLFInRequestLineRefused(t *testing.T) {
	um := oxListen(t, "um", "tls")
	px := startProxy(t, proxyOpts{voicemail: um.uri()})
	um.serve(t, px)
	mallory := oxNewUA(t, "mallory")
	c := mallory.dial(t, px, "tcp", nil)
	mailbox := "sip:alice@contoso.com;opaque=app:voicemail"
	inv := rvRequest(c, "tcp", "INVITE", mailbox, "<sip:mallory@fabrikam.com>", "<"+mailbox+">")
	inv.start += "\nMs-Exchange-Command:skip-pin" // no space: sipgo parses it
	res := rvSend(t, c, inv, 5*time.Second)
	if res == nil || res.StatusCode != 400 {
		t.Errorf("want 400 for a request line with a bare LF, got %v", res)
	}
	if got := rvAt(um.oxUA, "INVITE", inv.value("Call-ID"), time.Second); len(got) > 0 {
		t.Errorf("relayed to UM:\n%s", got[0].raw)
	}
	c = mallory.dial(t, px, "tcp", nil)

	// Another version, well formed: 505 Version Not Supported (RFC 3261 21.5.20).
	inv = rvRequest(c, "tcp", "OPTIONS", "sip:"+px.Addr("tcp"), "<sip:mallory@fabrikam.com>", "<sip:x@contoso.com>")
	inv.start = strings.Replace(inv.start, "SIP/2.0", "SIP/3.0", 1)
	if res := rvSend(t, c, inv, 5*time.Second); res == nil || res.StatusCode != 505 {
		t.Errorf("want 505 for SIP/3.0, got %v", res)
	}
}

// The Record-Route tokens of a caller's own call are no ticket to relay
// elsewhere: an unauthenticated caller (at 127.0.0.2) calls a mailbox,
// receives our Record-Route, and reuses it for in-dialog requests to a
// host of its choosing, once through the Request-URI (its own Contact,
// which it pointed at that host) and once through a further Route. Only
// requests to the other party of the dialog (UM's Contact) pass, and none
// after the BYE.
func TestReplayedRecordRouteNoRelay(t *testing.T) {
	lab := rvNewRelayLab(t)
	um, far, px, farURI := lab.um, lab.far, lab.px, lab.farURI
	c := rvDialFrom(t, oxNewUA(t, "mallory"), px, net.IPv4(127, 0, 0, 2))
	inv, dlg := lab.callMailbox(t, c, "<"+farURI+">")
	if len(dlg.routes) != 2 {
		t.Fatalf("Record-Route of the 200: %q", dlg.routes)
	}
	umContact := dlg.remote
	inDialog := dlg.request

	ack := inDialog("ACK", umContact, 1)
	if err := c.write(ack.bytes()); err != nil {
		t.Fatal(err)
	}
	if got := rvAt(um.oxUA, "ACK", inv.value("Call-ID"), 3*time.Second); len(got) == 0 {
		t.Fatal("the ACK to UM's Contact was not relayed: the dialog itself does not work")
	}
	for i, m := range []oxRaw{
		inDialog("MESSAGE", farURI, 2),
		inDialog("INVITE", farURI, 3),
		inDialog("MESSAGE", umContact, 4, fmt.Sprintf("Route: <sip:127.0.0.1:%d;transport=tcp;lr>", far.port)),
	} {
		res := rvSend(t, c, m, 5*time.Second)
		if res == nil || res.StatusCode < 400 {
			t.Errorf("attempt %d (%s): want a refusal, got %v", i, m.start, res)
		}
	}
	for _, method := range []string{"MESSAGE", "INVITE"} {
		if got := rvAt(far.oxUA, method, inv.value("Call-ID"), 500*time.Millisecond); len(got) > 0 {
			t.Errorf("relayed to a host outside the dialog:\n%s", got[0].raw)
		}
	}

	if res := rvSend(t, c, inDialog("BYE", umContact, 5), 5*time.Second); res == nil || res.StatusCode != 200 {
		t.Fatalf("BYE to UM: %v", res)
	}
	after := inDialog("MESSAGE", umContact, 6)
	if res := rvSend(t, c, after, 5*time.Second); res == nil || res.StatusCode != 481 {
		t.Errorf("after the BYE: want 481, got %v", res)
	}
	if got := rvAt(um.oxUA, "MESSAGE", inv.value("Call-ID"), 500*time.Millisecond); len(got) > 0 {
		t.Errorf("a request after the BYE reached UM:\n%s", got[0].raw)
	}
}

// A Route naming our UDP port number with transport=tls names whoever
// listens for TLS on that port (here UM, on the same host), not us: it
// must be followed, not popped (which would turn it into a call routed,
// and policed, as if it had never named a next hop).
func TestRouteOnOurPortOtherTransportIsNotOurs(t *testing.T) {
	um := oxListen(t, "um", "tls")
	px := startProxy(t, proxyOpts{voicemail: um.uri(), udpPort: um.port})
	um.serve(t, px)
	alice := oxCaller{user: "alice", transport: "tls", certURI: "sip:alice@contoso.com"}.phone(t, px)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	route := fmt.Sprintf("<sip:127.0.0.1:%d;transport=tls;lr>", um.port)
	before := oxSkipPinCounts(px)
	sess, err := alice.callAs(ctx, uri("alice"), oxMailbox("alice", "contoso.com", 0),
		sip.NewHeader("Route", route), sip.NewHeader("Ms-Exchange-Command", "skip-pin"))
	if err != nil {
		t.Fatalf("call: %v (%d)", err, statusOf(err))
	}
	_ = sess.Ack(ctx)
	got := oxMustRaw(t, um.wait(t, "INVITE", 1).raw)
	if r := got.get("Route"); !slices.Equal(r, []string{"Route: " + route}) {
		t.Errorf("UM got Route %q, want its own entry %q", r, route)
	}
	oxAssertSkipPin(t, px, before, "stripped/not_voicemail")
}

// A response with a bare LF in its reason phrase or in a header is not
// relayed as it is: the caller (UM itself, for Play-On-Phone) gets 502.
func TestMalformedResponseNotRelayed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reason string
		header sip.Header
	}{
		{"LF in the reason phrase", "Busy Here\nP-Asserted-Identity:<sip:bob@contoso.com>", nil},
		{"LF in a header value", "Busy Here", sip.NewHeader("X-Note", "a\nP-Asserted-Identity:<sip:bob@contoso.com>")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			um := oxListen(t, "um", "tls")
			um.onInvite = func(tx *oxTx) {
				res := sip.NewResponseFromRequest(tx.req, 486, tc.reason, nil)
				res.To().Params.Add("tag", tx.tag)
				if tc.header != nil {
					res.AppendHeader(tc.header)
				}
				_ = tx.c.write([]byte(res.String()))
			}
			px := startProxy(t, proxyOpts{voicemail: um.uri()})
			um.serve(t, px)
			alice := oxNewUA(t, "alice")
			c := alice.dial(t, px, "tls", px.pki.clientTLS(t, "sip:alice@contoso.com"))
			mailbox := "sip:alice@contoso.com;opaque=app:voicemail"
			inv := rvRequest(c, "tls", "INVITE", mailbox, "<sip:alice@contoso.com>", "<"+mailbox+">")
			res := rvSend(t, c, inv, 5*time.Second)
			if res == nil || res.StatusCode != 502 {
				t.Fatalf("want 502 for a malformed 486, got %v", res)
			}
			if strings.Contains(res.String(), "P-Asserted-Identity") {
				t.Errorf("the smuggled line reached the caller:\n%s", res)
			}
		})
	}
}
