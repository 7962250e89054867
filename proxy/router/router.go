package router

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/aor"
)

// Kind is where a request goes.
type Kind int

const (
	KindReject    Kind = iota // answered by the proxy with an error
	KindRegister              // REGISTER for one of our domains: the registrar
	KindSelf                  // addressed to the proxy itself (OPTIONS ping)
	KindVoicemail             // a mailbox (opaque=app:voicemail) of ours: the UM targets
	KindLocal                 // one of our users: their bindings, through the forwarding plan
	KindStatic                // another domain: a configured next hop
	KindRouteSet              // a Route header (dialog route set or preloaded route) names the next hop
)

func (k Kind) String() string {
	return [...]string{"reject", "register", "self", "voicemail", "local", "static", "route-set"}[k]
}

// Listener is one address the proxy serves SIP on, as it names itself.
type Listener struct {
	Transport string         // "udp", "tcp", "tls"
	Host      string         // advertised host (Via, Record-Route)
	Port      int            // bound port
	Bound     netip.AddrPort // bound address
}

// Route sends requests for a domain to a next hop; "*" matches every domain.
type Route struct {
	Domain  string
	NextHop sip.Uri
}

// Peer is what the router knows of a trusted peer: the names and networks
// that make a host one of them (a redirect is followed only to a peer).
type Peer struct {
	Name     string
	Names    []string // tls_names
	Prefixes []netip.Prefix
}

// Config is the router's slice of the configuration.
type Config struct {
	Domains   []string  // ours; the first is the primary spelling
	Users     []string  // local users (user parts)
	Voicemail []sip.Uri // UM targets, in order of preference; none: no voicemail
	Routes    []Route   // first match wins
	Peers     []Peer
	Listeners []Listener
}

// Router is the routing decision, built once.
type Router struct {
	domains   map[string]bool
	primary   string
	users     map[string]bool
	voicemail []Target
	routes    []route
	peers     []Peer
	listeners []Listener
	listening map[string]bool // transports we listen on
}

type route struct {
	domain string // lower case, or "*"
	hop    Target
}

// New builds a Router. Every URI must name a host and a known transport;
// config.Load has checked that already, so an error here is a bug upstream.
func New(c Config) (*Router, error) {
	if len(c.Domains) == 0 {
		return nil, fmt.Errorf("router: no domain")
	}
	r := &Router{
		domains:   make(map[string]bool, len(c.Domains)),
		primary:   strings.ToLower(c.Domains[0]),
		users:     make(map[string]bool, len(c.Users)),
		peers:     c.Peers,
		listeners: c.Listeners,
		listening: make(map[string]bool),
	}
	for _, d := range c.Domains {
		r.domains[strings.ToLower(d)] = true
	}
	for _, u := range c.Users {
		r.users[u] = true
	}
	for _, u := range c.Voicemail {
		t, ok := TargetOf(u, "")
		if !ok {
			return nil, fmt.Errorf("router: voicemail target %q: no host or unknown transport", u.String())
		}
		t.Voicemail, t.Pool = true, PoolVoicemail
		r.voicemail = append(r.voicemail, t)
	}
	for _, rt := range c.Routes {
		t, ok := TargetOf(rt.NextHop, "")
		if !ok {
			return nil, fmt.Errorf("router: next hop %q: no host or unknown transport", rt.NextHop.String())
		}
		r.routes = append(r.routes, route{domain: strings.ToLower(rt.Domain), hop: t})
	}
	for _, l := range c.Listeners {
		r.listening[l.Transport] = true
	}
	return r, nil
}

// WithListeners returns a copy of the router that knows the addresses the
// proxy is bound to (known only once the sockets are: port 0).
func (r *Router) WithListeners(ls []Listener) *Router {
	c := *r
	c.listeners = ls
	c.listening = make(map[string]bool)
	for _, l := range ls {
		c.listening[l.Transport] = true
	}
	return &c
}

// Location is where Locate sends a URI.
type Location struct {
	Kind Kind
	// AOR is the user concerned (KindLocal, KindVoicemail), spelled in our
	// primary domain when the URI used one of our addresses, so that rules,
	// bindings and policy see one name whatever the caller dialled.
	AOR string
	// Known is false for KindLocal when no such user exists. Who may learn
	// that is the caller's decision (user enumeration): the location is
	// otherwise the same as an existing user's without bindings.
	Known   bool
	Targets []Target // KindVoicemail, KindStatic: next hops, in order, with the URI as Request-URI

	Code   int // KindReject
	Reason string
}

// Reject is a location the proxy answers itself.
func Reject(code int, reason string) Location {
	return Location{Kind: KindReject, Code: code, Reason: reason}
}

// Locate says where a request for u goes: the proxy itself, a mailbox on
// the voicemail servers, one of our users, or another domain's next hop.
func (r *Router) Locate(u sip.Uri) Location {
	if !r.IsLocal(u.Host, u.Port) {
		for _, rt := range r.routes {
			if rt.domain == "*" || strings.EqualFold(rt.domain, u.Host) {
				return Location{Kind: KindStatic, Targets: []Target{rt.hop.For(u)}}
			}
		}
		return Reject(sip.StatusNotFound, "Not Found")
	}
	if u.User == "" {
		return Location{Kind: KindSelf}
	}
	user := r.AOR(u)
	if aor.IsMailbox(u) {
		if len(r.voicemail) == 0 {
			return Reject(sip.StatusNotFound, "No Voicemail Server")
		}
		ts := make([]Target, len(r.voicemail))
		for i, t := range r.voicemail {
			ts[i] = t.For(u) // UM reads the mailbox from the Request-URI: keep it
		}
		return Location{Kind: KindVoicemail, AOR: user, Known: r.users[u.User], Targets: ts}
	}
	return Location{Kind: KindLocal, AOR: user, Known: r.users[u.User]}
}

// AOR names a user of ours with our primary spelling of the domain when
// the URI used one of our addresses instead of a domain name.
func (r *Router) AOR(u sip.Uri) string {
	if r.domains[strings.ToLower(u.Host)] {
		return aor.Of(u)
	}
	return u.User + "@" + r.primary
}

// Primary is our first domain, the one addresses stand for.
func (r *Router) Primary() string { return r.primary }

// IsOurDomain: one of the configured domains (names, not addresses).
func (r *Router) IsOurDomain(host string) bool { return r.domains[strings.ToLower(host)] }

// IsLocal: one of our domains, or one of our own listener addresses.
func (r *Router) IsLocal(host string, port int) bool {
	return r.domains[strings.ToLower(host)] || r.IsOurAddress(host, port, "")
}

// IsOurAddress reports whether host:port (on transport, when given) names
// one of our listeners.
func (r *Router) IsOurAddress(host string, port int, transport string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	transport = strings.ToLower(transport)
	for _, l := range r.listeners {
		// A transport named must be the listener's: our UDP port number
		// may well be someone else's TLS port on the same host.
		if transport != "" && transport != l.Transport {
			continue
		}
		p := port
		if p == 0 {
			p = sip.DefaultPort(l.Transport)
		}
		if p == l.Port && l.names(host) {
			return true
		}
	}
	// On a transport we dial but do not listen on, our Via and Record-Route
	// name a stand-in: our host, that transport's default port.
	if transport != "" && !r.listening[transport] && (port == 0 || port == sip.DefaultPort(transport)) {
		for _, l := range r.listeners {
			if l.names(host) {
				return true
			}
		}
	}
	return false
}

func (l Listener) names(host string) bool {
	return strings.EqualFold(host, l.Host) || host == l.Bound.Addr().String()
}

// RouteNamesUs: a Route URI naming one of our listeners, or one of our
// domains (RFC 3261 16.4: "this proxy or a domain it is responsible for"),
// as a client with the domain as its outbound proxy preloads it. A domain
// with a port counts only on a port we listen on.
func (r *Router) RouteNamesUs(u sip.Uri) bool {
	if r.IsOurAddress(u.Host, u.Port, TransportParam(u)) {
		return true
	}
	if u.User != "" || !r.IsOurDomain(u.Host) {
		return false
	}
	if u.Port == 0 {
		return true
	}
	for _, l := range r.listeners {
		if l.Port == u.Port {
			return true
		}
	}
	return false
}

// TransportParam is the transport a URI names: its transport parameter, or
// tls for sips; "" when it names none.
func TransportParam(u sip.Uri) string {
	if v, ok := u.UriParams.Get("transport"); ok {
		return v
	}
	if strings.EqualFold(u.Scheme, "sips") {
		return "tls"
	}
	return ""
}

// PeerHost names the trusted peer a host belongs to: one of its tls_names,
// or an address inside one of its sources. Redirects from the voicemail
// servers are followed only to such hosts.
func (r *Router) PeerHost(host string) (string, bool) {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	ip, ipErr := netip.ParseAddr(host)
	for _, p := range r.peers {
		for _, n := range p.Names {
			if strings.EqualFold(n, host) {
				return p.Name, true
			}
		}
		if ipErr != nil {
			continue
		}
		for _, pfx := range p.Prefixes {
			if pfx.Contains(ip.Unmap()) {
				return p.Name, true
			}
		}
	}
	return "", false
}
