package proxy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/config"
	"github.com/sipproxy/sipproxy/internal/pki"
	"github.com/sipproxy/sipproxy/metrics"
	"github.com/sipproxy/sipproxy/proxy"
	"github.com/sipproxy/sipproxy/rules"
)

// testLogger writes to the test log only when -v is given or SIPPROXY_TEST_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("SIPPROXY_TEST_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// pkiFiles is a CA with a server certificate for 127.0.0.1 on disk.
type pkiFiles struct {
	ca                 *pki.CA
	caPath             string
	serverCert, srvKey string
	dir                string
}

func newPKI(t testing.TB) *pkiFiles {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA("sipproxy test CA")
	if err != nil {
		t.Fatal(err)
	}
	caPath, err := ca.WritePEM(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(pki.IssueOptions{CommonName: "proxy.contoso.com", DNSNames: []string{"proxy.contoso.com", "localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := pki.WritePEM(dir, "server", srv)
	if err != nil {
		t.Fatal(err)
	}
	return &pkiFiles{ca: ca, caPath: caPath, serverCert: cert, srvKey: key, dir: dir}
}

// clientTLS is what a phone uses to reach the proxy's TLS listener, with an
// optional client certificate naming uri (a SAN URI such as sip:alice@contoso.com).
func (p *pkiFiles) clientTLS(t testing.TB, uri string, dnsNames ...string) *tls.Config {
	t.Helper()
	tc := &tls.Config{RootCAs: p.ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if uri != "" || len(dnsNames) > 0 {
		var uris []string
		if uri != "" {
			uris = []string{uri}
		}
		c, err := p.ca.Issue(pki.IssueOptions{CommonName: "client", URIs: uris, DNSNames: dnsNames, Client: true})
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc
}

const baseConfig = `
server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "127.0.0.1:0"}
    - {transport: udp, addr: "127.0.0.1:{{UDPPORT}}"}
    - {transport: tls, addr: "127.0.0.1:0", cert: "{{CERT}}", key: "{{KEY}}", client_ca: "{{CA}}"}
  record_route: true
  timer_c: {{TIMERC}}
{{SERVEREXTRA}}
  tls_client: {ca: "{{CA}}"}
voicemail:
  {{VOICEMAILKEY}}: {{VOICEMAIL}}
  probe_interval: {{PROBE}}
auth:
  realm: contoso.com
{{AUTHEXTRA}}
  users:
    - {user: alice, password: alice-pw}
    - {user: bob, password: bob-pw}
    - {user: carol, password: carol-pw}
    - {user: dave, password: dave-pw}
routes:
{{ROUTES}}
forwarding:
  default_after: 20s
  max_diversions: 5
{{PEERS}}
{{LIMITS}}
`

// testProxy is a proxy started on loopback with free ports.
type testProxy struct {
	*proxy.Server
	m         *metrics.Metrics
	rules     *rules.Store
	pki       *pkiFiles
	rulesPath string          // the rules file, watched by reloader
	reloader  *rules.Reloader // nil without rulesYAML
}

type proxyOpts struct {
	voicemail string // voicemail.uri
	routes    string // YAML list items under routes:
	peers     string // a whole peers: block
	timerC    string
	rulesYAML string // forwarding rules document
	authExtra string // extra keys under auth:, indented two spaces
	udpPort   int    // fixed UDP port (0: any)
	limits    string // a whole limits: block
	// voicemailPool, when set, is voicemail.uris (a YAML list) instead of voicemail.uri.
	voicemailPool string
	probe         string       // voicemail.probe_interval; default 0s (off: tests count what reaches UM)
	serverExtra   string       // extra keys under server:, indented two spaces
	logger        *slog.Logger // the proxy's logger (default: testLogger)
	state         string       // a whole state: block
	tcpPort       int          // fixed TCP port (0: any)
}

func startProxy(t testing.TB, o proxyOpts) *testProxy {
	t.Helper()
	p := newPKI(t)
	if o.voicemail == "" {
		o.voicemail = "sip:127.0.0.1:9;transport=tcp"
	}
	if o.routes == "" {
		o.routes = "  []"
	}
	if o.timerC == "" {
		o.timerC = "180s"
	}
	if o.probe == "" {
		o.probe = "0s"
	}
	vmKey, vm := "uri", `"`+o.voicemail+`"`
	if o.voicemailPool != "" {
		vmKey, vm = "uris", o.voicemailPool
	}
	yml := strings.NewReplacer(
		"{{CERT}}", p.serverCert, "{{KEY}}", p.srvKey, "{{CA}}", p.caPath,
		"{{VOICEMAILKEY}}", vmKey, "{{VOICEMAIL}}", vm, "{{PROBE}}", o.probe, "{{SERVEREXTRA}}", o.serverExtra, "{{ROUTES}}", o.routes, "{{PEERS}}", o.peers,
		"{{TIMERC}}", o.timerC, "{{AUTHEXTRA}}", o.authExtra, "{{UDPPORT}}", fmt.Sprint(o.udpPort), "{{LIMITS}}", o.limits,
	).Replace(baseConfig)
	yml += o.state
	if o.tcpPort != 0 {
		yml = strings.Replace(yml, `{transport: tcp, addr: "127.0.0.1:0"}`, fmt.Sprintf(`{transport: tcp, addr: "127.0.0.1:%d"}`, o.tcpPort), 1)
	}
	if o.rulesYAML != "" {
		rp := filepath.Join(p.dir, "rules.yaml")
		if err := os.WriteFile(rp, []byte(o.rulesYAML), 0o600); err != nil {
			t.Fatal(err)
		}
		yml = strings.Replace(yml, "forwarding:\n", "forwarding:\n  rules_file: \""+rp+"\"\n", 1)
	}
	cfg, err := config.LoadBytes("test.yaml", []byte(yml), p.dir)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yml)
	}
	m := metrics.New()
	store := rules.New()
	var reloader *rules.Reloader
	if o.rulesYAML != "" {
		reloader = rules.NewReloader(cfg.Forwarding.RulesFile, store, cfg.Forwarding.DefaultAfter.Duration, testLogger(t), m)
		if err := reloader.Load(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go reloader.Run(ctx)
	}
	logger := o.logger
	if logger == nil {
		logger = testLogger(t)
	}
	srv, err := proxy.New(cfg, proxy.Options{Logger: logger, Metrics: m, Rules: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Tests leave calls up; do not wait for their BYEs.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &testProxy{Server: srv, m: m, rules: store, pki: p, rulesPath: cfg.Forwarding.RulesFile, reloader: reloader}
}

// uri builds a SIP URI for a user at contoso.com.
func uri(user string) sip.Uri {
	return sip.Uri{Scheme: "sip", User: user, Host: "contoso.com"}
}

// phone is a real SIP user agent (sipgo) acting as a softphone: it
// registers through the proxy, places calls with digest, and answers.
type phone struct {
	t         testing.TB
	user      string
	password  string
	transport string // udp, tcp, tls
	proxy     *testProxy

	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	dlg    *sipgo.DialogUA
	listen string // our listening address ("" when we do not listen)

	mu       sync.Mutex
	onInvite func(p *phone, req *sip.Request, tx sip.ServerTransaction)
	sessions []*sipgo.DialogServerSession
	received []*sip.Request // INVITEs and other requests received
	requests chan *sip.Request
	byes     chan *sip.Request
	cancels  chan *sip.Request
	acks     chan *sip.Request
}

type phoneOpts struct {
	listen  bool        // run a listener on the phone's transport
	tls     *tls.Config // TLS client config (transport tls)
	localIP string      // source address of the phone's connections (default 127.0.0.1)
}

func newPhone(t testing.TB, px *testProxy, user, transport string, o phoneOpts) *phone {
	t.Helper()
	uaOpts := []sipgo.UserAgentOption{sipgo.WithUserAgent(user), sipgo.WithUserAgentHostname("contoso.com")}
	if transport == "tls" {
		tc := o.tls
		if tc == nil {
			tc = px.pki.clientTLS(t, "")
		}
		uaOpts = append(uaOpts, sipgo.WithUserAgenTLSConfig(tc))
	}
	ua, err := sipgo.NewUA(uaOpts...)
	if err != nil {
		t.Fatal(err)
	}
	p := &phone{t: t, user: user, password: user + "-pw", transport: transport, proxy: px, ua: ua,
		requests: make(chan *sip.Request, 32), byes: make(chan *sip.Request, 8), cancels: make(chan *sip.Request, 8), acks: make(chan *sip.Request, 8)}
	p.srv, _ = sipgo.NewServer(ua)
	ip := "127.0.0.1"
	if o.localIP != "" {
		ip = o.localIP
	}
	hostname := ip
	if strings.Contains(ip, ":") {
		hostname = "[" + ip + "]"
	}
	clientOpts := []sipgo.ClientOption{sipgo.WithClientHostname(hostname)}
	if o.localIP != "" {
		clientOpts = append(clientOpts, sipgo.WithClientConnectionAddr(net.JoinHostPort(ip, "0")))
	}
	p.client, _ = sipgo.NewClient(ua, clientOpts...)

	host, port := hostname, 0
	if o.listen {
		ready := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		var addrCh = make(chan string, 1)
		ctx = context.WithValue(ctx, sipgo.ListenReadyCtxKey, sipgo.ListenReadyFuncCtxValue(func(network, addr string) {
			addrCh <- addr
			close(ready)
		}))
		go func() {
			var err error
			switch transport {
			case "tls":
				err = p.srv.ListenAndServeTLS(ctx, "tcp", net.JoinHostPort(ip, "0"), serverTLS(t, px.pki))
			default:
				err = p.srv.ListenAndServe(ctx, transport, net.JoinHostPort(ip, "0"))
			}
			if err != nil && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				t.Logf("phone %s listener: %v", user, err)
			}
		}()
		select {
		case <-ready:
		case <-time.After(5 * time.Second):
			t.Fatal("phone listener did not start")
		}
		p.listen = <-addrCh
		h, pt, _ := net.SplitHostPort(p.listen)
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
		port, _ = strconv.Atoi(pt)
	}
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: host, Port: port}}
	if transport != "udp" {
		contact.Address.UriParams = sip.NewParams()
		contact.Address.UriParams.Add("transport", transport)
	}
	if !o.listen {
		// A client behind NAT: its Contact names a port nobody listens on.
		contact.Address.Port = 1
	}
	p.dlg = &sipgo.DialogUA{Client: p.client, ContactHDR: contact}

	p.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		p.mu.Lock()
		p.received = append(p.received, req)
		h := p.onInvite
		p.mu.Unlock()
		select {
		case p.requests <- req:
		default:
		}
		if h == nil {
			h = answer
		}
		h(p, req, tx)
	})
	p.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
		select {
		case p.acks <- req:
		default:
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, s := range p.sessions {
			_ = s.ReadAck(req, tx)
		}
	})
	p.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		select {
		case p.byes <- req:
		default:
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	p.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	t.Cleanup(func() { ua.Close() })
	return p
}

func serverTLS(t testing.TB, p *pkiFiles) *tls.Config {
	t.Helper()
	c, err := p.ca.Issue(pki.IssueOptions{CommonName: "um.contoso.com", DNSNames: []string{"um.contoso.com", "localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
}

// answer rings then answers with SDP (the default behaviour).
func answer(p *phone, req *sip.Request, tx sip.ServerTransaction) {
	sess, err := p.dlg.ReadInvite(req, tx)
	if err != nil {
		p.t.Logf("ReadInvite: %v", err)
		return
	}
	p.mu.Lock()
	p.sessions = append(p.sessions, sess)
	p.mu.Unlock()
	_ = sess.Respond(180, "Ringing", nil)
	_ = sess.RespondSDP([]byte(testSDP))
	<-tx.Done()
}

// ringForever rings and waits until the caller or proxy cancels.
func ringForever(p *phone, req *sip.Request, tx sip.ServerTransaction) {
	tx.OnCancel(func(c *sip.Request) {
		select {
		case p.cancels <- c:
		default:
		}
	})
	_ = tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
	<-tx.Done()
}

// answerAfter rings for d, then answers.
func answerAfter(d time.Duration) func(p *phone, req *sip.Request, tx sip.ServerTransaction) {
	return func(p *phone, req *sip.Request, tx sip.ServerTransaction) {
		tx.OnCancel(func(c *sip.Request) {
			select {
			case p.cancels <- c:
			default:
			}
		})
		sess, err := p.dlg.ReadInvite(req, tx)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.sessions = append(p.sessions, sess)
		p.mu.Unlock()
		_ = sess.Respond(180, "Ringing", nil)
		select {
		case <-time.After(d):
			_ = sess.RespondSDP([]byte(testSDP))
		case <-tx.Done():
			return
		}
		<-tx.Done()
	}
}

func (p *phone) setOnInvite(h func(p *phone, req *sip.Request, tx sip.ServerTransaction)) {
	p.mu.Lock()
	p.onInvite = h
	p.mu.Unlock()
}

func (p *phone) lastSession() *sipgo.DialogServerSession {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.sessions) == 0 {
		return nil
	}
	return p.sessions[len(p.sessions)-1]
}

// freePort finds a port nobody listens on (for configs that must name a
// port before the proxy starts).
func freePort(t testing.TB, network string) int {
	t.Helper()
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	default:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
}

// rawUDP is a bare UDP socket on loopback aimed at px's UDP listener, as a
// scanner has: every datagram the proxy sends back is seen.
func rawUDP(t testing.TB, px *testProxy) (conn net.PacketConn, local string, proxyAddr *net.UDPAddr) {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	proxyAddr, err = net.ResolveUDPAddr("udp", px.Addr("udp"))
	if err != nil {
		t.Fatal(err)
	}
	return conn, conn.LocalAddr().String(), proxyAddr
}

// busy answers 486.
func busy(p *phone, req *sip.Request, tx sip.ServerTransaction) {
	_ = tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
}

const testSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

// proxyURI is the proxy's address on the phone's transport, as a URI parameter set.
func (p *phone) proxyAddr() string { return p.proxy.Addr(p.transport) }

// send prepares a request to travel to the proxy on the phone's transport.
func (p *phone) route(req *sip.Request) {
	req.SetTransport(strings.ToUpper(p.transport))
	req.SetDestination(p.proxyAddr())
}

// register registers the phone's contact, answering the digest challenge.
func (p *phone) register(ctx context.Context, expires int) (*sip.Response, error) {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "contoso.com"})
	to := &sip.ToHeader{Address: uri(p.user)}
	from := &sip.FromHeader{Address: uri(p.user), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(to)
	c := p.dlg.ContactHDR.Clone()
	req.AppendHeader(c)
	req.AppendHeader(sip.NewHeader("Expires", fmt.Sprint(expires)))
	p.route(req)
	res, err := p.client.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode == 401 {
		p.route(req)
		res, err = p.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: p.user, Password: p.password})
	}
	return res, err
}

func (p *phone) mustRegister(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := p.register(ctx, 300)
	if err != nil {
		t.Fatalf("%s register: %v", p.user, err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("%s register: %d %s", p.user, res.StatusCode, res.Reason)
	}
}

// call invites target through the proxy and waits for the answer.
func (p *phone) call(ctx context.Context, target sip.Uri, headers ...sip.Header) (*sipgo.DialogClientSession, error) {
	return p.callAs(ctx, uri(p.user), target, headers...)
}

// callAs is call with another From (a caller from outside our domains).
func (p *phone) callAs(ctx context.Context, fromURI, target sip.Uri, headers ...sip.Header) (*sipgo.DialogClientSession, error) {
	req := sip.NewRequest(sip.INVITE, target)
	from := &sip.FromHeader{Address: fromURI, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: target})
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	for _, h := range headers {
		req.AppendHeader(h)
	}
	req.SetBody([]byte(testSDP))
	p.route(req)
	sess, err := p.dlg.WriteInvite(ctx, req)
	if err != nil {
		return nil, err
	}
	if err := sess.WaitAnswer(ctx, sipgo.AnswerOptions{Username: p.user, Password: p.password}); err != nil {
		return sess, err
	}
	return sess, nil
}

// statusOf extracts the final status from WaitAnswer's error (0 when none).
func statusOf(err error) int {
	var e *sipgo.ErrDialogResponse
	if errors.As(err, &e) {
		return e.Res.StatusCode
	}
	return 0
}

// registerRequest builds an unauthenticated REGISTER for the phone's user.
func (p *phone) registerRequest(expires int) *sip.Request {
	return p.registerRequestFor(p.user, expires)
}

func (p *phone) registerRequestFor(user string, expires int) *sip.Request {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "contoso.com"})
	from := &sip.FromHeader{Address: uri(user), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: uri(user)})
	c := p.dlg.ContactHDR.Clone()
	req.AppendHeader(c)
	req.AppendHeader(sip.NewHeader("Expires", fmt.Sprint(expires)))
	p.route(req)
	return req
}

// withFrom is a no-op marker for readability: registerRequestFor already set From.
func withFrom(req *sip.Request, _ string) *sip.Request { return req }
