package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sipproxy/sipproxy/internal/config"
	"github.com/sipproxy/sipproxy/metrics"
	"github.com/sipproxy/sipproxy/proxy"
)

// TestMalformedInput: garbage, truncated and header-less messages over UDP
// and TCP get a 400 or are dropped; the proxy keeps serving.
func TestMalformedInput(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	udp, err := net.Dial("udp", px.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	missing := "INVITE sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/UDP " + udp.LocalAddr().String() + ";branch=z9hG4bKmissing1\r\nCSeq: 1 INVITE\r\nFrom: <sip:x@fabrikam.com>;tag=1\r\nContent-Length: 0\r\n\r\n"
	for _, msg := range []string{
		"\x00\x01\x02garbage\r\n\r\n",
		"INVITE\r\n\r\n",
		"SIP/2.0 200 OK\r\n\r\n",
		"INVITE sip:bob@contoso.com SIP/2.0\r\nVia: broken\r\n\r\n",
		"INVITE sip:bob@contoso.com SIP/2.0\r\nContent-Length: 99999\r\n\r\nshort",
		strings.Repeat("A", 70000),
	} {
		udp.Write([]byte(msg))
	}
	udp.Write([]byte(missing))
	udp.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 65535)
	n, err := udp.Read(buf)
	if err != nil {
		t.Fatalf("no answer to a request missing Call-ID and To: %v", err)
	}
	if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 400") {
		t.Fatalf("want 400, got %q", buf[:n])
	}

	tcp, err := net.Dial("tcp", px.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	tcp.Write([]byte("NOT SIP AT ALL\r\n\r\n"))
	tcp.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := bufio.NewReader(tcp).ReadString('\n'); err == nil {
		t.Log("proxy answered garbage on TCP") // an answer is allowed; a crash is not
	}
	tcp.Close()

	// Still serving.
	p := newPhone(t, px, "bob", "tcp", phoneOpts{listen: true})
	p.mustRegister(t)
	p2 := newPhone(t, px, "alice", "udp", phoneOpts{listen: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sess, err := p2.call(ctx, uri("bob"))
	if err != nil {
		t.Fatalf("call after malformed input: %v", err)
	}
	sess.Ack(ctx)
	sess.Bye(ctx)
}

// TestNoOpenRelay: a request for another domain from someone we do not
// know is refused (403); a trusted peer and an authenticated user pass.
func TestNoOpenRelay(t *testing.T) {
	for _, tc := range []struct {
		name  string
		peers string
		from  string // caller user; "" = a stranger from fabrikam.com
		want  int
	}{
		{"stranger", "", "", 403},
		{"authenticated user", "", "alice", 200},
		{"trusted peer by source", "peers:\n  - {name: gw, sources: [\"127.0.0.1/32\"]}\n", "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The far end: a phone listening on TCP, reached by a static route.
			far := startProxy(t, proxyOpts{}) // only for its PKI and a place to hang the phone
			ext := newPhone(t, far, "ext", "tcp", phoneOpts{listen: true})
			px := startProxy(t, proxyOpts{
				routes: fmt.Sprintf("  - {domain: fabrikam.com, next_hop: \"sip:%s;transport=tcp\"}", ext.listen),
				peers:  tc.peers,
			})
			caller := newPhone(t, px, "stranger", "tcp", phoneOpts{listen: true})
			if tc.from != "" {
				caller = newPhone(t, px, tc.from, "tcp", phoneOpts{listen: true})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			target := sip.Uri{Scheme: "sip", User: "ext", Host: "fabrikam.com"}
			var err error
			if tc.from == "" {
				_, err = caller.callAs(ctx, sip.Uri{Scheme: "sip", User: "someone", Host: "fabrikam.com"}, target)
			} else {
				_, err = caller.call(ctx, target)
			}
			code := 200
			if err != nil {
				code = statusOf(err)
			}
			if code != tc.want {
				t.Fatalf("got %d, want %d (%v)", code, tc.want, err)
			}
			if tc.want == 200 && len(ext.requests) != 1 {
				t.Fatalf("far end received %d INVITEs", len(ext.requests))
			}
			if tc.peers != "" {
				if n := testutil.ToFloat64(px.m.Auth.WithLabelValues("challenged")); n != 0 {
					t.Fatalf("trusted peer was challenged %v times", n)
				}
			}
		})
	}
}

// TestVoicemailRouting: opaque=app:voicemail goes to voicemail.uri with
// the Request-URI kept (UM reads the mailbox from it).
func TestVoicemailRouting(t *testing.T) {
	far := startProxy(t, proxyOpts{})
	um := newPhone(t, far, "um", "tcp", phoneOpts{listen: true})
	px := startProxy(t, proxyOpts{voicemail: "sip:" + um.listen + ";transport=tcp"})
	alice := newPhone(t, px, "alice", "tcp", phoneOpts{listen: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mailbox := sip.Uri{Scheme: "sip", User: "alice", Host: "contoso.com", UriParams: sip.NewParams()}
	mailbox.UriParams.Add("opaque", "app:voicemail")
	sess, err := alice.call(ctx, mailbox)
	if err != nil {
		t.Fatalf("call: %v (%d)", err, statusOf(err))
	}
	sess.Ack(ctx)
	sess.Bye(ctx)
	got := lastRequest(t, um)
	if got.Recipient.String() != "sip:alice@contoso.com;opaque=app:voicemail" {
		t.Fatalf("UM got Request-URI %s", got.Recipient.String())
	}
}

// TestVoicemailDown: the voicemail server refusing connections gives the
// caller a prompt 503, not a hang.
func TestVoicemailDown(t *testing.T) {
	port := freePort(t, "tcp")
	px := startProxy(t, proxyOpts{voicemail: fmt.Sprintf("sip:127.0.0.1:%d;transport=tcp", port)})
	alice := newPhone(t, px, "alice", "tcp", phoneOpts{listen: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mailbox := sip.Uri{Scheme: "sip", User: "alice", Host: "contoso.com", UriParams: sip.NewParams()}
	mailbox.UriParams.Add("opaque", "app:voicemail")
	start := time.Now()
	_, err := alice.call(ctx, mailbox)
	if got := statusOf(err); got != 503 {
		t.Fatalf("want 503, got %d (%v)", got, err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("503 took %v", el)
	}
}

// TestDrain: on Shutdown a call in progress completes (answered, then its
// BYE still passes), a new call is refused with 503, and Shutdown returns
// once the call has ended.
func TestDrain(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	bob := newPhone(t, px, "bob", "udp", phoneOpts{listen: true})
	bob.setOnInvite(answerAfter(700 * time.Millisecond))
	bob.mustRegister(t)
	alice := newPhone(t, px, "alice", "udp", phoneOpts{listen: true})
	carol := newPhone(t, px, "carol", "udp", phoneOpts{listen: true})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		code int
		err  error
	}
	first := make(chan result, 1)
	var byeAt atomic.Int64
	go func() {
		sess, err := alice.call(ctx, uri("bob"))
		if err != nil {
			first <- result{statusOf(err), err}
			return
		}
		if err := sess.Ack(ctx); err != nil {
			first <- result{200, err}
			return
		}
		time.Sleep(300 * time.Millisecond) // talking, while the proxy drains
		byeAt.Store(time.Now().UnixNano())
		first <- result{200, sess.Bye(ctx)}
	}()
	<-bob.requests
	shut := make(chan error, 1)
	var shutAt atomic.Int64
	go func() {
		err := px.Shutdown(ctx)
		shutAt.Store(time.Now().UnixNano())
		shut <- err
	}()
	waitFor(t, "draining", func() bool { return !px.Ready() })
	_, err := carol.call(ctx, uri("bob"))
	if got := statusOf(err); got != 503 {
		t.Fatalf("new call while draining: want 503, got %d (%v)", got, err)
	}
	r := <-first
	if r.code != 200 || r.err != nil {
		t.Fatalf("call in progress during drain: %d %v", r.code, r.err)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if byeAt.Load() == 0 || shutAt.Load() < byeAt.Load() {
			t.Fatal("Shutdown returned before the call's BYE")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the call ended")
	}
}

// TestStray2xxForwarded: a 2xx to an INVITE that matches no transaction of
// ours (a retransmission after the transaction ended) is forwarded
// statelessly along its Via; other stray responses are absorbed.
func TestStray2xxForwarded(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	caller, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	uas, err := net.Dial("udp", px.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer uas.Close()
	host, port, _ := net.SplitHostPort(px.Addr("udp"))
	callerPort := caller.LocalAddr().(*net.UDPAddr).Port
	response := func(code string, method string) string {
		return "SIP/2.0 " + code + "\r\n" +
			"Via: SIP/2.0/UDP " + host + ":" + port + ";branch=z9hG4bKspgone.1\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:" + strconv.Itoa(callerPort) + ";branch=z9hG4bKcaller1;received=127.0.0.1;rport=" + strconv.Itoa(callerPort) + "\r\n" +
			"From: <sip:alice@contoso.com>;tag=a\r\nTo: <sip:bob@contoso.com>;tag=b\r\nCall-ID: stray1\r\n" +
			"CSeq: 1 " + method + "\r\nContact: <sip:bob@127.0.0.1:9>\r\nContent-Length: 0\r\n\r\n"
	}
	uas.Write([]byte(response("486 Busy Here", "INVITE")))
	uas.Write([]byte(response("200 OK", "BYE")))
	uas.Write([]byte(response("200 OK", "INVITE")))
	caller.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	n, _, err := caller.ReadFrom(buf)
	if err != nil {
		t.Fatalf("stray 2xx not forwarded: %v", err)
	}
	got := string(buf[:n])
	if !strings.HasPrefix(got, "SIP/2.0 200 OK") || !strings.Contains(got, "CSeq: 1 INVITE") || strings.Contains(got, "z9hG4bKspgone") {
		t.Fatalf("forwarded:\n%s", got)
	}
	caller.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := caller.ReadFrom(buf); err == nil {
		t.Fatalf("a second stray response was forwarded:\n%s", buf[:n])
	}
}

// TestIPv6: a proxy listening on [::1] relays a call between phones on
// IPv6 loopback: Via and Record-Route carry bracketed literals.
func TestIPv6(t *testing.T) {
	p := newPKI(t)
	srv := startFromYAML(t, p, `
server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "[::1]:0"}
    - {transport: udp, addr: "[::1]:0"}
  record_route: true
auth:
  realm: contoso.com
  users:
    - {user: alice, password: alice-pw}
    - {user: bob, password: bob-pw}
`)
	px := &testProxy{Server: srv, pki: p}
	for _, tr := range []string{"tcp", "udp"} {
		t.Run(tr, func(t *testing.T) {
			bob := newPhone(t, px, "bob", tr, phoneOpts{listen: true, localIP: "::1"})
			bob.mustRegister(t)
			alice := newPhone(t, px, "alice", tr, phoneOpts{listen: true, localIP: "::1"})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			sess, err := alice.call(ctx, uri("bob"))
			if err != nil {
				t.Fatalf("call over IPv6: %v (%d)", err, statusOf(err))
			}
			rr := sess.InviteResponse.GetHeaders("Record-Route")
			if len(rr) != 2 || !strings.Contains(rr[0].Value(), "[::1]:") {
				t.Fatalf("Record-Route %v", rr)
			}
			got := lastRequest(t, bob)
			if v := got.Via(); v == nil || !strings.HasPrefix(v.Host, "[::1]") && v.Host != "::1" {
				t.Fatalf("top Via at bob: %v", got.GetHeaders("Via"))
			}
			sess.Ack(ctx)
			if err := sess.Bye(ctx); err != nil {
				t.Fatalf("BYE over IPv6: %v", err)
			}
		})
	}
}

// TestSeveralListeners: with two listeners of each transport, every one of
// them is bound and answers SIP.
func TestSeveralListeners(t *testing.T) {
	srv := startFromYAML(t, newPKI(t), `
server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "127.0.0.1:0"}
    - {transport: tcp, addr: "127.0.0.2:0"}
    - {transport: udp, addr: "127.0.0.1:0"}
    - {transport: udp, addr: "127.0.0.2:0"}
  record_route: true
auth:
  realm: contoso.com
  users:
    - {user: alice, password: alice-pw}
    - {user: bob, password: bob-pw}
`)
	addrs := srv.Addrs()
	if len(addrs) != 4 {
		t.Fatalf("bound %v", addrs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, a := range addrs {
		tr, addr, _ := strings.Cut(a, " ")
		ua, _ := sipgo.NewUA()
		client, _ := sipgo.NewClient(ua)
		host, port, _ := sip.ParseAddr(addr)
		req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: host, Port: port})
		req.SetTransport(strings.ToUpper(tr))
		req.SetDestination(addr)
		res, err := client.Do(ctx, req)
		ua.Close()
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("OPTIONS to %s: %v %v", a, res, err)
		}
	}
}

// startFromYAML starts a proxy on a whole configuration of the test's own
// (not the harness's template) and stops it when the test ends.
func startFromYAML(t *testing.T, p *pkiFiles, yml string) *proxy.Server {
	t.Helper()
	cfg, err := config.LoadBytes("test.yaml", []byte(yml), p.dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, proxy.Options{Logger: testLogger(t), Metrics: metrics.New()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}
