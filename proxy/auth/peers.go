package auth

import (
	"net/netip"
	"strings"

	"github.com/sipproxy/sipproxy/internal/config"
)

// Peers matches requests to the configured trusted peers.
type Peers struct {
	peers []peer
}

// peer is a config.Peer prepared for matching.
type peer struct {
	conf       *config.Peer
	bySource   bool // the peer lists sources: the packet must come from one
	prefixes   []netip.Prefix
	tlsNames   []string
	byCertName bool // the peer lists tls_names: TLS with one of them is required
}

// NewPeers prepares peers, in configuration order, for Match. Source matching
// uses the Prefixes config.Provision derives from Sources: a peer that lists
// sources but has no prefixes never matches (it fails closed). The returned
// *config.Peer values point into peers, which must not change afterwards.
func NewPeers(peers []config.PeerRuntime) *Peers {
	p := &Peers{peers: make([]peer, 0, len(peers))}
	for i := range peers {
		c := &peers[i]
		e := peer{
			conf:       &c.Peer,
			bySource:   len(c.Sources) > 0 || len(c.Prefixes) > 0,
			byCertName: len(c.TLSNames) > 0,
			tlsNames:   c.TLSNames,
		}
		for _, pfx := range c.Prefixes {
			e.prefixes = append(e.prefixes, unmapPrefix(pfx))
		}
		p.peers = append(p.peers, e)
	}
	return p
}

// Match returns the first peer, in configuration order, that a request
// received from src over transport ("udp", "tcp", "tls"; case-insensitive)
// with a verified client certificate carrying certNames (see
// CertificateNames; nil without one) comes from:
//
//   - a peer with sources and tls_names needs both: src in one of its
//     prefixes, and TLS with a certificate name equal (case-insensitive) to
//     one of its tls_names;
//   - a peer with only sources matches src on any transport;
//   - a peer with only tls_names needs TLS with a matching name.
//
// IPv4-mapped IPv6 addresses match IPv4 prefixes. Names match exactly, not
// as wildcards.
func (p *Peers) Match(src netip.Addr, transport string, certNames []string) (*config.Peer, bool) {
	if p == nil {
		return nil, false
	}
	src = src.Unmap()
	tls := strings.EqualFold(transport, "tls")
	for i := range p.peers {
		e := &p.peers[i]
		if !e.bySource && !e.byCertName {
			continue
		}
		if e.bySource && !containsAddr(e.prefixes, src) {
			continue
		}
		if e.byCertName && (!tls || !anyNameEqual(e.tlsNames, certNames)) {
			continue
		}
		return e.conf, true
	}
	return nil, false
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) into
// the IPv4 prefix it covers, so that it matches unmapped addresses.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

func containsAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func anyNameEqual(want, have []string) bool {
	for _, w := range want {
		for _, h := range have {
			if strings.EqualFold(w, h) {
				return true
			}
		}
	}
	return false
}
