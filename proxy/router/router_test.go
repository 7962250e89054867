package router

import (
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func uri(t testing.TB, s string) sip.Uri {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return u
}

func testRouter(t testing.TB) *Router {
	t.Helper()
	r, err := New(Config{
		Domains:   []string{"Contoso.com", "corp.contoso.com"},
		Users:     []string{"alice", "bob"},
		Voicemail: []sip.Uri{uri(t, "sip:um1.contoso.com;transport=tls"), uri(t, "sips:um2.contoso.com:5071")},
		Routes: []Route{
			{Domain: "fabrikam.com", NextHop: uri(t, "sip:edge.fabrikam.com:5061;transport=tls")},
			{Domain: "*", NextHop: uri(t, "sip:gw.contoso.com:5060;transport=tcp")},
		},
		Peers: []Peer{{Name: "um", Names: []string{"mbx1.contoso.com"}, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r.WithListeners([]Listener{
		{Transport: "udp", Host: "192.0.2.10", Port: 5060, Bound: netip.MustParseAddrPort("192.0.2.10:5060")},
		{Transport: "tcp", Host: "sip.contoso.com", Port: 5060, Bound: netip.MustParseAddrPort("0.0.0.0:5060")},
		{Transport: "tls", Host: "192.0.2.10", Port: 5061, Bound: netip.MustParseAddrPort("192.0.2.10:5061")},
	})
}

// TestLocate: every spelling of a local user, a mailbox, the proxy itself
// and another domain, as the route stage and retargeting both see them.
func TestLocate(t *testing.T) {
	r := testRouter(t)
	type want struct {
		kind    Kind
		aor     string
		known   bool
		targets []string // "transport host:port ruri"
		code    int
	}
	cases := []struct {
		uri string
		want
	}{
		{"sip:alice@contoso.com", want{kind: KindLocal, aor: "alice@contoso.com", known: true}},
		{"sip:alice@CONTOSO.COM:5060", want{kind: KindLocal, aor: "alice@contoso.com", known: true}},
		{"sip:alice@corp.contoso.com", want{kind: KindLocal, aor: "alice@corp.contoso.com", known: true}},
		{"sip:alice@192.0.2.10", want{kind: KindLocal, aor: "alice@contoso.com", known: true}},
		{"sip:alice@192.0.2.10:5060", want{kind: KindLocal, aor: "alice@contoso.com", known: true}},
		{"sip:alice@sip.contoso.com;transport=tcp", want{kind: KindLocal, aor: "alice@contoso.com", known: true}},
		{"sips:bob@192.0.2.10:5061", want{kind: KindLocal, aor: "bob@contoso.com", known: true}},
		{"sip:mallory@contoso.com", want{kind: KindLocal, aor: "mallory@contoso.com", known: false}},
		{"sip:mallory@192.0.2.10", want{kind: KindLocal, aor: "mallory@contoso.com", known: false}},
		{"sip:Alice@contoso.com", want{kind: KindLocal, aor: "Alice@contoso.com", known: false}}, // user part is case-sensitive
		{"sip:alice@contoso.com;opaque=app:voicemail", want{kind: KindVoicemail, aor: "alice@contoso.com", known: true, targets: []string{
			"tls um1.contoso.com:5061 sip:alice@contoso.com;opaque=app:voicemail",
			"tls um2.contoso.com:5071 sip:alice@contoso.com;opaque=app:voicemail",
		}}},
		{"sip:alice@192.0.2.10;OPAQUE=APP:VOICEMAIL", want{kind: KindVoicemail, aor: "alice@contoso.com", known: true, targets: []string{
			"tls um1.contoso.com:5061 sip:alice@192.0.2.10;OPAQUE=APP:VOICEMAIL",
			"tls um2.contoso.com:5071 sip:alice@192.0.2.10;OPAQUE=APP:VOICEMAIL",
		}}},
		{"sip:contoso.com", want{kind: KindSelf}},
		{"sip:192.0.2.10:5061;transport=tls", want{kind: KindSelf}},
		{"sip:carol@fabrikam.com", want{kind: KindStatic, targets: []string{"tls edge.fabrikam.com:5061 sip:carol@fabrikam.com"}}},
		{"sip:carol@FABRIKAM.com", want{kind: KindStatic, targets: []string{"tls edge.fabrikam.com:5061 sip:carol@FABRIKAM.com"}}},
		{"sip:+15551234@example.net", want{kind: KindStatic, targets: []string{"tcp gw.contoso.com:5060 sip:+15551234@example.net"}}},
		// A mailbox of another domain is not ours to send to our UM.
		{"sip:carol@example.net;opaque=app:voicemail", want{kind: KindStatic, targets: []string{"tcp gw.contoso.com:5060 sip:carol@example.net;opaque=app:voicemail"}}},
		// Our address on a port we do not listen on is someone else.
		{"sip:alice@192.0.2.10:5070", want{kind: KindStatic, targets: []string{"tcp gw.contoso.com:5060 sip:alice@192.0.2.10:5070"}}},
	}
	for _, tc := range cases {
		t.Run(tc.uri, func(t *testing.T) {
			got := r.Locate(uri(t, tc.uri))
			if got.Kind != tc.kind || got.AOR != tc.aor || got.Known != tc.known || got.Code != tc.code {
				t.Fatalf("Locate = %+v, want %+v", got, tc.want)
			}
			if len(got.Targets) != len(tc.targets) {
				t.Fatalf("targets %v, want %v", got.Targets, tc.targets)
			}
			for i, tg := range got.Targets {
				s := tg.Transport + " " + tg.Addr() + " " + tg.URI.String()
				if s != tc.targets[i] {
					t.Errorf("target %d = %q, want %q", i, s, tc.targets[i])
				}
			}
		})
	}
}

func TestLocateWithoutVoicemailOrRoutes(t *testing.T) {
	r, err := New(Config{Domains: []string{"contoso.com"}, Users: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uri    string
		code   int
		reason string
	}{
		{"sip:alice@contoso.com;opaque=app:voicemail", 404, "No Voicemail Server"},
		{"sip:carol@fabrikam.com", 404, "Not Found"},
	} {
		got := r.Locate(uri(t, tc.uri))
		if got.Kind != KindReject || got.Code != tc.code || got.Reason != tc.reason {
			t.Errorf("%s: %+v, want reject %d %s", tc.uri, got, tc.code, tc.reason)
		}
	}
}

func TestNewRefusesBadTargets(t *testing.T) {
	for _, c := range []Config{
		{},
		{Domains: []string{"contoso.com"}, Voicemail: []sip.Uri{uri(t, "sip:um.contoso.com;transport=sctp")}},
		{Domains: []string{"contoso.com"}, Routes: []Route{{Domain: "*", NextHop: sip.Uri{Scheme: "sip"}}}},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

func TestTargetOf(t *testing.T) {
	for _, tc := range []struct {
		uri, fallback string
		ok            bool
		transport     string
		addr          string
		explicit      bool
	}{
		{"sip:um.contoso.com", "", true, "udp", "um.contoso.com:5060", false},
		{"sip:um.contoso.com", "tcp", true, "tcp", "um.contoso.com:5060", false},
		{"sip:um.contoso.com;transport=TLS", "", true, "tls", "um.contoso.com:5061", true},
		{"sips:um.contoso.com:5071", "udp", true, "tls", "um.contoso.com:5071", true},
		{"sip:[2001:db8::1]:5070;transport=tcp", "", true, "tcp", "[2001:db8::1]:5070", true},
		{"sip:um.contoso.com;transport=ws", "", false, "", "", false},
	} {
		got, ok := TargetOf(uri(t, tc.uri), tc.fallback)
		if ok != tc.ok {
			t.Fatalf("%s: ok %v", tc.uri, ok)
		}
		if ok && (got.Transport != tc.transport || got.Addr() != tc.addr || got.Explicit != tc.explicit) {
			t.Errorf("%s: %s %s explicit=%v, want %s %s %v", tc.uri, got.Transport, got.Addr(), got.Explicit, tc.transport, tc.addr, tc.explicit)
		}
	}
}

func TestOurAddresses(t *testing.T) {
	r := testRouter(t)
	for _, tc := range []struct {
		host      string
		port      int
		transport string
		ours      bool
	}{
		{"192.0.2.10", 5060, "udp", true},
		{"192.0.2.10", 0, "udp", true},
		{"192.0.2.10", 5061, "tls", true},
		{"192.0.2.10", 5061, "udp", false}, // our TLS port is not our UDP port
		{"sip.contoso.com", 5060, "tcp", true},
		{"SIP.contoso.com", 5060, "", true},
		{"192.0.2.11", 5060, "udp", false},
		{"[192.0.2.10]", 5060, "", true},
	} {
		if got := r.IsOurAddress(tc.host, tc.port, tc.transport); got != tc.ours {
			t.Errorf("IsOurAddress(%s, %d, %s) = %v", tc.host, tc.port, tc.transport, got)
		}
	}
	for _, tc := range []struct {
		route string
		ours  bool
	}{
		{"sip:192.0.2.10:5061;transport=tls;lr", true},
		{"sip:192.0.2.10:5061;transport=udp;lr", false},
		{"sip:contoso.com;lr", true},
		{"sip:contoso.com:5061;lr", true},
		{"sip:contoso.com:5090;lr", false},
		{"sip:alice@contoso.com;lr", false},
		{"sip:fabrikam.com;lr", false},
	} {
		if got := r.RouteNamesUs(uri(t, tc.route)); got != tc.ours {
			t.Errorf("RouteNamesUs(%s) = %v", tc.route, got)
		}
	}
}

func TestPeerHost(t *testing.T) {
	r := testRouter(t)
	for _, tc := range []struct {
		host string
		peer string
	}{
		{"mbx1.contoso.com", "um"},
		{"MBX1.contoso.com", "um"},
		{"10.0.0.7", "um"},
		{"[::ffff:10.0.0.7]", "um"},
		{"10.0.1.7", ""},
		{"evil.example", ""},
	} {
		got, ok := r.PeerHost(tc.host)
		if got != tc.peer || ok != (tc.peer != "") {
			t.Errorf("PeerHost(%s) = %q %v, want %q", tc.host, got, ok, tc.peer)
		}
	}
}
