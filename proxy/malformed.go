package proxy

import (
	"errors"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// Malformed messages. What sipgo's parser cannot read is counted in
// sipproxy_malformed_total{transport,reason}, summarised in the log at most
// once per source per minute (never the whole message, never once per
// datagram), and answered 400 when its Via can be read (RFC 3261 16.3,
// 8.2): strictParser turns a header it cannot read into a badHeader (or, for
// CSeq, a CSeq numbered badCSeq) instead of failing the whole message, so
// the message still gets its server transaction and reaches validate, which
// answers it on that transaction (over UDP to the source per RFC 3581, over
// TCP and TLS on the connection) and counts it. What cannot be delivered at
// all (no request line, a broken Via or Content-Length, a message cut
// short) is reported by sipgo through its logger; sipgoLog
// counts it from there and keeps sipgo's own lines out of the operator's
// log.

// The reasons a message is counted under: a fixed set, the label values of
// malformed_total's reason.
const (
	reasonStartLine     = "start_line" // the request or status line
	reasonVia           = "via"        // dropped: no Via to answer
	reasonFrom          = "from"
	reasonTo            = "to"
	reasonCallID        = "call_id"
	reasonCSeq          = "cseq"
	reasonContact       = "contact"
	reasonMaxForwards   = "max_forwards"
	reasonContentLength = "content_length" // dropped: it frames the message
	reasonRoute         = "route"          // Route or Record-Route
	reasonHeader        = "header"         // another header sipgo parses, or a line without a colon
	reasonLineBreak     = "line_break"     // LF or NUL inside a header (see strictParser); dropped in a Via or Content-Length
	reasonFraming       = "framing"        // dropped: no CRLF, cut short, body shorter than Content-Length
	reasonTooLarge      = "too_large"      // dropped: over the parser's size limit
)

// headerReason is the reason for a header sipgo parses, by its lower-case
// name (compact forms included), and the name it is shown under.
func headerReason(lowerName string) (reason, name string) {
	switch lowerName {
	case "via", "v":
		return reasonVia, "Via"
	case "from", "f":
		return reasonFrom, "From"
	case "to", "t":
		return reasonTo, "To"
	case "call-id", "i":
		return reasonCallID, "Call-ID"
	case "cseq":
		return reasonCSeq, "CSeq"
	case "contact", "m":
		return reasonContact, "Contact"
	case "max-forwards":
		return reasonMaxForwards, "Max-Forwards"
	case "content-length", "l":
		return reasonContentLength, "Content-Length"
	case "route":
		return reasonRoute, "Route"
	case "record-route":
		return reasonRoute, "Record-Route"
	case "content-type", "c":
		return reasonHeader, "Content-Type"
	case "refer-to", "r":
		return reasonHeader, "Refer-To"
	case "referred-by", "b":
		return reasonHeader, "Referred-By"
	}
	return reasonHeader, lowerName
}

// badHeader stands in for a header sipgo's parser could not read: the
// header as received, kept as text (as sipgo keeps headers it does not
// parse). cleanHeaders refuses any message holding one, so it is never
// relayed.
type badHeader struct {
	sip.Header
	reason string
}

// badCSeq is the number of a CSeq that did not parse. sipgo keys server
// transactions by CSeq and answers a request without one itself, outside
// the pipeline; a CSeq it cannot read therefore becomes one with a number
// above 2^31-1, which sipgo's parser never produces (RFC 3261 8.1.1.5), so
// the request gets its transaction and validate answers it. The number is
// never sent: the 400 carries CSeq 0.
const badCSeq = math.MaxUint32

// parseError is a header that fails the whole message: the message is
// dropped (a TCP or TLS connection closed) and counted under reason.
type parseError struct {
	reason string
	err    error
}

func (e *parseError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *parseError) Unwrap() error { return e.err }

// commaSignal is the type of the error sipgo's address and Via parsers
// return to say "a comma: another value follows" (unexported in sipgo): it
// is not a failure. Taken from sipgo itself, so a change there shows up in
// TestStrictParser rather than as every multi-value Contact refused.
var commaSignal = func() reflect.Type {
	_, err := sip.DefaultHeadersParser()["contact"]([]byte("contact"), "<sip:a@b>, <sip:c@d>")
	return reflect.TypeOf(err)
}()

// strictHeaderParser wraps one of sipgo's header parsers. A Via or
// Content-Length that does not parse, or holds LF or NUL (see
// strictParser), fails the message: a request cannot be answered without
// the one, a stream cannot be framed without the other. Any other header
// that does not parse or holds LF or NUL is kept as a badHeader (a CSeq as
// badCSeq), never handed to sipgo's parser for it.
func strictHeaderParser(lowerName string, parse sip.HeaderParser) sip.HeaderParser {
	reason, name := headerReason(lowerName)
	return func(headerName []byte, value string) (sip.Header, error) {
		lineBreak := strings.IndexByte(value, '\n') >= 0 || strings.IndexByte(value, 0) >= 0
		var err error
		if !lineBreak {
			var h sip.Header
			if h, err = parse(headerName, value); err == nil || reflect.TypeOf(err) == commaSignal {
				return h, err
			}
		}
		switch {
		case reason == reasonVia || reason == reasonContentLength:
			if lineBreak {
				return nil, errBadLine
			}
			return nil, &parseError{reason: reason, err: err}
		case reason == reasonCSeq:
			return &sip.CSeqHeader{SeqNo: badCSeq, MethodName: cseqMethod(value)}, nil
		case lineBreak:
			return &badHeader{Header: sip.NewHeader(name, value), reason: reasonLineBreak}, nil
		}
		return &badHeader{Header: sip.NewHeader(name, value), reason: reason}, nil
	}
}

// cseqMethod is the method of a CSeq value that did not parse, when its
// last word is a token ("abc INVITE"), so that the request's transaction
// is keyed as sipgo keys it.
func cseqMethod(value string) sip.RequestMethod {
	f := strings.Fields(value)
	if len(f) < 2 || !isToken(f[len(f)-1]) {
		return ""
	}
	return sip.RequestMethod(f[len(f)-1])
}

// malformedHeader reports the first header of hs that did not parse: its
// reason and the text to show for it (name and value, as received).
func malformedHeader(hs []sip.Header) (reason, text string, ok bool) {
	for _, h := range hs {
		switch h := h.(type) {
		case *badHeader:
			return h.reason, h.Name() + ": " + h.Value(), true
		case *sip.CSeqHeader:
			if h.SeqNo == badCSeq {
				return reasonCSeq, "CSeq", true
			}
		}
	}
	return "", "", false
}

// reasonPhrase is the reason phrase of the 400 for a header that did not
// parse: fixed text, never the sender's bytes.
func reasonPhrase(reason string) string {
	switch reason {
	case reasonFrom:
		return "Malformed From"
	case reasonTo:
		return "Malformed To"
	case reasonCallID:
		return "Malformed Call-ID"
	case reasonCSeq:
		return "Malformed CSeq"
	case reasonContact:
		return "Malformed Contact"
	case reasonMaxForwards:
		return "Malformed Max-Forwards"
	case reasonRoute:
		return "Malformed Route"
	}
	return "Malformed Header"
}

// parseFailureReason classifies a parse error sipgo reports, with the bytes
// it could not parse.
func parseFailureReason(err error, data string) string {
	var pe *parseError
	switch {
	case errors.As(err, &pe):
		return pe.reason
	case errors.Is(err, errBadLine):
		return reasonLineBreak
	case errors.Is(err, sip.ErrMessageTooLarge):
		return reasonTooLarge
	case errors.Is(err, sip.ErrParseLineNoCRLF), errors.Is(err, sip.ErrParseEOF),
		errors.Is(err, sip.ErrParseReadBodyIncomplete), errors.Is(err, io.ErrUnexpectedEOF):
		return reasonFraming
	}
	// What is left are sipgo's own errors about the start line or a line
	// without a colon: parse the first line alone to tell which.
	first, _, _ := strings.Cut(strings.TrimLeft(data, "\r\n"), "\r\n")
	if _, _, err := sip.NewParser().ParseHeaders([]byte(first+"\r\n\r\n"), false); err != nil {
		return reasonStartLine
	}
	return reasonHeader
}

// transportLabel bounds the transport label.
func transportLabel(t string) string {
	switch t = strings.ToLower(t); t {
	case "udp", "tcp", "tls", "ws", "wss":
		return t
	}
	return "other"
}

// excerpt is the start of the first line of s, short enough for a log line.
func excerpt(s string) string {
	const max = 96
	s = strings.TrimLeft(s, "\r\n")
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

// malformedEvent is one message that did not parse.
type malformedEvent struct {
	transport string     // udp, tcp, tls; "stream" when sipgo does not say which of TCP and TLS
	reason    string     // one of the reason constants
	source    netip.Addr // invalid when sipgo does not say
	callID    string
	excerpt   string
}

// malformedReporter counts malformed messages and writes a summary line at
// most once per source per interval, telling how many more it did not
// write. The table of sources is bounded: beyond maxSources (after expired
// entries are swept) the sources share one line per interval.
type malformedReporter struct {
	log      *slog.Logger
	count    *prometheus.CounterVec // transport, reason; nil: not counted
	interval time.Duration
	max      int
	now      func() time.Time

	mu        sync.Mutex
	sources   map[netip.Addr]*logNote
	others    logNote // sources beyond max
	nextSweep time.Time
}

// logNote is when a line was last written for a key, and how many were
// held back since.
type logNote struct {
	at   time.Time
	held int
}

const (
	malformedLogInterval = time.Minute
	malformedMaxSources  = 1024
)

func newMalformedReporter(log *slog.Logger, count *prometheus.CounterVec) *malformedReporter {
	return &malformedReporter{
		log: log, count: count, interval: malformedLogInterval, max: malformedMaxSources, now: time.Now,
		sources: make(map[netip.Addr]*logNote),
	}
}

func (m *malformedReporter) report(ev malformedEvent) {
	if m.count != nil {
		m.count.WithLabelValues(ev.transport, ev.reason).Inc()
	}
	held, ok := m.admit(ev.source)
	if !ok {
		return
	}
	source := "unknown"
	if ev.source.IsValid() {
		source = ev.source.String()
	}
	attrs := []any{"transport", ev.transport, "source", source, "reason", ev.reason, "excerpt", ev.excerpt}
	if ev.callID != "" {
		attrs = append(attrs, "call_id", excerpt(ev.callID))
	}
	if held > 0 {
		attrs = append(attrs, "not_logged_since_last", held)
	}
	m.log.Info("malformed SIP message (one line per source per minute; all are counted in sipproxy_malformed_total)", attrs...)
}

// admit decides whether a line is written for src now; held is how many
// were not written for it since the last one.
func (m *malformedReporter) admit(src netip.Addr) (held int, ok bool) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.sources[src]
	if n == nil {
		if len(m.sources) >= m.max && !now.Before(m.nextSweep) {
			for a, e := range m.sources {
				if now.Sub(e.at) >= m.interval {
					delete(m.sources, a)
				}
			}
			m.nextSweep = now.Add(m.interval / 8)
		}
		if len(m.sources) >= m.max {
			n = &m.others
		} else {
			m.sources[src] = &logNote{at: now}
			return 0, true
		}
	}
	if !n.at.IsZero() && now.Sub(n.at) < m.interval {
		n.held++
		return 0, false
	}
	held, n.at, n.held = n.held, now, 0
	return held, true
}

// malformedRequest answers 400 to a request holding a header sipgo could
// not parse (RFC 3261 16.3: a malformed header field the proxy needs; 8.2),
// on its server transaction, and counts it. The response carries the
// request's CSeq, or CSeq 0 when that is what did not parse (sipgo matches
// responses to its client transactions by Via branch and CSeq method, which
// are still the sender's), and a From, To or Call-ID that did not parse as
// it was received (8.2.6.2: they are copied; the text cannot hold a line
// break, see strictHeaderParser).
func (s *Server) malformedRequest(r *request, reason, text string) {
	var src netip.Addr
	if r.in.Source.IsValid() {
		src = r.in.Source.Addr()
	}
	s.malformed.report(malformedEvent{
		transport: transportLabel(r.in.Transport), reason: reason, source: src, callID: r.callID,
		excerpt: excerpt(r.StartLine()) + " | " + excerpt(text),
	})
	res := sip.NewResponseFromRequest(r.Request, sip.StatusBadRequest, reasonPhrase(reason), nil)
	res.SipVersion = sipVersion
	if c := res.CSeq(); c != nil && c.SeqNo == badCSeq {
		c.SeqNo = 0
	}
	for _, h := range r.Headers() {
		if b, ok := h.(*badHeader); ok {
			switch b.reason {
			case reasonFrom, reasonTo, reasonCallID:
				res.AppendHeader(sip.NewHeader(b.Name(), b.Value()))
			}
		}
	}
	s.respond(r, res)
}

// malformedResponse counts and summarises a response from a next hop that
// is not relayed because it is malformed (see cleanResponse): a UA behind
// us can send as many as it likes, so they go the way of malformed
// requests, one log line per source per minute.
func (s *Server) malformedResponse(res *sip.Response, callID string) {
	var src netip.Addr
	if ap, err := netip.ParseAddrPort(res.Source()); err == nil {
		src = ap.Addr().Unmap()
	}
	s.malformed.report(malformedEvent{
		transport: transportLabel(res.Transport()), reason: responseProblem(res), source: src, callID: callID,
		excerpt: excerpt(res.StartLine()),
	})
}

// responseProblem is the reason cleanResponse refused res under.
func responseProblem(res *sip.Response) string {
	if reason, _, bad := malformedHeader(res.Headers()); bad {
		return reason
	}
	if hasLineBreak(res.Reason) || !strings.EqualFold(res.SipVersion, sipVersion) {
		return reasonStartLine
	}
	if _, why := cleanHeaders(res.Headers()); why == "Bad Header Value" {
		return reasonLineBreak
	}
	return reasonHeader // a duplicate header, or a name that is not a token
}
