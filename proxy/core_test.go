package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// TestDigestAlgorithms registers with MD5 and with SHA-256 answers to the
// proxy's RFC 8760 challenge (SHA-256 offered first, MD5 second).
func TestDigestAlgorithms(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	for _, alg := range []string{"SHA-256", "MD5"} {
		t.Run(alg, func(t *testing.T) {
			bob := newPhone(t, px, "bob", "tcp", phoneOpts{listen: true})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req := bob.registerRequest(300)
			res, err := bob.client.Do(ctx, req)
			if err != nil || res.StatusCode != 401 {
				t.Fatalf("want 401 challenge, got %v %v", res, err)
			}
			chals := res.GetHeaders("WWW-Authenticate")
			if len(chals) != 2 || !strings.Contains(chals[0].Value(), "algorithm=SHA-256") || !strings.Contains(chals[1].Value(), "algorithm=MD5") {
				t.Fatalf("challenges: %v", chals)
			}
			var picked *digest.Challenge
			for _, h := range chals {
				c, err := digest.ParseChallenge(h.Value())
				if err != nil {
					t.Fatal(err)
				}
				if c.Algorithm == alg {
					picked = c
				}
			}
			cred, err := digest.Digest(picked, digest.Options{Method: "REGISTER", URI: req.Recipient.Addr(), Username: "bob", Password: "bob-pw"})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(cred.String(), "algorithm="+alg) {
				t.Fatalf("client did not answer with %s: %s", alg, cred)
			}
			req2 := bob.registerRequest(300)
			req2.AppendHeader(sip.NewHeader("Authorization", cred.String()))
			res, err = bob.client.Do(ctx, req2)
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("%s answer: %v %v", alg, res, err)
			}
			// Wrong password with the same algorithm is refused.
			cred, _ = digest.Digest(picked, digest.Options{Method: "REGISTER", URI: req.Recipient.Addr(), Username: "bob", Password: "nope", Count: 2})
			req3 := bob.registerRequest(300)
			req3.AppendHeader(sip.NewHeader("Authorization", cred.String()))
			res, err = bob.client.Do(ctx, req3)
			if err != nil || res.StatusCode != 401 {
				t.Fatalf("wrong password: want 401, got %v %v", res, err)
			}
		})
	}
}

// TestWrongCredentialsDoNotRevealUsers: an unknown user and a known user
// with a wrong password get the same answer.
func TestWrongCredentialsDoNotRevealUsers(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	answer := func(user string) (int, int) {
		p := newPhone(t, px, user, "tcp", phoneOpts{listen: true})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := p.client.Do(ctx, p.registerRequest(300))
		if err != nil {
			t.Fatal(err)
		}
		c, _ := digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
		cred, _ := digest.Digest(c, digest.Options{Method: "REGISTER", URI: "sip:contoso.com", Username: user, Password: "guess"})
		req := p.registerRequest(300)
		req.AppendHeader(sip.NewHeader("Authorization", cred.String()))
		res, err = p.client.Do(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, len(res.GetHeaders("WWW-Authenticate"))
	}
	c1, h1 := answer("bob")
	c2, h2 := answer("mallory")
	if c1 != c2 || h1 != h2 || c1 != 401 {
		t.Fatalf("known user: %d (%d challenges), unknown user: %d (%d challenges)", c1, h1, c2, h2)
	}
}

// TestStaleNonce: an answer to an expired nonce gets a fresh challenge with
// stale=true, and the client's retry with it succeeds.
func TestStaleNonce(t *testing.T) {
	px := startProxy(t, proxyOpts{authExtra: "  nonce_ttl: 1s"})
	bob := newPhone(t, px, "bob", "tcp", phoneOpts{listen: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := bob.client.Do(ctx, bob.registerRequest(300))
	if err != nil || res.StatusCode != 401 {
		t.Fatalf("challenge: %v %v", res, err)
	}
	time.Sleep(1200 * time.Millisecond)
	c, _ := digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	cred, _ := digest.Digest(c, digest.Options{Method: "REGISTER", URI: "sip:contoso.com", Username: "bob", Password: "bob-pw"})
	req := bob.registerRequest(300)
	req.AppendHeader(sip.NewHeader("Authorization", cred.String()))
	res, err = bob.client.Do(ctx, req)
	if err != nil || res.StatusCode != 401 {
		t.Fatalf("stale answer: want 401, got %v %v", res, err)
	}
	if v := res.GetHeader("WWW-Authenticate").Value(); !strings.Contains(v, "stale=true") {
		t.Fatalf("no stale=true in %q", v)
	}
	c, _ = digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	cred, _ = digest.Digest(c, digest.Options{Method: "REGISTER", URI: "sip:contoso.com", Username: "bob", Password: "bob-pw"})
	req = bob.registerRequest(300)
	req.AppendHeader(sip.NewHeader("Authorization", cred.String()))
	res, err = bob.client.Do(ctx, req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("fresh answer: %v %v", res, err)
	}
}

// TestMutualTLSIdentity: a client certificate naming sip:alice@contoso.com
// is alice's identity: she registers and calls without any digest.
func TestMutualTLSIdentity(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	bob := newPhone(t, px, "bob", "tcp", phoneOpts{listen: true})
	bob.mustRegister(t)
	alice := newPhone(t, px, "alice", "tls", phoneOpts{listen: true, tls: px.pki.clientTLS(t, "sip:alice@contoso.com")})
	alice.password = "wrong-password-never-used"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := alice.client.Do(ctx, alice.registerRequest(300))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("register with certificate: %v %v", res, err)
	}
	sess, err := alice.call(ctx, uri("bob"))
	if err != nil {
		t.Fatalf("call with certificate: %v (%d)", err, statusOf(err))
	}
	sess.Ack(ctx)
	sess.Bye(ctx)

	// The same certificate does not make her bob.
	res, err = alice.client.Do(ctx, withFrom(alice.registerRequestFor("bob", 300), "bob"))
	if err != nil || res.StatusCode != 403 && res.StatusCode != 401 {
		t.Fatalf("registering bob with alice's certificate: %v %v", res, err)
	}
	if res.StatusCode == 200 {
		t.Fatal("alice's certificate registered bob")
	}
}

// TestCancelWhileRinging: the caller cancels; the proxy answers the CANCEL,
// the caller gets 487 and the callee gets the CANCEL.
func TestCancelWhileRinging(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	bob := newPhone(t, px, "bob", "tcp", phoneOpts{listen: true})
	bob.setOnInvite(ringForever)
	bob.mustRegister(t)
	alice := newPhone(t, px, "alice", "tcp", phoneOpts{listen: true})

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-bob.requests:
			time.Sleep(100 * time.Millisecond)
			cancel()
		case <-time.After(5 * time.Second):
			cancel()
		}
	}()
	// The INVITE names the proxy in a preloaded Route (RFC 3261 8.1.2), as
	// a phone with an outbound proxy does: sipgo builds the CANCEL from the
	// INVITE's Request-URI and Route set, not from where the INVITE went,
	// so without it a CANCEL sent before the 180's Record-Route was read
	// (sipgo reads responses on concurrent goroutines) went to DNS for
	// contoso.com and the test failed on a machine with a resolver.
	outbound := sip.NewHeader("Route", "<sip:"+alice.proxyAddr()+";transport=tcp;lr>")
	sess, err := alice.call(ctx, uri("bob"), outbound)
	if err == nil {
		t.Fatalf("call was answered: %v", sess.InviteResponse)
	}
	if sess == nil || sess.InviteResponse == nil || sess.InviteResponse.StatusCode != 487 {
		var got any
		if sess != nil {
			got = sess.InviteResponse
		}
		t.Fatalf("want 487 after CANCEL, got %v (%v)", got, err)
	}
	select {
	case <-bob.cancels:
	case <-time.After(5 * time.Second):
		t.Fatal("bob never received the CANCEL")
	}
}

// TestTooManyHops: Max-Forwards 0 gets 483 without going anywhere.
func TestTooManyHops(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	bob := newPhone(t, px, "bob", "tcp", phoneOpts{listen: true})
	bob.mustRegister(t)
	alice := newPhone(t, px, "alice", "udp", phoneOpts{listen: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mf := sip.MaxForwardsHeader(0)
	_, err := alice.call(ctx, uri("bob"), &mf)
	if got := statusOf(err); got != sip.StatusTooManyHops {
		t.Fatalf("want 483, got %d (%v)", got, err)
	}
	select {
	case <-bob.requests:
		t.Fatal("bob was rung despite Max-Forwards 0")
	default:
	}
}

// TestLoopDetected: a route that sends a domain back to the proxy itself
// makes the request come back unchanged: 482.
func TestLoopDetected(t *testing.T) {
	port := freePort(t, "udp")
	px := startProxy(t, proxyOpts{
		udpPort: port,
		routes:  fmt.Sprintf("  - {domain: fabrikam.com, next_hop: \"sip:127.0.0.1:%d;transport=udp\"}", port),
	})
	alice := newPhone(t, px, "alice", "tcp", phoneOpts{listen: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := alice.call(ctx, sip.Uri{Scheme: "sip", User: "ext", Host: "fabrikam.com"})
	if got := statusOf(err); got != sip.StatusLoopDetected {
		t.Fatalf("want 482, got %d (%v)", got, err)
	}
}

// TestOptionsToProxy: OPTIONS addressed to the proxy is answered 200.
func TestOptionsToProxy(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	p := newPhone(t, px, "alice", "udp", phoneOpts{listen: true})
	host, port, _ := sip.ParseAddr(px.Addr("udp"))
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: host, Port: port})
	p.route(req)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := p.client.Do(ctx, req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("OPTIONS: %v %v", res, err)
	}
	if res.GetHeader("Allow") == nil {
		t.Fatal("no Allow header")
	}
}

// TestForkFirstAnswerWins: bob has two bindings; the first to answer gets
// the call and the other is cancelled.
func TestForkFirstAnswerWins(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	desk := newPhone(t, px, "bob", "tcp", phoneOpts{listen: true})
	desk.setOnInvite(answerAfter(200 * time.Millisecond))
	desk.mustRegister(t)
	mobile := newPhone(t, px, "bob", "udp", phoneOpts{listen: true})
	mobile.setOnInvite(ringForever)
	mobile.mustRegister(t)
	if n := len(px.Registrar().Lookup("bob@contoso.com")); n != 2 {
		t.Fatalf("want 2 bindings, got %d", n)
	}
	alice := newPhone(t, px, "alice", "tcp", phoneOpts{listen: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := alice.call(ctx, uri("bob"))
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	if got := sess.InviteResponse.Contact(); got == nil || got.Address.Port != desk.dlg.ContactHDR.Address.Port {
		t.Fatalf("answered by %v, want the desk phone", got)
	}
	select {
	case c := <-mobile.cancels:
		if r := c.GetHeader("Reason"); r == nil || !strings.Contains(r.Value(), "cause=200") {
			t.Errorf("CANCEL without RFC 3326 Reason: %v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the mobile was never cancelled")
	}
	sess.Ack(ctx)
	sess.Bye(ctx)
}

// TestTLSCallerTCPCallee: alice on TLS (with no listener: her connection is
// the only way to reach her), bob on TCP; bob hangs up and the BYE finds
// its way back to alice over her TLS connection.
func TestTLSCallerTCPCallee(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	bob := newPhone(t, px, "bob", "tcp", phoneOpts{listen: true})
	bob.mustRegister(t)
	alice := newPhone(t, px, "alice", "tls", phoneOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := alice.call(ctx, uri("bob"))
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	rr := sess.InviteResponse.GetHeaders("Record-Route")
	if len(rr) != 2 || !strings.Contains(rr[0].Value(), "transport=tcp") || !strings.Contains(rr[1].Value(), "transport=tls") {
		t.Fatalf("want double Record-Route tcp then tls, got %v", rr)
	}
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	bs := bob.lastSession()
	if bs == nil {
		t.Fatal("bob has no dialog")
	}
	if err := bs.Bye(ctx); err != nil {
		t.Fatalf("bob's BYE: %v", err)
	}
	select {
	case bye := <-alice.byes:
		if bye.Transport() != "TLS" {
			t.Fatalf("BYE reached alice over %s", bye.Transport())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("alice never received bob's BYE")
	}
}

// TestCalleeWithoutListener: bob registered over TCP and listens nowhere;
// the INVITE and the caller's BYE reach him over his registration connection.
func TestCalleeWithoutListener(t *testing.T) {
	for _, tr := range []string{"tcp", "tls"} {
		t.Run(tr, func(t *testing.T) {
			px := startProxy(t, proxyOpts{})
			bob := newPhone(t, px, "bob", tr, phoneOpts{})
			bob.mustRegister(t)
			alice := newPhone(t, px, "alice", "udp", phoneOpts{listen: true})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			sess, err := alice.call(ctx, uri("bob"))
			if err != nil {
				t.Fatalf("call: %v (%d)", err, statusOf(err))
			}
			if err := sess.Ack(ctx); err != nil {
				t.Fatal(err)
			}
			if err := sess.Bye(ctx); err != nil {
				t.Fatalf("BYE: %v", err)
			}
			select {
			case <-bob.byes:
			case <-time.After(5 * time.Second):
				t.Fatal("bob never received the BYE")
			}
		})
	}
}

// TestTimerC: a callee that rings forever is cancelled when Timer C fires
// and the caller gets 408.
func TestTimerC(t *testing.T) {
	px := startProxy(t, proxyOpts{timerC: "1s"})
	bob := newPhone(t, px, "bob", "tcp", phoneOpts{listen: true})
	bob.setOnInvite(ringForever)
	bob.mustRegister(t)
	alice := newPhone(t, px, "alice", "tcp", phoneOpts{listen: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := alice.call(ctx, uri("bob"))
	if got := statusOf(err); got != sip.StatusRequestTimeout {
		t.Fatalf("want 408, got %d (%v)", got, err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Timer C took %v", el)
	}
	select {
	case <-bob.cancels:
	case <-time.After(5 * time.Second):
		t.Fatal("bob was not cancelled")
	}
}
