package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// TestEmbeddedDefaultMD5OnlyClient: sipp answers only the first digest
// challenge of a 401, and only with MD5; baresip gives up on a 401 that
// carries a challenge for another algorithm or a second one. A client like
// that registers against the embedded default as it is, over UDP and TCP.
// (The default offered SHA-256 first, and sipp could not register.)
func TestEmbeddedDefaultMD5OnlyClient(t *testing.T) {
	p := startEmbedded(t, t.TempDir())
	for _, tc := range []struct{ transport, addr, user string }{
		{"UDP", p.udp, "alice"},
		{"TCP", p.tcp, "bob"},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			client := newSIPClient(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "contoso.com"})
			aor := sip.Uri{Scheme: "sip", User: tc.user, Host: "contoso.com"}
			from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
			from.Params.Add("tag", sip.GenerateTagN(8))
			req.AppendHeader(from)
			req.AppendHeader(&sip.ToHeader{Address: aor})
			req.AppendHeader(sip.NewHeader("Contact", "<sip:"+tc.user+"@127.0.0.1:1;transport="+strings.ToLower(tc.transport)+">"))
			req.AppendHeader(sip.NewHeader("Expires", "60"))
			req.SetTransport(tc.transport)
			req.SetDestination(tc.addr)
			res, err := client.Do(ctx, req)
			if err != nil || res.StatusCode != sip.StatusUnauthorized {
				t.Fatalf("REGISTER: %v %v, want a 401 challenge", res, err)
			}
			challenges := res.GetHeaders("WWW-Authenticate")
			if len(challenges) != 1 {
				t.Errorf("%d challenges; baresip gives up on a second one for the realm", len(challenges))
			}
			chal, err := digest.ParseChallenge(challenges[0].Value())
			if err != nil {
				t.Fatal(err)
			}
			if a := strings.ToUpper(chal.Algorithm); a != "" && a != "MD5" {
				t.Fatalf("the first challenge is %s: a client that answers only the first, with MD5, cannot register", chal.Algorithm)
			}
			req.CSeq().SeqNo++
			req.RemoveHeader("Via")
			req.AppendHeader(sip.NewHeader("Authorization", md5Answer(chal, tc.user, tc.user+"-secret", "REGISTER", req.Recipient.String())))
			res, err = client.Do(ctx, req)
			if err != nil || res.StatusCode != sip.StatusOK {
				t.Fatalf("REGISTER with the MD5 answer: %v %v, want 200", res, err)
			}
		})
	}
}

// md5Answer is the Authorization value sipp computes for a challenge
// (RFC 2617 MD5, qop=auth when offered).
func md5Answer(chal *digest.Challenge, user, password, method, uri string) string {
	h := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	ha1 := h(user + ":" + chal.Realm + ":" + password)
	ha2 := h(method + ":" + uri)
	v := fmt.Sprintf(`Digest username=%q, realm=%q, nonce=%q, uri=%q, algorithm=MD5`, user, chal.Realm, chal.Nonce, uri)
	if chal.SupportsQOP("auth") {
		const nc, cnonce = "00000001", "0a4f113b"
		v += fmt.Sprintf(`, response=%q, qop=auth, nc=%s, cnonce=%q`, h(ha1+":"+chal.Nonce+":"+nc+":"+cnonce+":auth:"+ha2), nc, cnonce)
	} else {
		v += fmt.Sprintf(`, response=%q`, h(ha1+":"+chal.Nonce+":"+ha2))
	}
	if chal.Opaque != "" {
		v += fmt.Sprintf(`, opaque=%q`, chal.Opaque)
	}
	return v
}

// TestDemoShortcutsWarnOnlyInFiles: the embedded default starts without a
// warning (it printed five, which a newcomer reads as breakage) and states
// its shortcuts once in its banner; the same configuration given as a file
// with -config still gets a warning for each.
func TestDemoShortcutsWarnOnlyInFiles(t *testing.T) {
	p := startEmbedded(t, t.TempDir())
	p.waitFor(t, p.stderr, "sipproxy started")
	if strings.Contains(p.stderr.String(), "level=WARN") {
		t.Errorf("the embedded default warns:\n%s", p.stderr.String())
	}
	for _, w := range []string{"shortcuts", "plain passwords", "insecure_skip_verify", "offers MD5", "SHA-256, then MD5 (RFC 8760)", "-config"} {
		if !strings.Contains(p.banner, w) {
			t.Errorf("the banner does not state %q:\n%s", w, p.banner)
		}
	}

	// The embedded default's own YAML, as a file on free ports.
	data, err := os.ReadFile(filepath.Join(repoRoot, "internal", "config", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	yaml := regexp.MustCompile(`127\.0\.0\.1:(5060|5061|9090)"`).ReplaceAllString(string(data), `127.0.0.1:0"`)
	file := filepath.Join(t.TempDir(), "demo.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	f := startProcess(t, t.TempDir(), "run", "-config", file)
	logs := f.waitFor(t, f.stderr, "sipproxy started")
	var warned []string
	for l := range strings.Lines(logs) {
		if strings.Contains(l, "level=WARN") {
			warned = append(warned, l)
		}
	}
	want := []string{"insecure_skip_verify", `user \"alice\" has a plain password`, `user \"bob\"`, `user \"carol\"`, `user \"dave\"`}
	if len(warned) != len(want) {
		t.Errorf("%d warnings for the file, want %d:\n%s", len(warned), len(want), logs)
	}
	for i, w := range want {
		if i < len(warned) && (!strings.Contains(warned[i], w) || !strings.Contains(warned[i], file+":")) {
			t.Errorf("warning %d %q lacks %q or %s:line", i, warned[i], w, file)
		}
	}
	if f.stdout.String() != "" {
		t.Errorf("a configuration file got the demo banner:\n%s", f.stdout.String())
	}
}

// TestEmbeddedDefaultRulesFile is README tour step 5 on the embedded
// default: its banner names a rules file, in the per-user state directory,
// holding the demo rules; an edit saved while it runs changes where calls
// go; and a later start keeps the edited file.
func TestEmbeddedDefaultRulesFile(t *testing.T) {
	state := t.TempDir()
	p := startEmbedded(t, state)
	want := filepath.Join(state, "sipproxy", "rules.yaml")
	if p.rulesFile != want || !strings.Contains(p.banner, "written now") {
		t.Fatalf("the banner names rules file %q, want %q written now:\n%s", p.rulesFile, want, p.banner)
	}
	data, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "immediate: sip:alice@contoso.com") || !strings.Contains(string(data), "reloads") {
		t.Errorf("the rules file lacks the demo rules or what editing it does:\n%s", data)
	}

	// alice's phone is busy; carol calls bob, who has no phone and no rule.
	alice := newPhone(t, "alice", p.tcp)
	if code := call(t, "carol", "bob", p.tcp); code != sip.StatusTemporarilyUnavailable {
		t.Fatalf("carol -> bob: %d, want 480 (bob is not registered)", code)
	}

	// From now on bob's calls go to alice.
	edited := string(data) + "  - user: sip:bob@contoso.com\n    immediate: sip:alice@contoso.com\n"
	if err := os.WriteFile(want, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.scrape("sipproxy_rules_loaded") != "3" {
		if time.Now().After(deadline) {
			t.Fatalf("the edit was not reloaded\nstderr:\n%s", p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := call(t, "carol", "bob", p.tcp); code != sip.StatusBusyHere {
		t.Errorf("carol -> bob after the edit: %d, want alice's 486", code)
	}
	if got := alice.invites(); len(got) != 1 || got[0] != "sip:alice" {
		t.Errorf("alice's phone received %q, want one INVITE forwarded from bob", got)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}

	// A second start keeps the operator's edit.
	again := startEmbedded(t, state)
	if again.rulesFile != want || !strings.Contains(again.banner, "kept") {
		t.Errorf("second start: rules file %q, want %q kept:\n%s", again.rulesFile, want, again.banner)
	}
	if now, _ := os.ReadFile(want); string(now) != edited {
		t.Errorf("the second start rewrote the edited rules file:\n%s", now)
	}
	if got := again.scrape("sipproxy_rules_loaded"); got != "3" {
		t.Errorf("second start loaded %s rules, want the edited 3", got)
	}
}

// TestDemoRulesFile covers where the embedded default's rules file goes
// and that an existing one, perhaps edited, is never overwritten.
func TestDemoRulesFile(t *testing.T) {
	state, cache := t.TempDir(), t.TempDir()
	for _, tc := range []struct {
		name, xdgState, want string
	}{
		{"XDG_STATE_HOME", state, filepath.Join(state, "sipproxy", "rules.yaml")},
		{"relative XDG_STATE_HOME is ignored", "state", filepath.Join(cache, "sipproxy", "rules.yaml")},
		{"user cache directory", "", filepath.Join(cache, "sipproxy", "rules.yaml")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("XDG_STATE_HOME", tc.xdgState)
			t.Setenv("XDG_CACHE_HOME", cache)
			os.RemoveAll(filepath.Dir(tc.want))
			for i, wantWritten := range []bool{true, false} {
				cfg := defaultConfig(t)
				got, err := useDemoRulesFile(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if got.path != tc.want || got.written != wantWritten || cfg.Forwarding.RulesFile != tc.want {
					t.Errorf("start %d: %+v (rules_file %q), want %s written=%v", i+1, got, cfg.Forwarding.RulesFile, tc.want, wantWritten)
				}
				if i == 0 {
					if err := os.WriteFile(tc.want, []byte("rules: []\n"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			if data, _ := os.ReadFile(tc.want); string(data) != "rules: []\n" {
				t.Errorf("an edited rules file was overwritten:\n%s", data)
			}
		})
	}
}

// --- SIP user agents for the tests above ---

func newSIPClient(t *testing.T) *sipgo.Client {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("contoso.com"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// phone is a registered user's phone, listening on TCP, busy on every call.
type phone struct {
	mu       sync.Mutex
	received []string // Request-URIs of the INVITEs, without parameters
}

func (ph *phone) invites() []string {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	return append([]string(nil), ph.received...)
}

// newPhone registers user's phone with the proxy at proxyTCP.
func newPhone(t *testing.T, user, proxyTCP string) *phone {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("contoso.com"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	ph := &phone{}
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		ph.mu.Lock()
		ph.received = append(ph.received, "sip:"+req.Recipient.User)
		ph.mu.Unlock()
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBusyHere, "Busy Here", nil))
	})
	srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go srv.ServeTCP(ln)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	aor := sip.Uri{Scheme: "sip", User: user, Host: "contoso.com"}
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "contoso.com"})
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor})
	req.AppendHeader(sip.NewHeader("Contact", fmt.Sprintf("<sip:%s@%s;transport=tcp>", user, ln.Addr())))
	req.AppendHeader(sip.NewHeader("Expires", "300"))
	req.SetTransport("TCP")
	req.SetDestination(proxyTCP)
	res, err := client.Do(ctx, req)
	if err == nil && res.StatusCode == sip.StatusUnauthorized {
		res, err = client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: user + "-secret"})
	}
	if err != nil || res.StatusCode != sip.StatusOK {
		t.Fatalf("register %s: %v %v", user, res, err)
	}
	return ph
}

// call places an INVITE from one demo user to another over TCP, answering
// the proxy's challenge with the caller's demo password, and returns the
// final status.
func call(t *testing.T, from, to, proxyTCP string) int {
	t.Helper()
	client := newSIPClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	target := sip.Uri{Scheme: "sip", User: to, Host: "contoso.com"}
	req := sip.NewRequest(sip.INVITE, target)
	fh := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: from, Host: "contoso.com"}, Params: sip.NewParams()}
	fh.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(fh)
	req.AppendHeader(&sip.ToHeader{Address: target})
	req.SetTransport("TCP")
	req.SetDestination(proxyTCP)
	dlg := &sipgo.DialogUA{Client: client, ContactHDR: sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: from, Host: "127.0.0.1", Port: 1}}}
	sess, err := dlg.WriteInvite(ctx, req)
	if err != nil {
		t.Fatalf("INVITE %s: %v", to, err)
	}
	defer sess.Close()
	err = sess.WaitAnswer(ctx, sipgo.AnswerOptions{Username: from, Password: from + "-secret"})
	var de *sipgo.ErrDialogResponse
	switch {
	case err == nil:
		sess.Ack(ctx)
		sess.Bye(ctx)
		return sess.InviteResponse.StatusCode
	case errors.As(err, &de):
		return de.Res.StatusCode
	default:
		t.Fatalf("INVITE %s: %v", to, err)
		return 0
	}
}
