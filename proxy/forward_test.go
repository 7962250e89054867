package proxy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const noDiversion = "private-no-diversion"

// forwardCase is one forwarding scenario: carol's rule, how carol's phone
// behaves (nil: not registered), and what the caller and dave (the
// forward target) see, with and without Ms-Sensitivity: private-no-diversion.
type forwardCase struct {
	name      string
	rule      string
	carol     func(p *phone, req *sip.Request, tx sip.ServerTransaction) // nil: carol has no binding
	kind      string
	cause     string // History-Info cause
	reason    string // Diversion reason
	noDivCode int    // what the caller gets with no-diversion
}

var forwardCases = []forwardCase{
	{
		name: "immediate", rule: `immediate: sip:dave@contoso.com`,
		carol: answer, kind: "immediate", cause: "cause=302", reason: "reason=unconditional", noDivCode: 200,
	},
	{
		name: "no answer", rule: `unanswered: {target: "sip:dave@contoso.com", after: 1s}`,
		carol: answerAfter(2 * time.Second), kind: "unanswered", cause: "cause=408", reason: "reason=no-answer", noDivCode: 200,
	},
	{
		name: "busy", rule: `busy: sip:dave@contoso.com`,
		carol: busy, kind: "busy", cause: "cause=486", reason: "reason=user-busy", noDivCode: 486,
	},
	{
		name: "unanswered without bindings", rule: `unanswered: {target: "sip:dave@contoso.com", after: 5s}`,
		carol: nil, kind: "unanswered", cause: "cause=480", reason: "reason=unavailable", noDivCode: 480,
	},
}

// TestForwarding runs every forwarding kind end to end over real sockets,
// and again with Ms-Sensitivity: private-no-diversion, where dave must
// never ring and the caller gets carol's real answer.
func TestForwarding(t *testing.T) {
	for _, tc := range forwardCases {
		for _, nodiv := range []bool{false, true} {
			name := tc.name
			if nodiv {
				name += "/no-diversion"
			}
			t.Run(name, func(t *testing.T) {
				px := startProxy(t, proxyOpts{rulesYAML: "rules:\n  - user: sip:carol@contoso.com\n    " + tc.rule + "\n"})
				var carol *phone
				if tc.carol != nil {
					carol = newPhone(t, px, "carol", "tcp", phoneOpts{listen: true})
					carol.setOnInvite(tc.carol)
					carol.mustRegister(t)
				}
				dave := newPhone(t, px, "dave", "tcp", phoneOpts{listen: true})
				dave.mustRegister(t)
				alice := newPhone(t, px, "alice", "tls", phoneOpts{listen: true})

				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				var hdrs []sip.Header
				if nodiv {
					hdrs = append(hdrs, sip.NewHeader("Ms-Sensitivity", noDiversion))
				}
				sess, err := alice.call(ctx, uri("carol"), hdrs...)

				applied := testutil.ToFloat64(px.m.Forwarding.WithLabelValues(tc.kind, "applied"))
				suppressed := testutil.ToFloat64(px.m.Forwarding.WithLabelValues(tc.kind, "suppressed"))
				if !nodiv {
					if err != nil {
						t.Fatalf("call: %v (%d)", err, statusOf(err))
					}
					inv := lastRequest(t, dave)
					hi := strings.Join(values(inv, "History-Info"), ", ")
					if !strings.Contains(hi, "<sip:carol@contoso.com>;index=1") || !strings.Contains(hi, "sip:dave@contoso.com;"+tc.cause+">;index=1.1") {
						t.Errorf("History-Info at dave: %q", hi)
					}
					div := strings.Join(values(inv, "Diversion"), ", ")
					if !strings.Contains(div, "<sip:carol@contoso.com>;"+tc.reason) {
						t.Errorf("Diversion at dave: %q", div)
					}
					if applied != 1 || suppressed != 0 {
						t.Errorf("forwarding_total{%s}: applied %v suppressed %v", tc.kind, applied, suppressed)
					}
					if tc.name == "no answer" {
						select {
						case <-carol.cancels:
						case <-time.After(3 * time.Second):
							t.Error("carol's phone was not cancelled when the call moved on")
						}
					}
					if tc.name == "immediate" && len(carol.requests) > 0 {
						t.Error("carol rang although her calls forward immediately")
					}
					sess.Ack(ctx)
					sess.Bye(ctx)
					return
				}
				// No diversion: dave never rings, the caller gets carol's answer.
				code := 200
				if err != nil {
					code = statusOf(err)
				} else {
					sess.Ack(ctx)
					sess.Bye(ctx)
				}
				if code != tc.noDivCode {
					t.Fatalf("caller got %d, want carol's real answer %d (%v)", code, tc.noDivCode, err)
				}
				if n := len(dave.requests); n != 0 {
					t.Fatalf("dave rang %d times despite private-no-diversion", n)
				}
				if applied != 0 || suppressed != 1 {
					t.Errorf("forwarding_total{%s}: applied %v suppressed %v", tc.kind, applied, suppressed)
				}
				if carol != nil {
					got := lastRequest(t, carol)
					if v := got.GetHeader("Ms-Sensitivity"); v == nil || v.Value() != noDiversion {
						t.Errorf("Ms-Sensitivity not forwarded unchanged: %v", v)
					}
				}
			})
		}
	}
}

// TestForwardingChainAndVoicemailHeaders: carol -> dave immediately, dave
// busy -> bob: bob sees both diversions.
func TestForwardingChain(t *testing.T) {
	px := startProxy(t, proxyOpts{rulesYAML: `rules:
  - user: sip:carol@contoso.com
    immediate: sip:dave@contoso.com
  - user: sip:dave@contoso.com
    busy: sip:bob@contoso.com
`})
	dave := newPhone(t, px, "dave", "tcp", phoneOpts{listen: true})
	dave.setOnInvite(busy)
	dave.mustRegister(t)
	bob := newPhone(t, px, "bob", "udp", phoneOpts{listen: true})
	bob.mustRegister(t)
	alice := newPhone(t, px, "alice", "tcp", phoneOpts{listen: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := alice.call(ctx, uri("carol"))
	if err != nil {
		t.Fatalf("call: %v (%d)", err, statusOf(err))
	}
	inv := lastRequest(t, bob)
	hi := values(inv, "History-Info")
	want := []string{
		"<sip:carol@contoso.com>;index=1",
		"<sip:dave@contoso.com;cause=302>;index=1.1;mp=1",
		"<sip:bob@contoso.com;cause=486>;index=1.1.1;mp=1.1",
	}
	if strings.Join(hi, "|") != strings.Join(want, "|") {
		t.Errorf("History-Info:\n got %q\nwant %q", hi, want)
	}
	div := values(inv, "Diversion")
	wantDiv := []string{"<sip:dave@contoso.com>;reason=user-busy;counter=1", "<sip:carol@contoso.com>;reason=unconditional;counter=1"}
	if strings.Join(div, "|") != strings.Join(wantDiv, "|") {
		t.Errorf("Diversion:\n got %q\nwant %q", div, wantDiv)
	}
	sess.Ack(ctx)
	sess.Bye(ctx)
}

// TestHotReloadWhileRinging: the rules file is replaced (write a temp file,
// rename over) while a call rings; that call keeps the plan it started with,
// the next call follows the new rules.
func TestHotReloadWhileRinging(t *testing.T) {
	px := startProxy(t, proxyOpts{rulesYAML: "rules:\n  - user: sip:carol@contoso.com\n    unanswered: {target: \"sip:dave@contoso.com\", after: 1s}\n"})
	carol := newPhone(t, px, "carol", "tcp", phoneOpts{listen: true})
	carol.setOnInvite(ringForever)
	carol.mustRegister(t)
	dave := newPhone(t, px, "dave", "tcp", phoneOpts{listen: true})
	dave.mustRegister(t)
	bob := newPhone(t, px, "bob", "tcp", phoneOpts{listen: true})
	bob.mustRegister(t)
	alice := newPhone(t, px, "alice", "tcp", phoneOpts{listen: true})

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	go func() {
		<-carol.requests // ringing: now edit the rules
		renameWrite(t, px.rulesPath, "rules:\n  - user: sip:carol@contoso.com\n    unanswered: {target: \"sip:bob@contoso.com\", after: 1s}\n")
	}()
	sess, err := alice.call(ctx, uri("carol"))
	if err != nil {
		t.Fatalf("first call: %v (%d)", err, statusOf(err))
	}
	sess.Ack(ctx)
	sess.Bye(ctx)
	if len(dave.requests) != 1 || len(bob.requests) != 0 {
		t.Fatalf("the ringing call did not keep its plan: dave %d, bob %d", len(dave.requests), len(bob.requests))
	}
	waitFor(t, "new rules", func() bool {
		r, ok := px.rules.Snapshot().Lookup("carol@contoso.com")
		return ok && r.Unanswered != nil && r.Unanswered.Target.AOR == "bob@contoso.com"
	})
	sess, err = alice.call(ctx, uri("carol"))
	if err != nil {
		t.Fatalf("second call: %v (%d)", err, statusOf(err))
	}
	sess.Ack(ctx)
	sess.Bye(ctx)
	if len(bob.requests) != 1 {
		t.Fatalf("the call after the reload did not follow the new rules: bob rang %d times", len(bob.requests))
	}
}

// TestBrokenRulesKeepServing: a broken rules file during traffic is
// rejected whole; calls go on with the old rules and the error is counted.
func TestBrokenRulesKeepServing(t *testing.T) {
	px := startProxy(t, proxyOpts{rulesYAML: "rules:\n  - user: sip:carol@contoso.com\n    immediate: sip:dave@contoso.com\n"})
	dave := newPhone(t, px, "dave", "tcp", phoneOpts{listen: true})
	dave.mustRegister(t)
	alice := newPhone(t, px, "alice", "tcp", phoneOpts{listen: true})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	before := testutil.ToFloat64(px.m.RulesReloads.WithLabelValues("error"))
	renameWrite(t, px.rulesPath, "rules:\n  - user: sip:carol@contoso.com\n    immediate: sip:dave@contoso.com\n    sometimes: maybe\n  - user: not a uri\n")
	waitFor(t, "the reload error", func() bool {
		return testutil.ToFloat64(px.m.RulesReloads.WithLabelValues("error")) > before
	})
	if err := px.reloader.Reload(); err == nil || !strings.Contains(err.Error(), "rules.yaml:4") {
		t.Fatalf("reload of the broken file: %v", err)
	}
	for i := range 3 {
		sess, err := alice.call(ctx, uri("carol"))
		if err != nil {
			t.Fatalf("call %d after the broken reload: %v (%d)", i, err, statusOf(err))
		}
		sess.Ack(ctx)
		sess.Bye(ctx)
	}
	if n := len(dave.requests); n != 3 {
		t.Fatalf("old rules not serving: dave rang %d of 3 times", n)
	}
	if got := testutil.ToFloat64(px.m.RulesLoaded); got != 1 {
		t.Fatalf("rules_loaded = %v", got)
	}
}

func renameWrite(t testing.TB, path, content string) {
	tmp := filepath.Join(filepath.Dir(path), ".rules.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Error(err)
	}
}

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lastRequest(t testing.TB, p *phone) *sip.Request {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.received) == 0 {
		t.Fatalf("%s received nothing", p.user)
	}
	return p.received[len(p.received)-1]
}

func values(req *sip.Request, name string) []string {
	var out []string
	for _, h := range req.GetHeaders(name) {
		out = append(out, h.Value())
	}
	return out
}

// TestForwardingAnySpelling (issue 12, item 4): a call to one of our users
// addressed by the proxy's address (the README's sipp call, INVITE
// sip:dave@127.0.0.1:5060) reaches the same forwarding rules as the domain
// spelling.
func TestForwardingAnySpelling(t *testing.T) {
	px := startProxy(t, proxyOpts{rulesYAML: "rules:\n  - user: sip:carol@contoso.com\n    immediate: sip:dave@contoso.com\n"})
	dave := newPhone(t, px, "dave", "tcp", phoneOpts{listen: true})
	dave.mustRegister(t)
	alice := newPhone(t, px, "alice", "tcp", phoneOpts{listen: true})
	host, port, _ := sip.ParseAddr(px.Addr("tcp"))
	for _, target := range []sip.Uri{
		{Scheme: "sip", User: "carol", Host: host, Port: port},
		{Scheme: "sip", User: "carol", Host: host, Port: port, UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}},
		{Scheme: "sip", User: "carol", Host: "CONTOSO.com"},
	} {
		t.Run(target.String(), func(t *testing.T) {
			before := testutil.ToFloat64(px.m.Forwarding.WithLabelValues("immediate", "applied"))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			sess, err := alice.call(ctx, target)
			if err != nil {
				t.Fatalf("call to %s: %v (%d): the forwarding rule did not apply", target.String(), err, statusOf(err))
			}
			_ = sess.Ack(ctx)
			_ = sess.Bye(ctx)
			if got := testutil.ToFloat64(px.m.Forwarding.WithLabelValues("immediate", "applied")) - before; got != 1 {
				t.Errorf("forwarding_total{immediate,applied} went up by %v, want 1", got)
			}
		})
	}
}
