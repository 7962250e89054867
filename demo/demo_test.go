package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sipproxy/sipproxy/internal/config"
)

// TestRun runs the whole demo on free ports: every scenario behaves as
// described, and the metric lines show exactly the decisions it made.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	start := time.Now()
	res, err := Run(context.Background(), Options{Out: &out, FreePorts: true, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the demo took %v; it should take a few seconds at most", d)
	}
	if len(res.Scenarios) != 3 {
		t.Fatalf("%d scenarios, want 3", len(res.Scenarios))
	}
	for _, s := range res.Scenarios {
		if !s.OK() {
			t.Errorf("%s: %q", s.Name, s.Problems)
		}
	}
	want := map[string]bool{
		`sipproxy_skip_pin_total{decision="kept",reason="own_mailbox"} 1`:     true,
		`sipproxy_skip_pin_total{decision="stripped",reason="not_tls"} 1`:     true,
		`sipproxy_forwarding_total{kind="busy",outcome="suppressed"} 1`:       true,
		`sipproxy_forwarding_total{kind="unanswered",outcome="suppressed"} 1`: true,
		`sipproxy_forwarding_total{kind="busy",outcome="applied"} 1`:          true,
		`sipproxy_forwarding_total{kind="immediate",outcome="suppressed"} 0`:  true,
		`sipproxy_forwarding_total{kind="unanswered",outcome="applied"} 0`:    true,
		`sipproxy_forwarding_total{kind="immediate",outcome="applied"} 0`:     true,
	}
	for _, l := range res.Metrics {
		if !want[l] && !strings.HasSuffix(l, " 0") {
			t.Errorf("unexpected metric line %q", l)
		}
		delete(want, l)
	}
	for l := range want {
		t.Errorf("metric line %q missing from %q", l, res.Metrics)
	}
	if !strings.Contains(out.String(), "demo ok: all 3 scenarios") {
		t.Errorf("no success line:\n%s", out.String())
	}
	// Each call's verdict follows that call: scenario 3's comes before the
	// contrast call, which has its own.
	s3, contrast, ok := strings.Cut(out.String()[strings.Index(out.String(), "3. Play-On-Phone"):], "For contrast")
	if !ok {
		t.Fatalf("no contrast call:\n%s", out.String())
	}
	if !strings.Contains(s3, "=> no diversion: UM hears carol's real answer, her forwarding is suppressed   [ok]") {
		t.Errorf("scenario 3's verdict is not right after its call:\n%s", s3)
	}
	if !strings.Contains(contrast, "=> without the header carol's busy rule diverts to her voicemail   [ok]") || strings.Contains(contrast, "no diversion:") {
		t.Errorf("the contrast call lacks its own verdict:\n%s", contrast)
	}
}

// TestRunDetectsMisbehaviour: the demo's checks can fail. Without carol's
// forwarding rules nothing is suppressed and the busy phone does not divert,
// and Run says so (scenarios 1 and 2 still pass).
func TestRunDetectsMisbehaviour(t *testing.T) {
	var out bytes.Buffer
	res, err := Run(context.Background(), Options{Out: &out, FreePorts: true, Timeout: 20 * time.Second, rules: []byte("rules: []\n")})
	if err == nil {
		t.Fatalf("Run succeeded without carol's rules:\n%s", out.String())
	}
	if res == nil || len(res.Scenarios) != 3 {
		t.Fatalf("result %+v", res)
	}
	if !res.Scenarios[0].OK() || !res.Scenarios[1].OK() {
		t.Errorf("skip-pin scenarios failed: %q %q", res.Scenarios[0].Problems, res.Scenarios[1].Problems)
	}
	p := strings.Join(res.Scenarios[2].Problems, "\n")
	for _, w := range []string{"forwarding counters changed by nothing", "did not divert"} {
		if !strings.Contains(p, w) {
			t.Errorf("scenario 3 problems lack %q:\n%s", w, p)
		}
	}
	if !strings.Contains(out.String(), "demo FAILED: 1 of 3 scenarios") || !strings.Contains(out.String(), "NOT AS DESCRIBED") {
		t.Errorf("the failure is not printed:\n%s", out.String())
	}
	// Each problem is reported under the call that showed it.
	s3, contrast, _ := strings.Cut(out.String()[strings.Index(out.String(), "3. Play-On-Phone"):], "For contrast")
	contrast, _, _ = strings.Cut(contrast, "Metrics (")
	if v := lineWith(s3, "=> "); !strings.Contains(v, "NOT AS DESCRIBED") || !strings.Contains(v, "forwarding counters changed by nothing") || strings.Contains(v, "did not divert") {
		t.Errorf("scenario 3's verdict %q: want its own call's problem only", v)
	}
	v := lineWith(contrast, "=> ")
	if !strings.Contains(v, "did not divert") {
		t.Errorf("the contrast call's verdict %q lacks its problem", v)
	}
	_, problems, _ := strings.Cut(strings.TrimSpace(v), "NOT AS DESCRIBED: ")
	for p := range strings.SplitSeq(problems, "; ") {
		if !strings.HasPrefix(p, "control call") {
			t.Errorf("the contrast call's verdict has scenario 3's problem %q", p)
		}
	}
}

// lineWith returns the first line of s containing sub.
func lineWith(s, sub string) string {
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

func TestAdjustPorts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		free      bool
		offset    int
		listen    []string
		metrics   string
		voicemail string
		err       string
	}{
		{"unchanged", false, 0, []string{"127.0.0.1:5060", "127.0.0.1:5060", "127.0.0.1:5061"}, "127.0.0.1:9090", "sip:127.0.0.1:5066;transport=tls", ""},
		{"offset", false, 1000, []string{"127.0.0.1:6060", "127.0.0.1:6060", "127.0.0.1:6061"}, "127.0.0.1:10090", "sip:127.0.0.1:6066;transport=tls", ""},
		{"free", true, 7, []string{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"}, "127.0.0.1:0", "sip:127.0.0.1;transport=tls", ""},
		{"out of range", false, 60000, nil, "", "", "out of range"},
		{"negative", false, -5061, nil, "", "", "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Default()
			if err != nil {
				t.Fatal(err)
			}
			err = adjustPorts(cfg, tc.free, tc.offset)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range cfg.Server.Listen {
				got = append(got, l.Addr)
			}
			if strings.Join(got, " ") != strings.Join(tc.listen, " ") {
				t.Errorf("listen %q, want %q", got, tc.listen)
			}
			if cfg.Metrics.Listen != tc.metrics {
				t.Errorf("metrics %q, want %q", cfg.Metrics.Listen, tc.metrics)
			}
			if cfg.Voicemail.URI != tc.voicemail {
				t.Errorf("voicemail %q, want %q", cfg.Voicemail.URI, tc.voicemail)
			}
		})
	}
}

func TestRunNeedsOut(t *testing.T) {
	if _, err := Run(context.Background(), Options{}); err == nil {
		t.Fatal("Run without Out succeeded")
	}
}
