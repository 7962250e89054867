package proxy

import (
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// validate applies RFC 3261 16.3 and our size limits. It answers the request
// itself and returns false when the request must go no further.
func (s *Server) validate(r *request) bool {
	req := r.Request
	if len(req.Headers()) > s.cfg.Limits.MaxHeaders {
		s.m.Throttled.WithLabelValues("header_count").Inc()
		s.reply(r, sip.StatusBadRequest, "Too Many Headers")
		return false
	}
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil {
		s.reply(r, sip.StatusBadRequest, "Missing Mandatory Header")
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
	if s.looped(req) {
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
	ip := r.in.Source.Addr().String()
	if via.Host != ip {
		via.Params.Add("received", ip)
	}
	if v, ok := via.Params.Get("rport"); ok && v == "" {
		via.Params.Add("rport", strconv.Itoa(int(r.in.Source.Port())))
		if via.Host == ip {
			via.Params.Add("received", ip)
		}
	}
}

// branchPrefix marks our branches; the loop hash follows it (RFC 3261 16.6
// step 8: "the proxy MAY ... include a value that can be used for loop
// detection").
const branchPrefix = sip.RFC3261BranchMagicCookie + "sp"

// loopHash covers the fields 16.3 step 4 names as invariant along a loop
// (Request-URI, From tag, To tag, Call-ID, CSeq, Route, Proxy-Require) as
// they arrived at us: a request that comes back unchanged has the same hash,
// a spiral (retargeted elsewhere) does not.
func loopHash(req *sip.Request) string {
	h := fnv.New64a()
	h.Write([]byte(req.Recipient.String()))
	if f := req.From(); f != nil {
		tag, _ := f.Params.Get("tag")
		h.Write([]byte(tag))
	}
	if t := req.To(); t != nil {
		tag, _ := t.Params.Get("tag")
		h.Write([]byte(tag))
	}
	if c := req.CallID(); c != nil {
		h.Write([]byte(c.Value()))
	}
	if c := req.CSeq(); c != nil {
		h.Write([]byte(strconv.FormatUint(uint64(c.SeqNo), 10)))
	}
	for _, name := range [...]string{"Route", "Proxy-Require"} {
		for _, v := range req.GetHeaders(name) {
			h.Write([]byte(v.Value()))
		}
	}
	return strconv.FormatUint(h.Sum64(), 36)
}

// newBranch makes an RFC 3261 branch carrying the loop hash of the incoming request.
func newBranch(hash string) string {
	return branchPrefix + hash + "." + sip.GenerateBranchN(12)[len(sip.RFC3261BranchMagicCookie):]
}

// looped reports whether one of our own Via entries carries this request's
// loop hash: it has been through us before in this very shape.
func (s *Server) looped(req *sip.Request) bool {
	var hash string
	for _, h := range req.GetHeaders("Via") {
		via, ok := h.(*sip.ViaHeader)
		if !ok || !s.isOurAddress(via.Host, via.Port, via.Transport) {
			continue
		}
		b, _ := via.Params.Get("branch")
		rest, ok := strings.CutPrefix(b, branchPrefix)
		if !ok {
			continue
		}
		if hash == "" {
			hash = loopHash(req)
		}
		if got, _, _ := strings.Cut(rest, "."); got == hash {
			return true
		}
	}
	return false
}
