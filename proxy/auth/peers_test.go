package auth

import (
	"net/netip"
	"testing"

	"github.com/sipproxy/sipproxy/internal/config"
)

func testPeers() []config.PeerRuntime {
	p := func(name string, sources []string, tlsNames []string) config.PeerRuntime {
		c := config.PeerRuntime{Peer: config.Peer{Name: name, Sources: sources, TLSNames: tlsNames}}
		for _, s := range sources {
			c.Prefixes = append(c.Prefixes, netip.MustParsePrefix(s))
		}
		return c
	}
	// broken lists sources that were never turned into prefixes.
	broken := config.PeerRuntime{Peer: config.Peer{Name: "broken", Sources: []string{"198.51.100.1/32"}, TLSNames: []string{"broken.example"}}}
	return []config.PeerRuntime{
		p("exchange-um", []string{"10.0.0.5/32"}, []string{"um.contoso.com", "UM2.contoso.com"}),
		p("gateway", []string{"192.0.2.0/24"}, nil),
		p("gateway-shadow", []string{"192.0.2.7/32"}, nil),
		p("edge", nil, []string{"edge.fabrikam.com"}),
		p("v6", []string{"2001:db8::/32"}, nil),
		p("mapped", []string{"::ffff:203.0.113.0/120"}, nil),
		broken,
		{Peer: config.Peer{Name: "nothing"}},
		p("um-any-transport", []string{"10.0.0.5/32"}, nil),
	}
}

func TestPeersMatch(t *testing.T) {
	tests := []struct {
		name      string
		src       string // "" = invalid address
		transport string
		names     []string
		want      string // peer name; "" = no match
	}{
		{"sources and name over tls", "10.0.0.5", "tls", []string{"um.contoso.com"}, "exchange-um"},
		{"name case-insensitive", "10.0.0.5", "TLS", []string{"um2.CONTOSO.com"}, "exchange-um"},
		{"any of several names", "10.0.0.5", "tls", []string{"x.example", "um.contoso.com"}, "exchange-um"},
		{"right name, wrong source", "10.0.0.6", "tls", []string{"um.contoso.com"}, ""},
		{"right source, wrong name falls through", "10.0.0.5", "tls", []string{"gw.contoso.com"}, "um-any-transport"},
		{"right source, no certificate falls through", "10.0.0.5", "tls", nil, "um-any-transport"},
		{"right source and name over tcp falls through", "10.0.0.5", "tcp", []string{"um.contoso.com"}, "um-any-transport"},
		{"source only, udp", "192.0.2.7", "udp", nil, "gateway"},
		{"source only, tls with a certificate", "192.0.2.200", "tls", []string{"whatever"}, "gateway"},
		{"first match wins", "192.0.2.7", "tcp", nil, "gateway"},
		{"source outside prefix", "192.0.3.1", "udp", nil, ""},
		{"ipv4-mapped source", "::ffff:192.0.2.9", "tcp", nil, "gateway"},
		{"ipv4-mapped source and name", "::ffff:10.0.0.5", "tls", []string{"um.contoso.com"}, "exchange-um"},
		{"ipv6 source", "2001:db8::1", "tcp", nil, "v6"},
		{"ipv6 source outside", "2001:db9::1", "tcp", nil, ""},
		{"ipv4-mapped prefix, ipv4 source", "203.0.113.9", "udp", nil, "mapped"},
		{"ipv4-mapped prefix, mapped source", "::ffff:203.0.113.9", "udp", nil, "mapped"},
		{"name only over tls, any source", "198.18.0.1", "tls", []string{"edge.fabrikam.com"}, "edge"},
		{"name only over tls, no source", "", "tls", []string{"edge.fabrikam.com"}, "edge"},
		{"name only over tcp", "198.18.0.1", "tcp", []string{"edge.fabrikam.com"}, ""},
		{"name is not a wildcard", "198.18.0.1", "tls", []string{"*.fabrikam.com"}, ""},
		{"name is not a suffix", "198.18.0.1", "tls", []string{"fabrikam.com"}, ""},
		{"sources without prefixes fail closed", "198.51.100.1", "tls", []string{"broken.example"}, ""},
		{"sources without prefixes, name elsewhere", "198.18.0.1", "tls", []string{"broken.example"}, ""},
		{"invalid source", "", "udp", nil, ""},
	}
	ps := NewPeers(testPeers())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var src netip.Addr
			if tt.src != "" {
				src = netip.MustParseAddr(tt.src)
			}
			got, ok := ps.Match(src, tt.transport, tt.names)
			if ok != (tt.want != "") || ok != (got != nil) {
				t.Fatalf("Match(%s, %s, %q) = %v, %v, want %q", tt.src, tt.transport, tt.names, got, ok, tt.want)
			}
			if ok && got.Name != tt.want {
				t.Errorf("Match(%s, %s, %q) = %q, want %q", tt.src, tt.transport, tt.names, got.Name, tt.want)
			}
		})
	}
}

func TestPeersMatchReturnsConfigPeer(t *testing.T) {
	peers := testPeers()
	peers[1].TrustSkipPin = true
	got, ok := NewPeers(peers).Match(netip.MustParseAddr("192.0.2.1"), "tls", nil)
	if !ok || got != &peers[1].Peer || !got.TrustSkipPin {
		t.Errorf("Match = %p (%+v), %v; want the configured peer %p", got, got, ok, &peers[1].Peer)
	}
}

func TestPeersEmpty(t *testing.T) {
	for _, ps := range []*Peers{nil, NewPeers(nil)} {
		if got, ok := ps.Match(netip.MustParseAddr("10.0.0.5"), "tls", []string{"um.contoso.com"}); ok || got != nil {
			t.Errorf("Match on %v = %v, %v; want no match", ps, got, ok)
		}
	}
}
