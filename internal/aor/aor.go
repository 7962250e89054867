// Package aor normalises SIP addresses of record so that every part of the
// proxy (registrar, rules, policy, routing) compares users the same way.
package aor

import (
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Of returns the normalised address of record "user@host" of a SIP URI:
// the user part as written (RFC 3261 19.1.4 compares it case-sensitively),
// the host lower-cased, with port, parameters and headers dropped.
func Of(u sip.Uri) string {
	host := strings.ToLower(u.Host)
	if u.User == "" {
		return host
	}
	return u.User + "@" + host
}

// Equal compares two normalised AORs "user@host" as RFC 3261 19.1.4
// compares SIP URIs: the user part exactly, the host ignoring ASCII case
// (not Unicode case: a host is ASCII, and a look-alike is another host).
// The host is what follows the last '@'; an AOR without '@' is a bare host
// and equals only another bare host. Every comparison of users in the
// proxy (identity against From/To, skip-pin's mailbox owner) is this one.
func Equal(a, b string) bool {
	ia, ib := strings.LastIndexByte(a, '@'), strings.LastIndexByte(b, '@')
	if (ia < 0) != (ib < 0) {
		return false
	}
	if ia >= 0 && a[:ia] != b[:ib] {
		return false
	}
	ha, hb := a[ia+1:], b[ib+1:]
	if len(ha) != len(hb) {
		return false
	}
	for i := 0; i < len(ha); i++ {
		if lower(ha[i]) != lower(hb[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// IsMailbox reports whether a URI names a voicemail mailbox: it carries
// opaque=app:voicemail [MS-OCEXUM] 2.2.1. URI parameter names and this
// value compare case-insensitively (RFC 3261 19.1.4), so OPAQUE=APP:VOICEMAIL
// is the same mailbox, and must be routed (and policed) as one.
func IsMailbox(u sip.Uri) bool {
	for _, kv := range u.UriParams {
		if strings.EqualFold(kv.K, "opaque") && strings.EqualFold(kv.V, "app:voicemail") {
			return true
		}
	}
	return false
}

// Parse parses a SIP or SIPS URI and returns it with its normalised address
// of record. It rejects anything that is not a sip: or sips: URI with a host.
func Parse(s string) (sip.Uri, string, error) {
	var u sip.Uri
	s = strings.TrimSpace(s)
	if s == "" {
		return u, "", fmt.Errorf("empty SIP URI")
	}
	if err := sip.ParseUri(s, &u); err != nil {
		return u, "", fmt.Errorf("invalid SIP URI %q: %w", s, err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "sip" && scheme != "sips" {
		return u, "", fmt.Errorf("invalid SIP URI %q: scheme must be sip or sips", s)
	}
	if u.Host == "" {
		return u, "", fmt.Errorf("invalid SIP URI %q: no host", s)
	}
	if !validHost(u.Host) {
		return u, "", fmt.Errorf("invalid SIP URI %q: bad host %q", s, u.Host)
	}
	if strings.ContainsAny(u.User, " \t\r\n<>\"") {
		return u, "", fmt.Errorf("invalid SIP URI %q: bad user part", s)
	}
	return u, Of(u), nil
}

// validHost accepts host names, IPv4 and bracketed IPv6 literals: the
// characters RFC 3261 25.1 allows in hostport, nothing more.
func validHost(h string) bool {
	if strings.HasPrefix(h, "[") {
		return strings.HasSuffix(h, "]") && len(h) > 2 && strings.Trim(h[1:len(h)-1], "0123456789abcdefABCDEF:.") == ""
	}
	for _, c := range h {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-':
		default:
			return false
		}
	}
	return !strings.HasPrefix(h, ".") && !strings.HasPrefix(h, "-")
}
