package proxy

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipproxy/sipproxy/metrics"
)

// sipgoLog is the slog.Handler sipgo logs through. sipgo logs what outsiders
// send at ERROR, the whole message included, once per datagram ("failed to
// parse"): those records are counted and summarised by the malformed
// reporter, and reach the proxy's handler only at DEBUG and shortened.
// sipgo's other records are demoted to DEBUG, except that a WARN or ERROR
// record passes at its level once per message text per minute.
type sipgoLog struct {
	next      slog.Handler
	shared    *sipgoLogState
	transport string // from the "caller" attribute sipgo's transports add
	stream    bool   // the package default logger, which sipgo's TCP and TLS transports use
}

type sipgoLogState struct {
	malformed *malformedReporter
	now       func() time.Time
	mu        sync.Mutex
	lines     map[string]*logNote // by message text; bounded by maxSipgoLines
}

const maxSipgoLines = 256

func newSipgoLog(next slog.Handler, malformed *malformedReporter) *sipgoLog {
	return &sipgoLog{next: next, shared: &sipgoLogState{malformed: malformed, now: time.Now, lines: make(map[string]*logNote)}}
}

// SIPDefaultLogger wraps the logger given to sip.SetDefaultLogger, which
// sipgo's TCP and TLS transports log through when the proxy configures them
// (sipgo offers no other way): their records get the same treatment as the
// Server's (see sipgoLog). Parse failures are counted in m's
// malformed_total with transport "stream" (sipgo does not say whether TCP
// or TLS); m may be nil. Set it before creating the Server: sipgo's
// transports take the default logger when they are created.
func SIPDefaultLogger(log *slog.Logger, m *metrics.Metrics) *slog.Logger {
	var count *prometheus.CounterVec
	if m != nil {
		count = m.Malformed
	}
	h := newSipgoLog(log.Handler(), newMalformedReporter(log, count))
	h.stream = true
	return slog.New(h)
}

func (h *sipgoLog) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= slog.LevelWarn || h.next.Enabled(ctx, slog.LevelDebug)
}

func (h *sipgoLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	for _, a := range attrs {
		if a.Key == "caller" {
			// "Transport<UDP>" and the like.
			if t, ok := strings.CutPrefix(a.Value.String(), "Transport<"); ok {
				c.transport = transportLabel(strings.TrimSuffix(t, ">"))
			}
		}
	}
	return &c
}

func (h *sipgoLog) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}

func (h *sipgoLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "failed to parse" {
		return h.parseFailure(ctx, r)
	}
	level := slog.LevelDebug
	var held int
	if r.Level >= slog.LevelWarn {
		if n, ok := h.shared.admit(r.Message); ok {
			level, held = r.Level, n
		}
	}
	if !h.next.Enabled(ctx, level) {
		return nil
	}
	out := slog.NewRecord(r.Time, level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(shorten(a))
		return true
	})
	if held > 0 {
		out.AddAttrs(slog.Int("not_logged_since_last", held))
	}
	return h.next.Handle(ctx, out)
}

// parseFailure counts one of sipgo's "failed to parse" records and passes
// it on at DEBUG without the message.
func (h *sipgoLog) parseFailure(ctx context.Context, r slog.Record) error {
	var err error
	var data string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "error":
			err, _ = a.Value.Any().(error)
		case "data":
			data = a.Value.String()
		}
		return true
	})
	transport := h.transport
	switch {
	case h.stream:
		transport = "stream"
	case transport == "":
		transport = "other"
	}
	reason := parseFailureReason(err, data)
	h.shared.malformed.report(malformedEvent{transport: transport, reason: reason, excerpt: excerpt(data)})
	if !h.next.Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	out := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
	out.AddAttrs(slog.String("reason", reason), slog.Any("error", err), slog.String("excerpt", excerpt(data)),
		slog.Int("bytes", len(data)))
	return h.next.Handle(ctx, out)
}

// admit lets a WARN or ERROR line of sipgo's through once per message text
// per minute.
func (s *sipgoLogState) admit(msg string) (held int, ok bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.lines[msg]
	if n == nil {
		if len(s.lines) >= maxSipgoLines {
			return 0, false
		}
		s.lines[msg] = &logNote{at: now}
		return 0, true
	}
	if now.Sub(n.at) < malformedLogInterval {
		n.held++
		return 0, false
	}
	held, n.at, n.held = n.held, now, 0
	return held, true
}

// shorten keeps the first line of a string value, at most 128 bytes of it
// (sipgo puts whole messages in some).
func shorten(a slog.Attr) slog.Attr {
	const max = 128
	v := a.Value.String()
	if a.Value.Kind() != slog.KindString || len(v) <= max && !strings.ContainsAny(v, "\r\n") {
		return a
	}
	line, _, _ := strings.Cut(v, "\r")
	line, _, _ = strings.Cut(line, "\n")
	if len(line) > max {
		line = line[:max]
	}
	return slog.String(a.Key, strings.ToValidUTF8(line, "?")+" ... ("+strconv.Itoa(len(v))+" bytes)")
}
