package proxy

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sipproxy/sipproxy/metrics"
)

const parseBase = "REGISTER sip:contoso.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n" +
	"From: <sip:a@contoso.com>;tag=1\r\nTo: <sip:a@contoso.com>\r\nCall-ID: c1\r\n"

// TestStrictParser: which broken headers fail the whole message (and why),
// which become stand-ins that validate answers, and that what sipgo
// parses stays as it was (several values on one line).
func TestStrictParser(t *testing.T) {
	tests := []struct {
		name       string
		headers    string // after parseBase, before Content-Length
		failReason string // the message does not parse: parseFailureReason
		badReason  string // the message parses with a stand-in: malformedHeader
	}{
		{name: "good", headers: "CSeq: 1 REGISTER\r\nContact: <sip:a@1.2.3.4>, <sip:a@5.6.7.8>\r\n"},
		{name: "bare contact", headers: "CSeq: 1 REGISTER\r\nContact: x@host\r\n", badReason: reasonContact},
		{name: "second contact broken", headers: "CSeq: 1 REGISTER\r\nContact: <sip:a@1.2.3.4>, x@host\r\n", badReason: reasonContact},
		{name: "from without a URI", headers: "CSeq: 1 REGISTER\r\nFrom: Alice\r\n", badReason: reasonFrom},
		{name: "non-numeric CSeq", headers: "CSeq: abc REGISTER\r\n", badReason: reasonCSeq},
		{name: "CSeq over 2^31-1", headers: "CSeq: 4294967295 REGISTER\r\n", badReason: reasonCSeq},
		{name: "max-forwards", headers: "CSeq: 1 REGISTER\r\nMax-Forwards: many\r\n", badReason: reasonMaxForwards},
		{name: "route", headers: "CSeq: 1 REGISTER\r\nRoute: x\r\n", badReason: reasonRoute},
		{name: "content-type", headers: "CSeq: 1 REGISTER\r\nContent-Type: \r\n", badReason: reasonHeader},
		{name: "broken via", headers: "CSeq: 1 REGISTER\r\nVia: garbage\r\n", failReason: reasonVia},
		{name: "LF in a value", headers: "CSeq: 1 REGISTER\r\nContact: <sip:a@b>\nX: y\r\n", badReason: reasonLineBreak},
		{name: "NUL in a From", headers: "CSeq: 1 REGISTER\r\nFrom: <sip:a@b>\x00;tag=1\r\n", badReason: reasonLineBreak},
		{name: "LF in a CSeq", headers: "CSeq: 1 REGISTER\nX: y\r\n", badReason: reasonCSeq},
		{name: "LF in a Via", headers: "CSeq: 1 REGISTER\r\nVia: SIP/2.0/UDP h\nX: y\r\n", failReason: reasonLineBreak},
		{name: "LF in a Content-Length", headers: "CSeq: 1 REGISTER\r\nContent-Length: 0\nX: y\r\n", failReason: reasonLineBreak},
	}
	p := strictParser(65535)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := parseBase + tc.headers + "Content-Length: 0\r\n\r\n"
			msg, err := p.ParseSIP([]byte(raw))
			if tc.failReason != "" {
				if err == nil {
					t.Fatalf("parsed; want a failure (%s)", tc.failReason)
				}
				if got := parseFailureReason(err, raw); got != tc.failReason {
					t.Errorf("failure reason %q, want %q (%v)", got, tc.failReason, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("does not parse: %v", err)
			}
			req := msg.(*sip.Request)
			reason, _, bad := malformedHeader(req.Headers())
			if reason != tc.badReason || bad != (tc.badReason != "") {
				t.Errorf("malformedHeader = %q, %v; want %q", reason, bad, tc.badReason)
			}
			if ok, _ := cleanHeaders(req.Headers()); ok == bad {
				t.Errorf("cleanHeaders ok=%v for a message with a stand-in=%v", ok, bad)
			}
			if tc.name == "good" && len(req.GetHeaders("Contact")) != 2 {
				t.Errorf("two contacts on a line became %d", len(req.GetHeaders("Contact")))
			}
		})
	}
}

func TestParseFailureReason(t *testing.T) {
	p := strictParser(200)
	tests := []struct {
		raw, want string
	}{
		{"\x16\x03\x01 not sip at all\r\n\r\n", reasonStartLine},
		{"INVITE sip:a@b SIP/2.0\r\nVia SIP/2.0/UDP h\r\n\r\n", reasonHeader},
		{"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\rX: y\r\n\r\n", reasonFraming},
		{"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nContent-Length: ten\r\n\r\n", reasonContentLength},
		{"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nContent-Length: 10\r\n\r\nab", reasonFraming},
		{"INVITE sip:a@b SIP/2.0\r\nX: " + strings.Repeat("y", 300) + "\r\n\r\n", reasonTooLarge},
	}
	for _, tc := range tests {
		_, err := p.ParseSIP([]byte(tc.raw))
		if err == nil {
			t.Errorf("%q parsed", tc.raw)
			continue
		}
		if got := parseFailureReason(err, tc.raw); got != tc.want {
			t.Errorf("%q: reason %q, want %q (%v)", excerpt(tc.raw), got, tc.want, err)
		}
	}
}

// TestMalformedReporterBounds: one line per source per interval (the
// count of held-back ones on the next), every event counted, and a table
// of sources that does not grow past its bound.
func TestMalformedReporterBounds(t *testing.T) {
	var out bytes.Buffer
	m := metrics.New()
	r := newMalformedReporter(slog.New(slog.NewTextHandler(&out, nil)), m.Malformed)
	now := time.Unix(1700000000, 0)
	r.now = func() time.Time { return now }
	r.max = 4
	a := netip.MustParseAddr("192.0.2.1")
	ev := func(src netip.Addr) malformedEvent {
		return malformedEvent{transport: "udp", reason: reasonContact, source: src, excerpt: "x"}
	}
	lines := func() int { return strings.Count(out.String(), "\n") }

	for range 100 {
		r.report(ev(a))
	}
	if lines() != 1 {
		t.Fatalf("100 events from one source: %d lines", lines())
	}
	now = now.Add(time.Minute)
	r.report(ev(a))
	if lines() != 2 || !strings.Contains(out.String(), "not_logged_since_last=99") {
		t.Fatalf("a minute later: %d lines, want 2 with 99 held back:\n%s", lines(), out.String())
	}
	// 1,000 sources at once: 3 more get their own line (4 in the table),
	// the rest share one.
	for i := range 1000 {
		r.report(ev(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})))
	}
	if lines() != 2+3+1 || len(r.sources) > r.max {
		t.Errorf("1,000 sources: %d lines, %d sources kept (max %d)", lines(), len(r.sources), r.max)
	}
	// Later, expired entries make room again.
	now = now.Add(2 * time.Minute)
	r.report(ev(netip.MustParseAddr("192.0.2.99")))
	if lines() != 7 || len(r.sources) > r.max {
		t.Errorf("after expiry: %d lines, %d sources kept", lines(), len(r.sources))
	}
	if n := testutil.ToFloat64(m.Malformed.WithLabelValues("udp", reasonContact)); n != 1102 {
		t.Errorf("counted %v, want 1102", n)
	}
}

// TestSipgoLog: sipgo's records reach the proxy's handler demoted, its
// parse failures only as counts and summaries, its warnings once a minute.
func TestSipgoLog(t *testing.T) {
	var out bytes.Buffer
	base := slog.New(slog.NewTextHandler(&out, nil)) // info
	m := metrics.New()
	h := newSipgoLog(base.Handler(), newMalformedReporter(base, m.Malformed))
	sipLog := slog.New(h).With("caller", "TransportLayer").With("caller", "Transport<UDP>")

	data := "REGISTER sip:contoso.com SIP/2.0\r\nVia: garbage\r\n" + strings.Repeat("X-Pad: y\r\n", 50) + "\r\n"
	for range 500 {
		sipLog.Error("failed to parse", "data", data, "error", &parseError{reason: reasonVia, err: errors.New("Malformed protocol name in Via header")})
	}
	for range 500 {
		sipLog.Error("Server tx failed to handle request", "error", "make key failed", "req", data)
		sipLog.Info("Server transaction initialized")
	}
	got := out.String()
	if n := strings.Count(got, "\n"); n != 2 {
		t.Errorf("%d lines, want 2 (a malformed summary, one ERROR of sipgo's):\n%s", n, got)
	}
	if strings.Contains(got, "X-Pad") {
		t.Errorf("a whole message reached the log:\n%s", got)
	}
	if n := testutil.ToFloat64(m.Malformed.WithLabelValues("udp", reasonVia)); n != 500 {
		t.Errorf("malformed_total{udp,via} = %v, want 500", n)
	}

	// At DEBUG everything passes, shortened.
	out.Reset()
	debug := slog.New(newSipgoLog(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}), newMalformedReporter(slog.New(slog.DiscardHandler), nil)))
	debug.Error("failed to parse", "data", data, "error", errors.New("x"))
	debug.Debug("Keep alive CRLF received", "data", strings.Repeat("z", 1000))
	if got := out.String(); strings.Count(got, "\n") != 2 || strings.Contains(got, "X-Pad") || strings.Contains(got, strings.Repeat("z", 300)) {
		t.Errorf("debug output:\n%s", got)
	}
}

// TestSIPDefaultLogger: what sipgo's TCP and TLS transports report through
// its package default is counted (transport "stream": sipgo does not say
// which) and kept out of the log the same way.
func TestSIPDefaultLogger(t *testing.T) {
	var out bytes.Buffer
	m := metrics.New()
	l := SIPDefaultLogger(slog.New(slog.NewTextHandler(&out, nil)), m)
	for range 300 {
		l.Error("failed to parse", "error", errors.New("transmission beginning 'GET / HTTP/1.1' is not a SIP message"), "data", "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	if n := testutil.ToFloat64(m.Malformed.WithLabelValues("stream", reasonStartLine)); n != 300 {
		t.Errorf("malformed_total{stream,start_line} = %v, want 300", n)
	}
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Errorf("%d lines for 300 parse failures:\n%s", n, out.String())
	}
	if SIPDefaultLogger(slog.New(slog.DiscardHandler), nil) == nil {
		t.Error("no logger without metrics")
	}
}
