package policy

// privateNoDiversion is the Ms-Sensitivity value of [MS-OCEXUM] 2.2.2.
const privateNoDiversion = "private-no-diversion"

// NoDiversion reports whether the Ms-Sensitivity header values (one per
// header line, raw) ask for no diversion ([MS-OCEXUM] 3.2): true when any
// element of any value is the token private-no-diversion. The caller must
// then apply no immediate, unanswered or busy forwarding; the header itself
// is forwarded unchanged.
//
// Each value is a comma-separated list. An element matches when, with SIP
// whitespace (SP, HTAB, CR, LF) trimmed, it equals the token ignoring ASCII
// case. Empty elements are skipped. Commas inside a double-quoted string
// (backslash escapes honoured) do not separate elements, and a quoted
// "private-no-diversion" is a quoted string, not the token, so it does not
// match; neither does the token with parameters (private-no-diversion;x=1).
// Other values, defined in [MS-SIPRE] and out of scope here, have no effect.
// NoDiversion does not allocate.
func NoDiversion(values []string) bool {
	for _, v := range values {
		if listHas(v, privateNoDiversion) {
			return true
		}
	}
	return false
}

// listHas reports whether the comma-separated list v has an element equal,
// whitespace trimmed and ignoring ASCII case, to token.
func listHas(v, token string) bool {
	start, quoted := 0, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++ // quoted-pair: the next byte is literal
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			if equalFoldASCII(trimWS(v[start:i]), token) {
				return true
			}
			start = i + 1
		}
	}
	return equalFoldASCII(trimWS(v[start:]), token)
}
