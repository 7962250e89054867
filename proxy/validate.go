package proxy

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// validate applies RFC 3261 16.3 and our size limits. It answers the request
// itself and returns false when the request must go no further.
func (s *Server) validate(r *request) bool {
	req := r.Request
	if reason, text, bad := malformedHeader(req.Headers()); bad {
		s.malformedRequest(r, reason, text)
		return false
	}
	if len(req.Headers()) > s.cfg.Limits.MaxHeaders {
		s.m.Throttled.WithLabelValues("header_count").Inc()
		s.reply(r, sip.StatusBadRequest, "Too Many Headers")
		return false
	}
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil {
		s.reply(r, sip.StatusBadRequest, "Missing Mandatory Header")
		return false
	}
	if v := req.SipVersion; !strings.EqualFold(v, "SIP/2.0") && isVersion(v) {
		s.reply(r, 505, "Version Not Supported")
		return false
	}
	if ok, why := wellFormed(req); !ok {
		s.reply(r, sip.StatusBadRequest, why)
		return false
	}
	if req.CSeq().MethodName != req.Method {
		s.reply(r, sip.StatusBadRequest, "CSeq Method Mismatch")
		return false
	}
	// 16.3 step 2: URI scheme.
	switch strings.ToLower(req.Recipient.Scheme) {
	case "sip", "sips":
	default:
		s.reply(r, 416, "Unsupported URI Scheme")
		return false
	}
	// RFC 3581: note where the request really came from, so responses and
	// later hops find the way back through NAT.
	s.stampVia(r)

	// 16.3 step 3: Max-Forwards.
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		if req.Method == sip.OPTIONS && s.addressedToUs(req) {
			return true // 16.3: a proxy MAY answer OPTIONS with Max-Forwards 0 itself
		}
		s.reply(r, sip.StatusTooManyHops, "Too Many Hops")
		return false
	}
	// 16.3 step 4: loop detection.
	if s.looped(r) {
		s.reply(r, sip.StatusLoopDetected, "Loop Detected")
		return false
	}
	// 16.3 step 5: Proxy-Require. We support no extensions that proxies must.
	if vals := headerValues(req, "Proxy-Require"); len(vals) > 0 {
		s.replyWith(r, sip.StatusBadExtension, "Bad Extension", sip.NewHeader("Unsupported", strings.Join(vals, ", ")))
		return false
	}
	return true
}

// stampVia adds received and rport to the top Via (RFC 3261 18.2.1, RFC 3581 4).
func (s *Server) stampVia(r *request) {
	via := r.Via()
	if !r.in.Source.IsValid() {
		return
	}
	src := r.in.Source.Addr()
	sentBy, err := netip.ParseAddr(strings.Trim(via.Host, "[]"))
	rport, hasRport := via.Params.Get("rport")
	hasRport = hasRport && rport == ""
	if err != nil || sentBy.Unmap() != src || hasRport {
		via.Params.Add("received", src.String())
	}
	if hasRport {
		via.Params.Add("rport", strconv.Itoa(int(r.in.Source.Port())))
	}
}

// branchPrefix marks our branches; the loop hash follows it (RFC 3261 16.6
// step 8: "the proxy MAY ... include a value that can be used for loop
// detection").
const branchPrefix = sip.RFC3261BranchMagicCookie + "sp"

// loopHash covers the fields 16.3 step 4 names as invariant along a loop
// (Request-URI, From tag, To tag, Call-ID, CSeq, Route, Proxy-Require) as
// they arrived at us: a request that comes back unchanged has the same hash,
// a spiral (retargeted elsewhere) does not. FNV-1a, computed without
// allocating: it runs for every request.
func loopHash(req *sip.Request) string {
	h := fnv1a(fnvOffset, req.Recipient.Scheme)
	h = fnv1a(h, req.Recipient.User)
	h = fnv1a(h, req.Recipient.Host)
	h = fnv1a(h, strconv.Itoa(req.Recipient.Port))
	for _, p := range req.Recipient.UriParams {
		h = fnv1a(fnv1a(h, p.K), p.V)
	}
	if f := req.From(); f != nil {
		tag, _ := f.Params.Get("tag")
		h = fnv1a(h, tag)
	}
	if t := req.To(); t != nil {
		tag, _ := t.Params.Get("tag")
		h = fnv1a(h, tag)
	}
	if c := req.CallID(); c != nil {
		h = fnv1a(h, string(*c))
	}
	if c := req.CSeq(); c != nil {
		h ^= uint64(c.SeqNo)
		h *= fnvPrime
	}
	for _, hdr := range req.Headers() {
		switch rt := hdr.(type) {
		case *sip.RouteHeader:
			h = fnv1a(fnv1a(h, rt.Address.User), rt.Address.Host)
			h ^= uint64(rt.Address.Port)
			h *= fnvPrime
		default:
			if strings.EqualFold(hdr.Name(), "Proxy-Require") {
				h = fnv1a(h, hdr.Value())
			}
		}
	}
	var buf [13]byte
	return string(strconv.AppendUint(buf[:0], h, 36))
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnv1a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	// A separator, so that ("ab","c") and ("a","bc") differ.
	h ^= 0xff
	h *= fnvPrime
	return h
}

// newBranch makes an RFC 3261 branch carrying the loop hash of the incoming request.
func newBranch(hash string) string {
	return branchPrefix + hash + "." + sip.GenerateBranchN(12)[len(sip.RFC3261BranchMagicCookie):]
}

// looped reports whether one of our own Via entries carries this request's
// loop hash: it has been through us before in this very shape.
func (s *Server) looped(r *request) bool {
	req := r.Request
	hash := r.loopHash()
	for _, h := range req.Headers() {
		via, ok := h.(*sip.ViaHeader)
		if !ok || !s.router.IsOurAddress(via.Host, via.Port, via.Transport) {
			continue
		}
		b, _ := via.Params.Get("branch")
		rest, ok := strings.CutPrefix(b, branchPrefix)
		if !ok {
			continue
		}
		if got, _, _ := strings.Cut(rest, "."); got == hash {
			return true
		}
	}
	return false
}
