package forwarding

import (
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/rules"
)

// HistoryInfo returns the History-Info header field values (RFC 7044) that
// record a call's diversions, one hi-entry per value, oldest first: the
// original target with index 1, then each hop's new target one level
// deeper (1.1, 1.1.1, ...), carrying the RFC 4458 cause= URI parameter and
// mp= naming the entry it was mapped from. No hops, no entries.
//
//	<sip:alice@contoso.com>;index=1
//	<sip:bob@contoso.com;cause=302>;index=1.1;mp=1
//	<sip:bob@contoso.com;opaque=app:voicemail;cause=408>;index=1.1.1;mp=1.1
func HistoryInfo(original rules.Target, hops []Hop) []string {
	if len(hops) == 0 {
		return nil
	}
	out := make([]string, 0, len(hops)+1)
	index := "1"
	out = append(out, "<"+uriString(original, 0)+">;index="+index)
	for _, h := range hops {
		parent := index
		index += ".1"
		out = append(out, "<"+uriString(h.To, h.Cause)+">;index="+index+";mp="+parent)
	}
	return out
}

// Diversion returns the Diversion header field values (RFC 5806) of a
// call's diversions, most recent first: the diverting user with the reason
// and counter=1 per diversion.
//
//	<sip:bob@contoso.com>;reason=no-answer;counter=1
//	<sip:alice@contoso.com>;reason=unconditional;counter=1
func Diversion(hops []Hop) []string {
	out := make([]string, 0, len(hops))
	for i := len(hops) - 1; i >= 0; i-- {
		h := hops[i]
		out = append(out, "<"+uriString(h.From, 0)+">;reason="+h.Cause.DiversionReason()+";counter=1")
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// uriString renders a target's URI for a name-addr, with cause= set when
// cause is not zero. The URI keeps its parameters (opaque=app:voicemail
// must reach UM); URI headers are dropped, as they have no place in a
// History-Info or Diversion entry built by the proxy.
func uriString(t rules.Target, cause Cause) string {
	if t.Parsed.Host == "" { // not parsed: use the text as written
		s, _, _ := strings.Cut(t.URI, "?")
		if cause != 0 {
			s += ";cause=" + strconv.Itoa(int(cause))
		}
		return s
	}
	u := t.Parsed
	u.Headers = nil
	if cause != 0 {
		u.UriParams = append(sip.HeaderParams(nil), u.UriParams...)
		u.UriParams.Remove("cause")
		u.UriParams.Add("cause", strconv.Itoa(int(cause)))
	}
	return u.String()
}
