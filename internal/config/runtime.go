package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/aor"
	"github.com/sipproxy/sipproxy/internal/pki"
)

// Runtime is a validated configuration made ready to serve: addresses,
// URIs and networks parsed, certificates loaded from their files, a
// self-signed one generated. Load never builds one (validating a file, as
// `sipproxy check` does, reads it and touches nothing else); Provision is
// the step that loads key material and generates keys, once, at start.
type Runtime struct {
	Listeners []ListenerRuntime // server.listen, in order
	TLSClient TLSClientRuntime
	Voicemail []sip.Uri // voicemail.uri, or the entries of voicemail.uris, in order
	Routes    []RouteRuntime
	Peers     []PeerRuntime // peers, in order
}

// ListenerRuntime is a listener ready to bind.
type ListenerRuntime struct {
	Listener
	AddrPort    netip.AddrPort
	Certificate *tls.Certificate // every tls listener; generated when SelfSigned
	ClientCAs   *x509.CertPool   // nil without client_ca
}

// TLSClientRuntime is how next hops are dialled over TLS.
type TLSClientRuntime struct {
	RootCAs            *x509.CertPool   // nil: the system's roots
	Certificate        *tls.Certificate // nil: none presented
	InsecureSkipVerify bool
}

// RouteRuntime is a static route with its next hop parsed.
type RouteRuntime struct {
	Domain  string
	NextHop sip.Uri
}

// PeerRuntime is a trusted peer with its sources as prefixes.
type PeerRuntime struct {
	Peer
	Prefixes []netip.Prefix
}

// Provision builds the Runtime of a configuration Load accepted. It fails
// only on what validation cannot see: a certificate file changed since, a
// key that cannot be generated.
func Provision(c *Config) (*Runtime, error) {
	rt := &Runtime{Voicemail: c.Voicemail.Targets()}
	for i, l := range c.Server.Listen {
		lr := ListenerRuntime{Listener: l}
		ap, err := parseListenAddr(l.Addr)
		if err != nil {
			return nil, fmt.Errorf("server.listen[%d]: %w", i, err)
		}
		lr.AddrPort = ap
		if l.Transport == "tls" {
			if l.SelfSigned {
				cert, err := pki.SelfSigned(selfSignedHosts(l, ap, c.Server.Advertise)...)
				if err != nil {
					return nil, fmt.Errorf("server.listen[%d]: cannot generate a self-signed certificate: %w", i, err)
				}
				lr.Certificate = &cert
			} else if lr.Certificate, err = loadKeyPair(l.Cert, l.Key); err != nil {
				return nil, fmt.Errorf("server.listen[%d]: %w", i, err)
			}
			if l.ClientCA != "" {
				if lr.ClientCAs, err = loadPool(l.ClientCA); err != nil {
					return nil, fmt.Errorf("server.listen[%d].client_ca: %w", i, err)
				}
			}
		}
		rt.Listeners = append(rt.Listeners, lr)
	}
	tc := c.Server.TLSClient
	rt.TLSClient.InsecureSkipVerify = tc.InsecureSkipVerify
	var err error
	if tc.CA != "" {
		if rt.TLSClient.RootCAs, err = loadPool(tc.CA); err != nil {
			return nil, fmt.Errorf("server.tls_client.ca: %w", err)
		}
	}
	if tc.Cert != "" {
		if rt.TLSClient.Certificate, err = loadKeyPair(tc.Cert, tc.Key); err != nil {
			return nil, fmt.Errorf("server.tls_client: %w", err)
		}
	}
	for i, r := range c.Routes {
		u, _, err := aor.Parse(r.NextHop)
		if err != nil {
			return nil, fmt.Errorf("routes[%d].next_hop: %w", i, err)
		}
		rt.Routes = append(rt.Routes, RouteRuntime{Domain: r.Domain, NextHop: u})
	}
	for i, p := range c.Peers {
		pr := PeerRuntime{Peer: p}
		for _, src := range p.Sources {
			pfx, err := netip.ParsePrefix(src)
			if err != nil {
				return nil, fmt.Errorf("peers[%d].sources: %w", i, err)
			}
			pr.Prefixes = append(pr.Prefixes, pfx)
		}
		rt.Peers = append(rt.Peers, pr)
	}
	return rt, nil
}

// Targets are the voicemail servers in order: voicemail.uri, or every
// entry of voicemail.uris; none without voicemail. Load has checked every
// entry, so none is dropped.
func (v Voicemail) Targets() []sip.Uri {
	list := v.URIs
	if v.URI != "" {
		list = []string{v.URI}
	}
	var out []sip.Uri
	for _, s := range list {
		if u, _, err := aor.Parse(s); err == nil {
			out = append(out, u)
		}
	}
	return out
}

// selfSignedHosts are the names a listener's self-signed certificate is
// valid for: localhost, its address unless a wildcard, its advertised names.
func selfSignedHosts(l Listener, ap netip.AddrPort, advertise string) []string {
	hosts := []string{"localhost"}
	if ip := ap.Addr().WithZone(""); !ip.IsUnspecified() {
		hosts = append(hosts, ip.String())
	}
	for _, h := range []string{l.Advertise, advertise} {
		if h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// Config is the TLS client configuration towards Redis, its CA bundle and
// client certificate loaded from their files; nil when TLS is off.
func (t StateTLS) Config() (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	var err error
	if t.CA != "" {
		if tc.RootCAs, err = loadPool(t.CA); err != nil {
			return nil, fmt.Errorf("state.tls.ca: %w", err)
		}
	}
	if t.Cert != "" {
		pair, err := loadKeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("state.tls: %w", err)
		}
		tc.Certificates = []tls.Certificate{*pair}
	}
	return tc, nil
}
