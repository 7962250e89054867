package proxy

import (
	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/aor"
	"github.com/sipproxy/sipproxy/proxy/auth"
	"github.com/sipproxy/sipproxy/proxy/router"
)

// The route stage's vocabulary is the router's.
type (
	Kind   = router.Kind
	Target = router.Target
)

const (
	KindReject    = router.KindReject
	KindRegister  = router.KindRegister
	KindSelf      = router.KindSelf
	KindVoicemail = router.KindVoicemail
	KindLocal     = router.KindLocal
	KindStatic    = router.KindStatic
	KindRouteSet  = router.KindRouteSet
)

// Decision is the route stage's verdict: the router's Location for the
// Request-URI, or what the route set and the dialog say.
type Decision struct {
	Kind    Kind
	AOR     string   // KindLocal, KindRegister, KindVoicemail: the user concerned
	Targets []Target // KindVoicemail, KindStatic, KindRouteSet: the next hops, in order
	// egressFlow is the flow named by our Record-Route for the side the
	// request goes to (in-dialog delivery to clients behind NAT).
	egressFlow *Flow

	reject int
	reason string
	extra  []sip.Header
}

func rejectWith(code int, reason string, extra ...sip.Header) Decision {
	return Decision{Kind: KindReject, reject: code, reason: reason, extra: extra}
}

// route decides where a request goes. It changes the request only by
// removing our own Route entries (RFC 3261 16.4).
func (s *Server) route(r *request) Decision {
	req := r.Request
	egress := s.popOurRoutes(req)

	if inDialog(req) && r.id.Authenticated() {
		s.dialogs.touch(r.callID)
	}
	if inDialog(req) && !r.id.Authenticated() {
		// Someone we cannot identify relays only within a dialog we set
		// up, along our Record-Route, to the other party: otherwise a To
		// tag and a Route (or a replayed Route of their own call) would
		// make us an open relay.
		if egress == nil {
			return rejectWith(sip.StatusNotFound, "Not Here")
		}
		next := req.Recipient
		if rt := firstRoute(req); rt != nil {
			next = rt.Address
		}
		if !s.dialogs.allows(r.callID, r.in.Source.Addr(), next) {
			return rejectWith(sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		}
	}
	if rt := firstRoute(req); rt != nil {
		// A route set names the next hop: loose routing (16.6 step 6/7),
		// for our users and peers, or within a dialog (checked above).
		if !r.id.Authenticated() && !inDialog(req) {
			return rejectWith(sip.StatusForbidden, "Relaying Denied")
		}
		t, ok := router.TargetOf(rt.Address, "")
		if !ok {
			return rejectWith(sip.StatusBadRequest, "Bad Route")
		}
		t.URI = req.Recipient // loose routing: the Request-URI travels unchanged
		return Decision{Kind: KindRouteSet, Targets: []Target{t}}
	}
	if inDialog(req) {
		// The route set is exhausted: the Request-URI is the remote target,
		// reached over the flow our Record-Route names when there is one.
		t, ok := router.TargetOf(req.Recipient, "")
		if !ok {
			return rejectWith(sip.StatusBadRequest, "Bad Request-URI")
		}
		if egress != nil && egress.Valid() {
			t.Flow = egress
		}
		return Decision{Kind: KindRouteSet, Targets: []Target{t}}
	}

	if egress != nil && egress.Valid() && r.id.Source == auth.SourcePeer {
		// Another instance of our pool (a peer: same auth.secret, so the
		// token is ours) sends a new request for a client whose flow we
		// hold, named by our Route: deliver it over that flow. Only a
		// peer: a user replaying a token of their own dialog must not
		// steer a new call into someone's connection.
		t, ok := router.TargetOf(req.Recipient, egress.Transport)
		if !ok {
			return rejectWith(sip.StatusBadRequest, "Bad Request-URI")
		}
		t.Flow = egress
		return Decision{Kind: KindRouteSet, Targets: []Target{t}}
	}
	uri := req.Recipient
	if req.Method == sip.REGISTER {
		to := req.To().Address
		if !s.router.IsLocal(uri.Host, uri.Port) || !s.router.IsOurDomain(to.Host) || to.User == "" {
			return rejectWith(sip.StatusForbidden, "Not Our Domain")
		}
		return Decision{Kind: KindRegister, AOR: aor.Of(to)}
	}
	loc := s.router.Locate(uri)
	switch loc.Kind {
	case KindSelf:
		if req.Method != sip.OPTIONS {
			return rejectWith(sip.StatusNotFound, "Not Found")
		}
	case KindLocal:
		// Only our users and peers may learn who exists: to anyone else an
		// unknown user is one who is not reachable right now, answered on
		// the same path as one (a scanner listing users sees no difference).
		if !loc.Known && r.id.Authenticated() {
			return rejectWith(sip.StatusNotFound, "Not Found")
		}
	case KindStatic:
		// Never an open relay: only our users and trusted peers reach other domains.
		if !r.id.Authenticated() {
			return rejectWith(sip.StatusForbidden, "Relaying Denied")
		}
	case KindReject:
		return rejectWith(loc.Code, loc.Reason)
	}
	return Decision{Kind: loc.Kind, AOR: loc.AOR, Targets: loc.Targets}
}

// addressedToUs: a Request-URI naming the proxy itself rather than a user.
func (s *Server) addressedToUs(req *sip.Request) bool {
	return req.Recipient.User == "" && s.router.IsLocal(req.Recipient.Host, req.Recipient.Port)
}

// popOurRoutes removes the Route entries that name us from the top of the
// route set (16.4; two of them after a double Record-Route, RFC 5658) and
// returns the flow carried by the last one removed: the flow towards the
// side this request is travelling to. nil when no Route named us with a
// token valid for this dialog (see flowTokens).
func (s *Server) popOurRoutes(req *sip.Request) *Flow {
	last, popped := "", false
	for {
		rt := firstRoute(req)
		if rt == nil || !s.router.RouteNamesUs(rt.Address) {
			break
		}
		last, _ = rt.Address.UriParams.Get(flowParam)
		popped = true
		req.RemoveHeader("Route")
	}
	// Only the last entry's token counts (it names the side the request
	// goes to): one MAC to check, not one per entry.
	if !popped || last == "" {
		return nil
	}
	fl, ok := s.flows.decode(last, callIDOf(req))
	if !ok {
		return nil
	}
	return &fl
}

func callIDOf(req *sip.Request) string {
	if c := req.CallID(); c != nil {
		return string(*c)
	}
	return ""
}

// firstRoute is the topmost Route, without sipgo's lazy-parse allocation
// when there is none (most requests).
func firstRoute(req *sip.Request) *sip.RouteHeader {
	for _, h := range req.Headers() {
		if rt, ok := h.(*sip.RouteHeader); ok {
			return rt
		}
	}
	return nil
}
