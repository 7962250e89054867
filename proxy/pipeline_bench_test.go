package proxy

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/config"
	"github.com/sipproxy/sipproxy/metrics"
)

const benchConfig = `
server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "127.0.0.1:5060"}
    - {transport: tls, addr: "127.0.0.1:5061", self_signed: true}
  record_route: true
voicemail: {uri: "sip:127.0.0.1:5066;transport=tls"}
auth:
  realm: contoso.com
  users:
    - {user: alice, password: alice-pw}
    - {user: bob, password: bob-pw}
peers:
  - {name: um, sources: ["10.0.0.5/32"], tls_names: [um.contoso.com]}
`

// benchServer is a Server with listeners described but not bound: the
// pipeline stages run without sockets.
func benchServer(b *testing.B) *Server {
	b.Helper()
	cfg, err := config.LoadBytes("bench.yaml", []byte(benchConfig), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(cfg, Options{Metrics: metrics.New(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	for _, lc := range cfg.Server.Listen {
		ap := netip.MustParseAddrPort(lc.Addr)
		l := &listener{transport: lc.Transport, bound: ap, host: ap.Addr().String(), port: int(ap.Port())}
		s.addListener(l)
	}
	return s
}

const benchInvite = "INVITE sip:bob@contoso.com SIP/2.0\r\n" +
	"Via: SIP/2.0/TCP 10.1.2.3:5080;branch=z9hG4bK-524287-1---c2d5a6b8e2f9c3a1;rport\r\n" +
	"Max-Forwards: 70\r\n" +
	"From: \"Gateway\" <sip:+15551234@gw.fabrikam.com>;tag=9fxced76sl\r\n" +
	"To: <sip:bob@contoso.com>\r\n" +
	"Call-ID: 3848276298220188511@gw.fabrikam.com\r\n" +
	"CSeq: 1 INVITE\r\n" +
	"Contact: <sip:+15551234@10.1.2.3:5080;transport=tcp>\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: 0\r\n\r\n"

// BenchmarkPipeline measures the decision stages a request goes through
// before anything is sent (ingress, validate, identify, route, policy), on a
// request as sipgo parsed it. Parsing and cloning are excluded: they are
// sipgo's cost, not the pipeline's.
func BenchmarkPipeline(b *testing.B) {
	s := benchServer(b)
	msg, err := sip.ParseMessage([]byte(benchInvite))
	if err != nil {
		b.Fatal(err)
	}
	orig := msg.(*sip.Request)
	orig.SetTransport("TCP")
	orig.SetSource("10.1.2.3:40123")
	reqs := make([]*sip.Request, b.N)
	for i := range reqs {
		reqs[i] = orig.Clone()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r := &request{Request: reqs[i], in: s.ingress(reqs[i]), base: s.log}
		if !s.validate(r) || !s.identify(r) {
			b.Fatal("rejected")
		}
		d := s.route(r)
		if d.Kind != KindLocal {
			b.Fatalf("routed %v", d.Kind)
		}
		s.applyPolicy(r, &d)
	}
}

// TestPipelineAllocations pins the allocation budget of the pipeline stages
// for a call from a gateway to a local user: the stamps RFC 3581 requires
// on the Via (received, rport) and the request record itself.
func TestPipelineAllocations(t *testing.T) {
	b := &testing.B{}
	s := benchServer(b)
	msg, _ := sip.ParseMessage([]byte(benchInvite))
	orig := msg.(*sip.Request)
	orig.SetTransport("TCP")
	orig.SetSource("10.1.2.3:40123")
	const runs = 200
	reqs := make([]*sip.Request, runs+1)
	for i := range reqs {
		reqs[i] = orig.Clone()
	}
	i := 0
	allocs := testing.AllocsPerRun(runs, func() {
		r := &request{Request: reqs[i], in: s.ingress(reqs[i]), base: s.log}
		i++
		s.validate(r)
		s.identify(r)
		d := s.route(r)
		s.applyPolicy(r, &d)
	})
	t.Logf("pipeline allocations per request: %.0f", allocs)
	// The loop-detection hash, received= and rport= on the Via (RFC 3581),
	// the user's address of record, the request record.
	if allocs > 6 {
		t.Fatalf("pipeline allocates %.0f times per request; budget 6", allocs)
	}
	_ = netip.Addr{}
}
