package proxy

import (
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/aor"
)

// Kind is where the route stage sends a request.
type Kind int

const (
	KindReject    Kind = iota // answered by the proxy with an error
	KindRegister              // REGISTER for one of our domains: the registrar
	KindSelf                  // addressed to the proxy itself (OPTIONS ping)
	KindVoicemail             // Request-URI with opaque=app:voicemail: the UM server
	KindLocal                 // a local user: bindings, through the forwarding plan
	KindStatic                // another domain: a configured next hop
	KindRouteSet              // a Route header (dialog route set or preloaded route) names the next hop
)

func (k Kind) String() string {
	return [...]string{"reject", "register", "self", "voicemail", "local", "static", "route-set"}[k]
}

// Target is one place a request is sent: the Request-URI it carries and the
// address, transport and (optionally) flow it travels on.
type Target struct {
	URI       sip.Uri // Request-URI of the forwarded request
	Host      string  // next hop host (name or IP)
	Port      int     // 0: default for the transport
	Transport string  // "udp", "tcp", "tls"
	Flow      *Flow   // deliver over this flow when it is still open
}

// Decision is the route stage's verdict.
type Decision struct {
	Kind    Kind
	AOR     string   // KindLocal, KindRegister, KindVoicemail: the user concerned
	Targets []Target // KindVoicemail, KindStatic, KindRouteSet: the next hop
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
		t, ok := targetFromURI(rt.Address, "")
		if !ok {
			return rejectWith(sip.StatusBadRequest, "Bad Route")
		}
		t.URI = req.Recipient // loose routing: the Request-URI travels unchanged
		return Decision{Kind: KindRouteSet, Targets: []Target{t}}
	}
	if inDialog(req) {
		// The route set is exhausted: the Request-URI is the remote target,
		// reached over the flow our Record-Route names when there is one.
		t, ok := targetFromURI(req.Recipient, "")
		if !ok {
			return rejectWith(sip.StatusBadRequest, "Bad Request-URI")
		}
		if egress != nil && egress.valid() {
			t.Flow = egress
		}
		return Decision{Kind: KindRouteSet, Targets: []Target{t}}
	}

	uri := req.Recipient
	local := s.isLocalHost(uri.Host, uri.Port)
	if req.Method == sip.REGISTER {
		to := req.To().Address
		if !local || !s.isOurDomain(to.Host) || to.User == "" {
			return rejectWith(sip.StatusForbidden, "Not Our Domain")
		}
		return Decision{Kind: KindRegister, AOR: aor.Of(to)}
	}
	if local && uri.User == "" {
		if req.Method == sip.OPTIONS {
			return Decision{Kind: KindSelf}
		}
		return rejectWith(sip.StatusNotFound, "Not Found")
	}
	if local {
		user := s.localAOR(uri)
		if aor.IsMailbox(uri) {
			if s.cfg.Voicemail.URI == "" {
				return rejectWith(sip.StatusNotFound, "No Voicemail Server")
			}
			t, ok := targetFromURI(s.cfg.Voicemail.Parsed, "")
			if !ok {
				return rejectWith(sip.StatusInternalServerError, "Bad Voicemail URI")
			}
			t.URI = uri // UM reads the mailbox from the Request-URI: keep it.
			return Decision{Kind: KindVoicemail, AOR: user, Targets: []Target{t}}
		}
		if !s.users[uri.User] {
			return rejectWith(sip.StatusNotFound, "Not Found")
		}
		return Decision{Kind: KindLocal, AOR: user}
	}
	for _, rt := range s.cfg.Routes {
		if rt.Domain != "*" && !strings.EqualFold(rt.Domain, uri.Host) {
			continue
		}
		// Never an open relay: only our users and trusted peers reach other domains.
		if !r.id.Authenticated() {
			return rejectWith(sip.StatusForbidden, "Relaying Denied")
		}
		t, ok := targetFromURI(rt.Parsed, "")
		if !ok {
			return rejectWith(sip.StatusInternalServerError, "Bad Route")
		}
		t.URI = uri
		return Decision{Kind: KindStatic, Targets: []Target{t}}
	}
	return rejectWith(sip.StatusNotFound, "Not Found")
}

// localAOR names a local user with our primary spelling of the domain when
// the request used one of our addresses instead of a domain name.
func (s *Server) localAOR(u sip.Uri) string {
	if s.domain[strings.ToLower(u.Host)] {
		return aor.Of(u)
	}
	return u.User + "@" + strings.ToLower(s.cfg.Server.Domains[0])
}

// targetFromURI derives next hop address and transport from a SIP URI
// (RFC 3263 without DNS NAPTR: the transport parameter, sips implies TLS,
// otherwise fallback, otherwise UDP).
func targetFromURI(u sip.Uri, fallback string) (Target, bool) {
	if u.Host == "" {
		return Target{}, false
	}
	t := Target{URI: u, Host: u.Host, Port: u.Port}
	if v, ok := u.UriParams.Get("transport"); ok && v != "" {
		t.Transport = strings.ToLower(v)
	} else if fallback != "" {
		t.Transport = fallback
	} else {
		t.Transport = "udp"
	}
	if strings.EqualFold(u.Scheme, "sips") {
		t.Transport = "tls"
	}
	switch t.Transport {
	case "udp", "tcp", "tls":
	default:
		return Target{}, false
	}
	if h, ok := strings.CutPrefix(t.Host, "["); ok {
		t.Host = strings.TrimSuffix(h, "]")
	}
	return t, true
}

func (t Target) addr() string {
	port := t.Port
	if port == 0 {
		port = sip.DefaultPort(t.Transport)
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(port))
}

// isOurDomain: one of the configured domains (names, not addresses).
func (s *Server) isOurDomain(host string) bool { return s.domain[strings.ToLower(host)] }

// isLocalHost: one of our domains, or one of our own listener addresses.
func (s *Server) isLocalHost(host string, port int) bool {
	if s.domain[strings.ToLower(host)] {
		return true
	}
	return s.isOurAddress(host, port, "")
}

// isOurAddress reports whether host:port names one of our listeners.
func (s *Server) isOurAddress(host string, port int, transport string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	transport = strings.ToLower(transport)
	for _, l := range s.listeners {
		// A transport named must be the listener's: our UDP port number
		// may well be someone else's TLS port on the same host.
		if transport != "" && transport != l.transport {
			continue
		}
		p := port
		if p == 0 {
			p = sip.DefaultPort(l.transport)
		}
		if p != l.port {
			continue
		}
		if strings.EqualFold(host, l.host) || host == l.bound.Addr().String() {
			return true
		}
	}
	// On a transport we dial but do not listen on, our Via and Record-Route
	// name listenerFor's stand-in: our host, that transport's default port.
	if _, listening := s.byTrans[transport]; transport != "" && !listening {
		if port == 0 || port == sip.DefaultPort(transport) {
			for _, l := range s.listeners {
				if strings.EqualFold(host, l.host) || host == l.bound.Addr().String() {
					return true
				}
			}
		}
	}
	return false
}

// addressedToUs: a Request-URI naming the proxy itself rather than a user.
func (s *Server) addressedToUs(req *sip.Request) bool {
	return req.Recipient.User == "" && s.isLocalHost(req.Recipient.Host, req.Recipient.Port)
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
		if rt == nil || !s.routeNamesUs(rt.Address) {
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

// routeNamesUs: a Route URI naming one of our listeners, or one of our
// domains (16.4: "this proxy or a domain it is responsible for"), as a
// client with the domain as its outbound proxy preloads it. A domain with
// a port counts only on a port we listen on.
func (s *Server) routeNamesUs(u sip.Uri) bool {
	if s.isOurAddress(u.Host, u.Port, transportParam(u)) {
		return true
	}
	if u.User != "" || !s.isOurDomain(u.Host) {
		return false
	}
	if u.Port == 0 {
		return true
	}
	for _, l := range s.listeners {
		if l.port == u.Port {
			return true
		}
	}
	return false
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

func transportParam(u sip.Uri) string {
	if v, ok := u.UriParams.Get("transport"); ok {
		return v
	}
	if strings.EqualFold(u.Scheme, "sips") {
		return "tls"
	}
	return ""
}
