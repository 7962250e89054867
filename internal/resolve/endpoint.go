package resolve

import (
	"net"
	"strconv"
)

// Endpoint is one address a request may be sent to.
type Endpoint struct {
	Host      string // an IP literal, without brackets
	Port      int    // never 0: the SRV port, the URI's, or the transport's default
	Transport string // "udp", "tcp" or "tls"
	// Name is the host of the URI the endpoint was resolved from. For TLS
	// it is the name the server's certificate must match (RFC 5922 4: the
	// domain of the URI, not an SRV target, which DNS alone vouches for).
	Name string
	// SRV is the SRV target the address belongs to ("" without SRV), for
	// logs.
	SRV string
}

// Addr is host:port, ready to dial.
func (e Endpoint) Addr() string {
	return net.JoinHostPort(e.Host, strconv.Itoa(e.Port))
}

// Key is "transport:host:port" (an IPv6 host in brackets): what identifies
// an endpoint in health state and the target label of metrics.
func (e Endpoint) Key() string {
	return e.Transport + ":" + e.Addr()
}

// String is Key, with the name it was resolved from when that is not the
// address itself, for logs.
func (e Endpoint) String() string {
	if e.Name == "" || e.Name == e.Host {
		return e.Key()
	}
	return e.Key() + " (" + e.Name + ")"
}
