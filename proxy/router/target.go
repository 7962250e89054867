package router

import (
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Flow is the path a neighbour reached us on: for TCP and TLS the
// connection (identified by its remote address), for UDP the source
// address. Requests towards a client behind NAT must use it, because the
// Contact it registered is not reachable (RFC 5626 section 3).
type Flow struct {
	Transport string // "udp", "tcp", "tls"
	Remote    string // "ip:port"
}

// Valid reports whether the flow names a transport and a remote address.
func (f Flow) Valid() bool { return f.Transport != "" && f.Remote != "" }

// Target is one place a request is sent: the Request-URI it carries and the
// address, transport and (optionally) flow it travels on.
type Target struct {
	URI       sip.Uri // Request-URI of the forwarded request
	Host      string  // next hop host (name or IP), without brackets
	Port      int     // 0: not given (RFC 3263: SRV for a name, else the transport's default)
	Transport string  // "udp", "tcp", "tls"
	// Explicit: the transport came from the URI (transport parameter or
	// sips), not from a default. RFC 3263 4.1 looks at SRV records only
	// when neither the transport nor the port is given.
	Explicit bool
	Flow     *Flow // deliver over this flow when it is still open
	// Voicemail: the hop is a voicemail (UM) server, a configured one or a
	// peer UM redirected us to; the only hop skip-pin may travel to.
	Voicemail bool
	// Pool names the server pool whose health this target reports to
	// (PoolVoicemail), "" for none.
	Pool string
	// Name, when Host is an address DNS gave for a name, is that name: the
	// one a TLS server there must prove (RFC 5922 4). "" when Host is
	// what was configured or asked for.
	Name string
	// Holder, when set, is the flow of a client whose connection another
	// instance of the pool holds: the request goes to that instance
	// (Host, Port, Transport) with a Route naming it and carrying this
	// flow, and it delivers over its connection (RFC 3327 Path, RFC 5626,
	// in spirit).
	Holder *Flow
}

// PoolVoicemail is the pool of the configured voicemail servers.
const PoolVoicemail = "voicemail"

// TargetOf derives next hop address and transport from a SIP URI (RFC 3263
// without NAPTR: the transport parameter, sips implies TLS, otherwise
// fallback, otherwise UDP). The target's Request-URI is u itself.
func TargetOf(u sip.Uri, fallback string) (Target, bool) {
	if u.Host == "" {
		return Target{}, false
	}
	t := Target{URI: u, Host: u.Host, Port: u.Port}
	if v, ok := u.UriParams.Get("transport"); ok && v != "" {
		t.Transport, t.Explicit = strings.ToLower(v), true
	} else if fallback != "" {
		t.Transport = fallback
	} else {
		t.Transport = "udp"
	}
	if strings.EqualFold(u.Scheme, "sips") {
		t.Transport, t.Explicit = "tls", true
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

// Addr is host:port, with the transport's default port when none is given.
func (t Target) Addr() string {
	port := t.Port
	if port == 0 {
		port = sip.DefaultPort(t.Transport)
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(port))
}

// For returns the target with u as its Request-URI: the next hop stays
// where it was configured, the request names whom it is for.
func (t Target) For(u sip.Uri) Target {
	t.URI = u
	return t
}
