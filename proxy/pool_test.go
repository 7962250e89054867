package proxy_test

// Issue 9 part B, end to end over real sockets: a pool of voicemail servers
// with failover and health probes, the Exchange 2013+ Call Router's 302 to
// the Mailbox server, SRV resolution against a DNS server the test runs,
// and UM's OPTIONS pings.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sipproxy/sipproxy/internal/pki"
)

// poolDNS is a DNS server on loopback answering from a fixed zone.
type poolDNS struct {
	addr string
	srv  map[string][]dns.RR // by question name, for SRV
	a    map[string]string   // name -> IPv4
}

func startDNS(t testing.TB, srv map[string][]dns.RR, a map[string]string) *poolDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &poolDNS{addr: pc.LocalAddr().String(), srv: srv, a: a}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		name := strings.ToLower(q.Question[0].Name)
		switch q.Question[0].Qtype {
		case dns.TypeSRV:
			m.Answer = d.srv[name]
		case dns.TypeA:
			if ip, ok := d.a[name]; ok {
				rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A %s", name, ip))
				m.Answer = []dns.RR{rr}
			}
		}
		if len(m.Answer) == 0 && d.a[name] == "" && len(d.srv[name]) == 0 {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	s := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = s.ActivateAndServe() }()
	t.Cleanup(func() { _ = s.Shutdown() })
	return d
}

func srvRR(t testing.TB, name string, prio, weight, port int, target string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(fmt.Sprintf("%s 60 IN SRV %d %d %d %s", name, prio, weight, port, target))
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

// closedPort is a TCP port on loopback that refuses connections.
func closedPort(t testing.TB) int { return freePort(t, "tcp") }

// silentTLS accepts TLS connections and reads what it is sent, never
// answering: a UM server that is up but hung.
func silentTLS(t testing.TB, px *testProxy, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tc := serverTLS(t, px.pki)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tl := tls.Server(c, tc)
				buf := make([]byte, 4096)
				for {
					if _, err := tl.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
}

func tlsURI(port int) string { return fmt.Sprintf("sip:127.0.0.1:%d;transport=tls", port) }

// callMailbox places alice's skip-pin call to her mailbox over TLS with her
// client certificate and returns the final status and how long it took.
func callMailbox(t testing.TB, px *testProxy) (int, time.Duration) {
	t.Helper()
	caller := oxCaller{user: "alice", transport: "tls", certURI: "sip:alice@contoso.com"}.phone(t, px)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	sess, err := caller.call(ctx, oxMailbox("alice", "contoso.com", 0), sip.NewHeader("Ms-Exchange-Command", "skip-pin"))
	took := time.Since(start)
	if err != nil {
		return statusOf(err), took
	}
	_ = sess.Ack(ctx)
	_ = sess.Bye(ctx)
	return 200, took
}

func failovers(px *testProxy, port int, reason string) float64 {
	return testutil.ToFloat64(px.m.UpstreamFailovers.WithLabelValues(fmt.Sprintf("tls:127.0.0.1:%d", port), reason))
}

// TestVoicemailPoolFailover: the first server of a pool of two refuses
// connections, accepts but never answers, or answers 503; the call is
// answered by the second, with skip-pin (a TLS hop to voicemail), within
// the stated time; and with both down the caller gets 503.
func TestVoicemailPoolFailover(t *testing.T) {
	cases := []struct {
		name    string
		first   func(t *testing.T, px *testProxy, port int) // makes the first server misbehave on port
		reason  string
		bound   time.Duration
		atLeast time.Duration
	}{
		{"refuses connections", func(*testing.T, *testProxy, int) {}, "transport", 2 * time.Second, 0},
		{"accepts but never answers", func(t *testing.T, px *testProxy, port int) { silentTLS(t, px, port) }, "timeout", 3 * time.Second, time.Second},
		{"answers 503", nil, "503", 2 * time.Second, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			um2 := oxListen(t, "um2", "tls")
			var um1 *oxListener
			port := closedPort(t)
			if tc.first == nil {
				um1 = oxListen(t, "um1", "tls")
				um1.onInvite = func(tx *oxTx) { tx.respond(503, "Service Unavailable", nil) }
				port = um1.port
			}
			px := startProxy(t, proxyOpts{
				voicemailPool: fmt.Sprintf("[%q, %q]", tlsURI(port), um2.uri()),
				serverExtra:   "  no_response_timeout: 1s",
			})
			um2.serve(t, px)
			if um1 != nil {
				um1.serve(t, px)
			} else {
				tc.first(t, px, port)
			}
			before := oxSkipPinCounts(px)
			code, took := callMailbox(t, px)
			t.Logf("MEASURED failover (%s): answered %d after %v", tc.name, code, took.Round(time.Millisecond))
			if code != 200 {
				t.Fatalf("call got %d, want 200 from the second server", code)
			}
			if took > tc.bound || took < tc.atLeast {
				t.Errorf("answered after %v, want between %v and %v", took, tc.atLeast, tc.bound)
			}
			inv := oxMustRaw(t, um2.wait(t, "INVITE", 1).raw)
			if got := inv.get("Ms-Exchange-Command"); len(got) != 1 {
				t.Errorf("second server got Ms-Exchange-Command %v, want skip-pin kept over TLS", got)
			}
			oxAssertSkipPin(t, px, before, "kept/own_mailbox")
			if um1 != nil && len(um1.requests("INVITE")) != 1 {
				t.Errorf("first server got %d INVITEs, want 1", len(um1.requests("INVITE")))
			}
			if n := failovers(px, port, tc.reason); n != 1 {
				t.Errorf("upstream_failover_total{reason=%s} = %v, want 1", tc.reason, n)
			}
		})
	}
	t.Run("all fail", func(t *testing.T) {
		px := startProxy(t, proxyOpts{voicemailPool: fmt.Sprintf("[%q, %q]", tlsURI(closedPort(t)), tlsURI(closedPort(t)))})
		code, took := callMailbox(t, px)
		t.Logf("MEASURED all servers refuse: %d after %v", code, took.Round(time.Millisecond))
		if code != sip.StatusServiceUnavailable {
			t.Fatalf("got %d, want 503", code)
		}
	})
}

// waitUp waits (bounded) for upstream_up of a target to become want.
func waitUp(t testing.TB, px *testProxy, port int, want float64) time.Duration {
	t.Helper()
	start := time.Now()
	g := px.m.UpstreamUp.WithLabelValues(fmt.Sprintf("tls:127.0.0.1:%d", port))
	for time.Since(start) < 10*time.Second {
		if testutil.ToFloat64(g) == want {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("upstream_up{tls:127.0.0.1:%d} did not become %v in 10 s", port, want)
	return 0
}

// TestVoicemailProbes: OPTIONS probes take a dead server out after two
// failures (calls then go straight to the next one, no failover) and put
// it back once it answers again.
func TestVoicemailProbes(t *testing.T) {
	port := closedPort(t)
	um2 := oxListen(t, "um2", "tls")
	px := startProxy(t, proxyOpts{
		voicemailPool: fmt.Sprintf("[%q, %q]", tlsURI(port), um2.uri()),
		probe:         "200ms",
	})
	um2.serve(t, px)
	// Rounds do not overlap: once the live server has its second probe,
	// the first round is over (the dead one is suspect, still up) and the
	// second decides.
	um2.wait(t, "OPTIONS", 2)
	took := waitUp(t, px, port, 0)
	t.Logf("MEASURED dead server out of service %v after start (probe_interval 200ms)", took.Round(time.Millisecond))
	if got := testutil.ToFloat64(px.m.UpstreamUp.WithLabelValues(fmt.Sprintf("tls:127.0.0.1:%d", um2.port))); got != 1 {
		t.Errorf("live server upstream_up = %v", got)
	}
	if n := len(um2.requests("OPTIONS")); n < 2 {
		t.Errorf("live server got %d OPTIONS probes, want at least 2", n)
	}
	if code, took := callMailbox(t, px); code != 200 || took > time.Second {
		t.Errorf("call while the first server is out: %d after %v, want 200 at once", code, took)
	}
	if n := failovers(px, port, "transport"); n != 0 {
		t.Errorf("the dead server was tried by a call (%v failovers): probes should have taken it out", n)
	}

	// The server comes back on the same port.
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Skipf("port %d taken meanwhile: %v", port, err)
	}
	um1 := &oxListener{oxUA: oxNewUA(t, "um1"), ln: ln, transport: "tls", port: port}
	t.Cleanup(func() { ln.Close() })
	um1.serve(t, px)
	took = waitUp(t, px, port, 1)
	t.Logf("MEASURED server back in service %v after it listened again", took.Round(time.Millisecond))
	if code, _ := callMailbox(t, px); code != 200 {
		t.Fatalf("call after the first server came back: %d", code)
	}
	if n := len(um1.requests("INVITE")); n != 1 {
		t.Errorf("the first server, back, got %d INVITEs, want 1 (it is preferred)", n)
	}
}

// mailboxServer is a UM Mailbox server whose certificate names name.
func mailboxServer(t testing.TB, px *testProxy, l *oxListener, name string) {
	t.Helper()
	c, err := px.pki.ca.Issue(pki.IssueOptions{CommonName: name, DNSNames: []string{name}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
	go func() {
		for {
			conn, err := l.ln.Accept()
			if err != nil {
				return
			}
			l.serveConn(tls.Server(conn, tc))
		}
	}()
}

// TestCallRouterRedirect: the Exchange 2013+ Call Router answers 302 with
// the Mailbox server's UM service (over TLS, by name). The proxy follows
// it: the Mailbox server receives the INVITE with skip-pin, verified by
// its name (resolved by the DNS server the test runs), and the caller never
// sees the 302. A 302 to a host that is not a peer is not followed: the
// caller gets it and nothing reaches that host.
func TestCallRouterRedirect(t *testing.T) {
	const mbxName = "mbx1.contoso.com"
	run := func(t *testing.T, contact func(mbx, evil *oxListener) string) (*testProxy, *oxListener, *oxListener, int) {
		router := oxListen(t, "call-router", "tls")
		mbx := oxListen(t, "mailbox", "tls")
		evil := oxListen(t, "evil", "tls")
		router.onInvite = func(tx *oxTx) {
			res := sip.NewResponseFromRequest(tx.req, 302, "Moved Temporarily", nil)
			res.To().Params.Add("tag", tx.tag)
			res.AppendHeader(sip.NewHeader("Contact", contact(mbx, evil)))
			_ = tx.c.write([]byte(res.String()))
		}
		d := startDNS(t, nil, map[string]string{mbxName + ".": "127.0.0.1"})
		px := startProxy(t, proxyOpts{
			voicemail:   router.uri(),
			serverExtra: fmt.Sprintf("  resolver: %q", d.addr),
			peers:       "peers:\n  - {name: exchange, tls_names: [" + mbxName + "]}\n",
		})
		router.serve(t, px)
		mailboxServer(t, px, mbx, mbxName)
		evil.serve(t, px)
		code, _ := callMailbox(t, px)
		return px, mbx, evil, code
	}
	t.Run("followed to a peer", func(t *testing.T) {
		px, mbx, evil, code := run(t, func(mbx, _ *oxListener) string {
			return fmt.Sprintf("<sip:%s:%d;transport=tls>", mbxName, mbx.port)
		})
		if code != 200 {
			t.Fatalf("caller got %d, want 200 from the Mailbox server (the 302 is the proxy's to follow)", code)
		}
		inv := oxMustRaw(t, mbx.wait(t, "INVITE", 1).raw)
		if got := inv.get("Ms-Exchange-Command"); len(got) != 1 || !strings.EqualFold(oxValue(got[0]), "skip-pin") {
			t.Errorf("Mailbox server got Ms-Exchange-Command %v, want skip-pin", got)
		}
		if want := fmt.Sprintf("INVITE sip:%s:%d;transport=tls SIP/2.0", mbxName, mbx.port); inv.start != want {
			t.Errorf("redirected request line %q, want %q", inv.start, want)
		}
		if n := len(evil.requests("INVITE")); n != 0 {
			t.Errorf("a host nobody redirected to got %d INVITEs", n)
		}
		if n := testutil.ToFloat64(px.m.Redirects.WithLabelValues("followed")); n != 1 {
			t.Errorf("redirects_total{followed} = %v", n)
		}
	})
	t.Run("not followed to a stranger", func(t *testing.T) {
		px, mbx, evil, code := run(t, func(_, evil *oxListener) string { return fmt.Sprintf("<%s>", evil.uri()) })
		if code != 302 {
			t.Fatalf("caller got %d, want the 302 itself", code)
		}
		time.Sleep(200 * time.Millisecond)
		if n := len(evil.requests("INVITE")) + len(mbx.requests("INVITE")); n != 0 {
			t.Errorf("the redirect to a non-peer reached someone: %d INVITEs", n)
		}
		if n := testutil.ToFloat64(px.m.Redirects.WithLabelValues("not_peer")); n != 1 {
			t.Errorf("redirects_total{not_peer} = %v", n)
		}
	})
}

// TestVoicemailSRV: voicemail.uri names a domain without a port; its
// _sips._tcp SRV records (priority 10: a server that refuses, 20: one that
// answers) are tried in priority order, and the call fails over between them.
func TestVoicemailSRV(t *testing.T) {
	um := oxListen(t, "um", "tls")
	dead := closedPort(t)
	d := startDNS(t, map[string][]dns.RR{
		"_sips._tcp.um.contoso.com.": {
			srvRR(t, "_sips._tcp.um.contoso.com.", 20, 10, um.port, "um-b.contoso.com."),
			srvRR(t, "_sips._tcp.um.contoso.com.", 10, 10, dead, "um-a.contoso.com."),
		},
	}, map[string]string{"um-a.contoso.com.": "127.0.0.1", "um-b.contoso.com.": "127.0.0.1"})
	px := startProxy(t, proxyOpts{voicemail: "sips:um.contoso.com", serverExtra: fmt.Sprintf("  resolver: %q", d.addr)})
	// RFC 5922: the certificate must name the domain of the URI.
	mailboxServer(t, px, um, "um.contoso.com")
	code, took := callMailbox(t, px)
	t.Logf("MEASURED SRV failover: %d after %v", code, took.Round(time.Millisecond))
	if code != 200 {
		t.Fatalf("call got %d, want 200 from the priority-20 server", code)
	}
	if n := failovers(px, dead, "transport"); n != 1 {
		t.Errorf("the priority-10 server was not tried first (%v failovers)", n)
	}
}

// TestOptionsPingFromPeer: UM pings its SIP peers with OPTIONS and expects
// 200; from a peer, to the proxy's address, no challenge, with Allow,
// Accept and Supported.
func TestOptionsPingFromPeer(t *testing.T) {
	px := startProxy(t, proxyOpts{peers: "peers:\n  - {name: um, tls_names: [um-peer.contoso.com]}\n"})
	p := oxCaller{user: "um", transport: "tls", certDNS: "um-peer.contoso.com", from: "sip:um@um-peer.contoso.com"}.phone(t, px)
	host, port, _ := sip.ParseAddr(px.Addr("tls"))
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: host, Port: port, UriParams: sip.HeaderParams{{K: "transport", V: "tls"}}})
	p.route(req)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := p.client.Do(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("OPTIONS from a peer: %d %s, want 200 without a challenge", res.StatusCode, res.Reason)
	}
	for _, h := range []string{"Allow", "Accept", "Supported"} {
		if res.GetHeader(h) == nil {
			t.Errorf("no %s header in the answer to UM's ping", h)
		}
	}
}

// TestVoicemailPoolNonInvite: a request other than INVITE (a MESSAGE to a
// mailbox) to a pool whose first server refuses connections or answers 503
// is answered by the second.
func TestVoicemailPoolNonInvite(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer bool // the first server listens and answers 503
		reason string
	}{{"refuses connections", false, "transport"}, {"answers 503", true, "503"}} {
		t.Run(tc.name, func(t *testing.T) {
			um2 := oxListen(t, "um2", "tls")
			port := closedPort(t)
			var um1 *oxListener
			if tc.answer {
				um1 = oxListen(t, "um1", "tls")
				um1.onOther = func(c *oxConn, req *sip.Request) bool {
					_ = c.write([]byte(sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil).String()))
					return true
				}
				port = um1.port
			}
			px := startProxy(t, proxyOpts{voicemailPool: fmt.Sprintf("[%q, %q]", tlsURI(port), um2.uri())})
			um2.serve(t, px)
			if um1 != nil {
				um1.serve(t, px)
			}
			caller := oxCaller{user: "alice", transport: "tls", certURI: "sip:alice@contoso.com"}.phone(t, px)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := oxRequest(ctx, caller, sip.MESSAGE, uri("alice"), oxMailbox("alice", "contoso.com", 0))
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("MESSAGE to the mailbox: %v %v, want 200 from the second server", res, err)
			}
			um2.wait(t, "MESSAGE", 1)
			if n := failovers(px, port, tc.reason); n != 1 {
				t.Errorf("upstream_failover_total{reason=%s} = %v, want 1", tc.reason, n)
			}
		})
	}
}
