package proxy

import (
	"errors"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// wellFormed rejects what sipgo's lenient parser lets through but a
// downstream parser may read differently: the classic request-smuggling
// shapes. sipgo ends a line only at CR, so a bare LF (or NUL) inside a
// header survives parsing and is relayed verbatim; a stricter stack behind
// us (Exchange UM over our trusted TLS hop) may see a second header there,
// such as Ms-Exchange-Command: skip-pin. sipgo also keeps every copy of a
// header that may appear once and answers questions from the last one,
// while most stacks read the first: a second From would be checked by us
// and ignored downstream, a second Content-Length would frame the message
// differently there.
func wellFormed(req *sip.Request) (ok bool, why string) {
	// sipgo takes the request line's third field as the version whatever
	// follows "SIP" (a bare LF and another header included) and writes
	// it back out as it came.
	if !isToken(string(req.Method)) || !cleanURI(req.Recipient) || !strings.EqualFold(req.SipVersion, "SIP/2.0") {
		return false, "Bad Request Line"
	}
	if ok, why := cleanHeaders(req.Headers()); !ok {
		return false, why
	}
	if cl := req.ContentLength(); cl != nil && int(*cl) != len(req.Body()) {
		return false, "Content-Length Mismatch"
	}
	return true, ""
}

// cleanResponse is wellFormed for a response on its way upstream: the
// status line's reason phrase and version and the headers (a UA behind us
// must not slip lines past us to the one in front either).
func cleanResponse(res *sip.Response) bool {
	if hasLineBreak(res.Reason) || !strings.EqualFold(res.SipVersion, "SIP/2.0") {
		return false
	}
	ok, _ := cleanHeaders(res.Headers())
	return ok
}

// cleanHeaders: no bare LF or NUL in a header kept as text, header names
// that are tokens, and no second copy of a header that may appear once.
func cleanHeaders(hs []sip.Header) (ok bool, why string) {
	var from, to, callID, cseq, maxfwd, clen, ctype int
	for _, h := range hs {
		switch h := h.(type) {
		case *badHeader:
			return false, reasonPhrase(h.reason) // a header sipgo could not parse
		case *sip.FromHeader:
			from++
		case *sip.ToHeader:
			to++
		case *sip.CallIDHeader:
			callID++
		case *sip.CSeqHeader:
			if h.SeqNo == badCSeq {
				return false, reasonPhrase(reasonCSeq)
			}
			cseq++
		case *sip.MaxForwardsHeader:
			maxfwd++
		case *sip.ContentLengthHeader:
			clen++
		case *sip.ContentTypeHeader:
			ctype++
		case *sip.ViaHeader, *sip.ContactHeader, *sip.RouteHeader, *sip.RecordRouteHeader,
			*sip.ReferToHeader, *sip.ReferredByHeader:
		default:
			// Typed headers were checked as they were parsed (strictParser);
			// the others are kept as text and checked here.
			if !isToken(h.Name()) {
				return false, "Bad Header Name"
			}
			if hasLineBreak(h.Value()) {
				return false, "Bad Header Value"
			}
		}
	}
	if from > 1 || to > 1 || callID > 1 || cseq > 1 || maxfwd > 1 || clen > 1 || ctype > 1 {
		return false, "Duplicate Header"
	}
	return true, ""
}

// cleanURI: no CR, LF or NUL in any part of a parsed URI.
func cleanURI(u sip.Uri) bool {
	if hasLineBreak(u.User) || hasLineBreak(u.Password) || hasLineBreak(u.Host) {
		return false
	}
	for _, p := range u.UriParams {
		if hasLineBreak(p.K) || hasLineBreak(p.V) {
			return false
		}
	}
	for _, p := range u.Headers {
		if hasLineBreak(p.K) || hasLineBreak(p.V) {
			return false
		}
	}
	return true
}

// hasLineBreak: CR, LF or NUL anywhere in s. (IndexByte is vectorised;
// ContainsAny builds a set on every call, on every header of every message.)
func hasLineBreak(s string) bool {
	return strings.IndexByte(s, '\n') >= 0 || strings.IndexByte(s, '\r') >= 0 || strings.IndexByte(s, 0) >= 0
}

// isToken: RFC 3261 25.1 token characters, the only ones a header name has.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '.' || c == '!' || c == '%' || c == '*' || c == '_' || c == '+' || c == '`' || c == '\'' || c == '~':
		default:
			return false
		}
	}
	return true
}

// strictParser is sipgo's parser with every typed header parser refusing a
// value that holds LF or NUL (sipgo ends lines at CR only, so these reach
// the header parsers), so that no such line is relayed for a downstream
// parser to split, and keeping a header that does not parse instead of
// failing the whole message (see strictHeaderParser): validate answers
// 400, cleanResponse refuses a response. Only a broken Via or
// Content-Length still fails the message: it is dropped (its TCP/TLS
// connection closed).
func strictParser(maxMessage int) *sip.Parser {
	parsers := make(map[string]sip.HeaderParser, len(sip.DefaultHeadersParser()))
	for name, parse := range sip.DefaultHeadersParser() {
		parsers[name] = strictHeaderParser(name, parse)
	}
	p := sip.NewParser(sip.WithHeadersParsers(parsers))
	p.MaxMessageLength = maxMessage
	return p
}

var errBadLine = errors.New("header value holds LF or NUL")

// sipVersion is the only version the proxy speaks, and the version of every
// response it writes (RFC 3261 7.1, 21.5.20: a 505 too says SIP/2.0).
const sipVersion = "SIP/2.0"

// isVersion: "SIP/" digits "." digits (RFC 3261 25.1 SIP-Version).
func isVersion(v string) bool {
	rest, ok := strings.CutPrefix(strings.ToUpper(v), "SIP/")
	if !ok {
		return false
	}
	major, minor, ok := strings.Cut(rest, ".")
	return ok && allDigits(major) && allDigits(minor)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
