package main

import (
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `sipproxy demo -free-ports` as a user would, from the built
// binary, and checks what it prints for each MS-OCEXUM scenario.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := sipproxyBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "-free-ports")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("sipproxy demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the demo took %v; it should take a few seconds", d)
	}
	out := stdout.String()
	t.Logf("demo output:\n%s", out)
	if stderr.Len() != 0 {
		t.Errorf("the demo wrote to stderr without -v:\n%s", stderr.String())
	}

	section := func(title, next string) string {
		i := strings.Index(out, title)
		if i < 0 {
			t.Fatalf("no section %q in:\n%s", title, out)
		}
		s := out[i:]
		if j := strings.Index(s, next); next != "" && j >= 0 {
			s = s[:j]
		}
		return s
	}
	expect := func(sec, name string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(sec, w) {
				t.Errorf("%s lacks %q:\n%s", name, w, sec)
			}
		}
	}
	// The stand-in listens on a free port, not the default's 5066, and the
	// proxy routes voicemail to it.
	if regexp.MustCompile(`:(5060|5061|9090|5066)\b`).MatchString(section("sipproxy demo:", "1. ")) {
		t.Errorf("-free-ports still uses a default port:\n%s", out)
	}

	s1 := section("1. Subscriber access with skip-pin over TLS", "2. ")
	expect(s1, "scenario 1",
		"voicemail server received:",
		"INVITE sip:alice@contoso.com;opaque=app:voicemail  (proxy to UM over TLS)",
		"            Ms-Exchange-Command: skip-pin\n   caller got 200 OK",
		`counted: sipproxy_skip_pin_total{decision="kept",reason="own_mailbox"} +1`,
		"[ok]")

	s2 := section("2. The same over TCP", "3. ")
	expect(s2, "scenario 2",
		"(TCP, digest as alice)",
		"Ms-Exchange-Command: (none: the proxy stripped it)",
		`counted: sipproxy_skip_pin_total{decision="stripped",reason="not_tls"} +1`,
		"[ok]")
	if strings.Count(s2, "Ms-Exchange-Command: skip-pin") != 1 { // only what alice sent
		t.Errorf("scenario 2: UM received the header:\n%s", s2)
	}

	s3 := section("3. Play-On-Phone call to carol", "For contrast")
	expect(s3, "scenario 3",
		"Contact: <sip:um@127.0.0.1:",
		";automata",
		"carol's phone received INVITE",
		"Ms-Sensitivity: private-no-diversion",
		"caller got 486 Busy Here",
		"voicemail server received: nothing",
		"forwarding suppressed: unanswered, busy",
		`sipproxy_forwarding_total{kind="busy",outcome="suppressed"} +1`,
		`sipproxy_forwarding_total{kind="unanswered",outcome="suppressed"} +1`)

	contrast := section("For contrast", "Metrics (")
	expect(contrast, "the control call",
		"INVITE sip:carol@contoso.com;opaque=app:voicemail",
		"Diversion: <sip:carol@contoso.com>;reason=user-busy",
		"caller got 200 OK",
		`sipproxy_forwarding_total{kind="busy",outcome="applied"} +1`,
		"[ok]")

	metrics := section("Metrics (http://127.0.0.1:", "")
	expect(metrics, "the metric lines",
		`sipproxy_skip_pin_total{decision="kept",reason="own_mailbox"} 1`,
		`sipproxy_skip_pin_total{decision="stripped",reason="not_tls"} 1`,
		`sipproxy_forwarding_total{kind="busy",outcome="suppressed"} 1`,
		`sipproxy_forwarding_total{kind="unanswered",outcome="suppressed"} 1`,
		`sipproxy_forwarding_total{kind="busy",outcome="applied"} 1`,
		`sipproxy_forwarding_total{kind="immediate",outcome="suppressed"} 0`,
		"demo ok: all 3 scenarios behaved as MS-OCEXUM requires")
}

// TestDemoFlags: argument errors exit 2 before anything starts.
func TestDemoFlags(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "-no-such-flag"},
		{"demo", "extra"},
		{"demo", "-timeout", "0s"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d, want 2\n%s", args, code, errb.String())
		}
		if out.Len() != 0 {
			t.Errorf("%q printed %q", args, out.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "sipproxy demo") || !strings.Contains(out.String(), "sipproxy healthcheck") {
		t.Errorf("usage does not list demo and healthcheck:\n%s", out.String())
	}
}
