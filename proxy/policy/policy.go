// Package policy makes the [MS-OCEXUM] header decisions of sipproxy: whether
// an Ms-Exchange-Command: skip-pin header may reach the voicemail server
// (SkipPin), and whether Ms-Sensitivity: private-no-diversion forbids
// forwarding for a call (NoDiversion).
//
// The package is pure: plain strings in, decisions out. It opens no sockets,
// knows nothing of sipgo transactions and keeps no state, so every decision
// can be tested exhaustively. The request pipeline gathers the facts
// (ingress transport, authenticated identity, trusted peer, routing target),
// asks this package, applies the answer to the request and counts it in
// sipproxy_skip_pin_total{decision,reason}.
//
// # Reading the headers with sipgo
//
// Header names are case-insensitive (RFC 3261 7.3.1). sipgo v1.7.3 keeps a
// header it has no parser for (both of ours) as one sip.GenericHeader per
// header line, with the name as written on the wire and the value with its
// surrounding whitespace trimmed but commas left alone. Its
// Request.GetHeaders(name) matches names case-insensitively (sip/headers.go:
// both sides go through HeaderToLower), so
//
//	for _, h := range req.GetHeaders(policy.HeaderExchangeCommand) { values = append(values, h.Value()) }
//
// finds "ms-exchange-command" and "MS-EXCHANGE-COMMAND" lines alike.
// Request.RemoveHeader(name) however compares names exactly and removes only
// the first match, so removing every Ms-Exchange-Command header takes one
// RemoveHeader(h.Name()) per header GetHeaders returned. sipgo_test.go pins
// both behaviours.
package policy

// Header names as [MS-OCEXUM] 2.2 spells them. Neither has a compact form.
const (
	HeaderExchangeCommand = "Ms-Exchange-Command"
	HeaderSensitivity     = "Ms-Sensitivity"
)

// trimWS trims SIP whitespace (SP, HTAB and the CR/LF of folded lines,
// RFC 3261 25.1 LWS) from both ends of s. Unlike strings.TrimSpace it does
// not trim Unicode spaces such as U+00A0: those are not SIP whitespace, and a
// value carrying them is not the bare token.
func trimWS(s string) string {
	for len(s) > 0 && isWS(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isWS(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isWS(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

// equalFoldASCII is strings.EqualFold restricted to ASCII letters. The
// tokens, transports and host names compared here are ASCII, and Unicode
// folding would be wrong for them: strings.EqualFold("ſkip-pin", "skip-pin")
// is true (U+017F folds to 's', U+212A to 'k'), and such a value must not
// pass for the token.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
