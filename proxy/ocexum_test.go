package proxy_test

// End-to-end tests of issue 3 ([MS-OCEXUM] policy) over real sockets and
// real TLS: the skip-pin trust rule as Exchange UM sees it, the spec's
// section 4 INVITEs relayed faithfully, Ms-Sensitivity variants turning
// forwarding off, and the `check` warnings.
//
// The receiving side (the UM stand-in, and phones registered over their own
// TLS connection) is a tiny raw SIP endpoint: it records every message as
// the bytes that came off the wire, so "unchanged" below means unchanged on
// the wire, not after a round trip through a SIP parser. Every identifier of
// this file starts with "ox" to stay clear of the other test files.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sipproxy/sipproxy/internal/config"
	"github.com/sipproxy/sipproxy/proxy/policy"
)

// ---------------------------------------------------------------------------
// Raw SIP messages.

// oxRaw is a SIP message as text: start line, header lines (without CRLF,
// exactly as written) and body.
type oxRaw struct {
	start string
	lines []string
	body  string
}

func oxParseRaw(b []byte) (oxRaw, error) {
	head, body, ok := strings.Cut(string(b), "\r\n\r\n")
	if !ok {
		return oxRaw{}, errors.New("no empty line after the headers")
	}
	ls := strings.Split(head, "\r\n")
	return oxRaw{start: ls[0], lines: ls[1:], body: body}, nil
}

func oxMustRaw(t testing.TB, b []byte) oxRaw {
	t.Helper()
	m, err := oxParseRaw(b)
	if err != nil {
		t.Fatalf("%v:\n%s", err, b)
	}
	return m
}

func (m oxRaw) bytes() []byte {
	return []byte(m.start + "\r\n" + strings.Join(m.lines, "\r\n") + "\r\n\r\n" + m.body)
}

func (m oxRaw) String() string { return string(m.bytes()) }

func (m oxRaw) clone() oxRaw {
	m.lines = slices.Clone(m.lines)
	return m
}

// oxName is the header name of a line, as written (without surrounding space).
func oxName(line string) string {
	n, _, _ := strings.Cut(line, ":")
	return strings.TrimSpace(n)
}

// oxValue is the value of a header line, SIP whitespace trimmed.
func oxValue(line string) string {
	_, v, _ := strings.Cut(line, ":")
	return strings.Trim(v, " \t")
}

// get returns every line of a header, matching the name case-insensitively.
func (m oxRaw) get(name string) []string {
	var out []string
	for _, l := range m.lines {
		if strings.EqualFold(oxName(l), name) {
			out = append(out, l)
		}
	}
	return out
}

func (m oxRaw) value(name string) string {
	if ls := m.get(name); len(ls) > 0 {
		return oxValue(ls[0])
	}
	return ""
}

// set replaces the first line of a header (keeping its spelling of the name)
// or appends one.
func (m *oxRaw) set(name, value string) {
	for i, l := range m.lines {
		if strings.EqualFold(oxName(l), name) {
			m.lines[i] = oxName(l) + ": " + value
			return
		}
	}
	m.lines = append(m.lines, name+": "+value)
}

// without returns the header lines but those of the named headers.
func (m oxRaw) without(names ...string) []string {
	var out []string
	for _, l := range m.lines {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(oxName(l), n) }) {
			out = append(out, l)
		}
	}
	return out
}

func (m oxRaw) method() string { return strings.Fields(m.start)[0] }
func (m oxRaw) ruri() string   { return strings.Fields(m.start)[1] }

var oxBranchRE = regexp.MustCompile(`branch=[^;,\s]+`)

func oxNewBranch(via string) string {
	return oxBranchRE.ReplaceAllString(via, "branch="+sip.RFC3261BranchMagicCookie+"-ox"+sip.GenerateTagN(10))
}

// oxReadMsg reads one SIP message from a stream: the header block up to the
// empty line, then Content-Length bytes of body. CRLF keep-alives are skipped.
func oxReadMsg(br *bufio.Reader) ([]byte, error) {
	var buf bytes.Buffer
	cl := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if buf.Len() == 0 && strings.TrimRight(line, "\r\n") == "" {
			continue
		}
		buf.WriteString(line)
		if strings.TrimRight(line, "\r\n") == "" {
			break
		}
		if name, value, ok := strings.Cut(line, ":"); ok {
			if n := strings.ToLower(strings.TrimSpace(name)); n == "content-length" || n == "l" {
				if cl, err = strconv.Atoi(strings.TrimSpace(value)); err != nil {
					return nil, fmt.Errorf("bad Content-Length line %q", line)
				}
			}
		}
	}
	body := make([]byte, cl)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	buf.Write(body)
	return buf.Bytes(), nil
}

// ---------------------------------------------------------------------------
// A raw SIP endpoint: the UM stand-in, phones registered over their own
// connection, and raw callers.

// oxMsg is one message received, as bytes on the wire and parsed.
type oxMsg struct {
	raw []byte
	req *sip.Request
	res *sip.Response
}

// oxUA answers requests on any of its connections and records them.
type oxUA struct {
	t       testing.TB
	name    string
	contact string // Contact of our 18x/2xx responses
	// recordRoute, when set, is put on top of the Record-Route of our
	// 18x/2xx responses (a UM that sits behind a record-routing front end).
	recordRoute string

	mu       sync.Mutex
	reqs     []oxMsg
	errs     []error
	conns    []*oxConn
	onInvite func(tx *oxTx)
	// onOther, when set, may answer a non-INVITE request itself (true:
	// handled) instead of the default 200.
	onOther func(c *oxConn, req *sip.Request) bool
	pending map[string]*oxTx // INVITE server transactions by branch
}

func oxNewUA(t testing.TB, name string) *oxUA {
	ua := &oxUA{t: t, name: name, onInvite: oxAnswer, pending: map[string]*oxTx{}}
	t.Cleanup(ua.close)
	return ua
}

func (ua *oxUA) close() {
	ua.mu.Lock()
	cs := slices.Clone(ua.conns)
	ua.mu.Unlock()
	for _, c := range cs {
		c.conn.Close()
		<-c.done
	}
}

// requests returns the requests of a method received so far.
func (ua *oxUA) requests(method string) []oxMsg {
	ua.mu.Lock()
	defer ua.mu.Unlock()
	var out []oxMsg
	for _, m := range ua.reqs {
		if string(m.req.Method) == method {
			out = append(out, m)
		}
	}
	return out
}

// wait waits until n requests of a method have arrived and returns the nth.
func (ua *oxUA) wait(t testing.TB, method string, n int) oxMsg {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got := ua.requests(method); len(got) >= n {
			return got[n-1]
		}
		if time.Now().After(deadline) {
			ua.mu.Lock()
			errs := ua.errs
			ua.mu.Unlock()
			t.Fatalf("%s: %d %s received, waited for %d (unparsable messages: %v)", ua.name, len(ua.requests(method)), method, n, errs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// oxConn is one connection of an oxUA.
type oxConn struct {
	ua        *oxUA
	conn      net.Conn
	wmu       sync.Mutex
	responses chan oxMsg
	done      chan struct{}
}

func (ua *oxUA) serveConn(nc net.Conn) *oxConn {
	c := &oxConn{ua: ua, conn: nc, responses: make(chan oxMsg, 64), done: make(chan struct{})}
	ua.mu.Lock()
	ua.conns = append(ua.conns, c)
	ua.mu.Unlock()
	go c.readLoop()
	return c
}

func (c *oxConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.conn.Write(b)
	return err
}

func (c *oxConn) readLoop() {
	defer close(c.done)
	br := bufio.NewReader(c.conn)
	for {
		raw, err := oxReadMsg(br)
		if err != nil {
			return
		}
		msg, err := sip.NewParser().ParseSIP(raw)
		if err != nil {
			c.ua.mu.Lock()
			c.ua.errs = append(c.ua.errs, fmt.Errorf("%w:\n%s", err, raw))
			c.ua.mu.Unlock()
			continue
		}
		switch m := msg.(type) {
		case *sip.Request:
			m.SetSource(c.conn.RemoteAddr().String())
			c.ua.onRequest(c, oxMsg{raw: raw, req: m})
		case *sip.Response:
			select {
			case c.responses <- oxMsg{raw: raw, res: m}:
			default:
			}
		}
	}
}

func (ua *oxUA) onRequest(c *oxConn, m oxMsg) {
	req := m.req
	branch, _ := req.Via().Params.Get("branch")
	ua.mu.Lock()
	ua.reqs = append(ua.reqs, m)
	h := ua.onInvite
	var cancelled *oxTx
	if req.IsCancel() {
		cancelled = ua.pending[branch]
	}
	ua.mu.Unlock()

	switch {
	case req.IsAck():
	case req.IsCancel():
		_ = c.write([]byte(sip.NewResponseFromRequest(req, 200, "OK", nil).String()))
		if cancelled != nil {
			cancelled.once.Do(func() { close(cancelled.cancelled) })
		}
	case req.IsInvite():
		tx := &oxTx{c: c, req: req, tag: sip.GenerateTagN(10), cancelled: make(chan struct{})}
		ua.mu.Lock()
		ua.pending[branch] = tx
		ua.mu.Unlock()
		go func() {
			h(tx)
			ua.mu.Lock()
			delete(ua.pending, branch)
			ua.mu.Unlock()
		}()
	default:
		ua.mu.Lock()
		o := ua.onOther
		ua.mu.Unlock()
		if o != nil && o(c, req) {
			return
		}
		_ = c.write([]byte(sip.NewResponseFromRequest(req, 200, "OK", nil).String()))
	}
}

// oxTx is an INVITE server transaction of an oxUA. A CANCEL for it is
// answered 200 and closes cancelled (a behaviour may then answer 487).
type oxTx struct {
	c         *oxConn
	req       *sip.Request
	tag       string
	cancelled chan struct{}
	once      sync.Once
}

func (tx *oxTx) respond(code int, reason string, body []byte) {
	res := sip.NewResponseFromRequest(tx.req, code, reason, body)
	if to := res.To(); to != nil && !tx.req.To().Params.Has("tag") {
		to.Params.Add("tag", tx.tag) // the same tag on every response
	}
	if code > 100 && code < 300 && tx.c.ua.contact != "" {
		res.AppendHeader(sip.NewHeader("Contact", tx.c.ua.contact))
	}
	if code > 100 && code < 300 && tx.c.ua.recordRoute != "" {
		res.PrependHeader(sip.NewHeader("Record-Route", tx.c.ua.recordRoute))
	}
	if body != nil {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	_ = tx.c.write([]byte(res.String()))
}

// oxAnswer rings and answers with SDP at once.
func oxAnswer(tx *oxTx) {
	tx.respond(180, "Ringing", nil)
	tx.respond(200, "OK", []byte(testSDP))
}

// oxListener is a raw UA listening on TCP or TLS.
type oxListener struct {
	*oxUA
	ln        net.Listener
	transport string
	port      int
}

// oxListen binds now (the proxy's configuration needs the port) and serves
// once serve is called: the TLS certificate comes from the proxy's test CA,
// which exists only once the proxy has started.
func oxListen(t testing.TB, name, transport string) *oxListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	l := &oxListener{oxUA: oxNewUA(t, name), ln: ln, transport: transport, port: ln.Addr().(*net.TCPAddr).Port}
	l.contact = fmt.Sprintf("<sip:%s@127.0.0.1:%d;transport=%s>", name, l.port, transport)
	return l
}

// uri is the listener as a next-hop URI (voicemail.uri).
func (l *oxListener) uri() string {
	return fmt.Sprintf("sip:127.0.0.1:%d;transport=%s", l.port, l.transport)
}

func (l *oxListener) serve(t testing.TB, px *testProxy) {
	var tc *tls.Config
	if l.transport == "tls" {
		tc = serverTLS(t, px.pki)
	}
	go func() {
		for {
			c, err := l.ln.Accept()
			if err != nil {
				return
			}
			if tc != nil {
				c = tls.Server(c, tc)
			}
			l.serveConn(c)
		}
	}()
}

// dial connects a raw UA to the proxy over tcp or tls (tc: client TLS
// configuration, possibly with a client certificate).
func (ua *oxUA) dial(t testing.TB, px *testProxy, transport string, tc *tls.Config) *oxConn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	var nc net.Conn
	var err error
	if transport == "tls" {
		nc, err = tls.DialWithDialer(d, "tcp", px.Addr("tls"), tc)
	} else {
		nc, err = d.Dial("tcp", px.Addr("tcp"))
	}
	if err != nil {
		t.Fatalf("%s: dial %s: %v", ua.name, transport, err)
	}
	return ua.serveConn(nc)
}

func (c *oxConn) localPort() int { return c.conn.LocalAddr().(*net.TCPAddr).Port }

// do sends a request and returns its final response.
func (c *oxConn) do(t testing.TB, m oxRaw) *sip.Response {
	t.Helper()
	parsed, err := sip.NewParser().ParseSIP(m.bytes())
	if err != nil {
		t.Fatalf("request to send does not parse: %v\n%s", err, m)
	}
	req := parsed.(*sip.Request)
	if err := c.write(m.bytes()); err != nil {
		t.Fatalf("write: %v", err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r := <-c.responses:
			if r.res.CallID() == nil || r.res.CallID().Value() != req.CallID().Value() ||
				r.res.CSeq() == nil || r.res.CSeq().SeqNo != req.CSeq().SeqNo || r.res.CSeq().MethodName != req.Method {
				continue
			}
			if r.res.IsProvisional() {
				continue
			}
			return r.res
		case <-deadline:
			t.Fatalf("%s: no final response to %s", c.ua.name, m.start)
		}
	}
}

// oxAck is the ACK of an INVITE for its final response: hop by hop for a
// non-2xx (same branch, RFC 3261 17.1.1.3), along the route set for a 2xx
// (new branch, 13.2.2.4).
func oxAck(inv oxRaw, res *sip.Response) oxRaw {
	seq, _, _ := strings.Cut(inv.value("CSeq"), " ")
	ack := oxRaw{start: "ACK " + inv.ruri() + " SIP/2.0"}
	via := inv.get("Via")[0]
	if res.IsSuccess() {
		ack.start = "ACK " + res.Contact().Address.String() + " SIP/2.0"
		via = oxNewBranch(via)
	}
	ack.lines = append(ack.lines, via)
	if res.IsSuccess() {
		rr := res.GetHeaders("Record-Route")
		for i := len(rr) - 1; i >= 0; i-- {
			ack.lines = append(ack.lines, "Route: "+rr[i].Value())
		}
	}
	ack.lines = append(ack.lines,
		"Max-Forwards: 70",
		inv.get("From")[0],
		"To: "+res.To().Value(),
		inv.get("Call-ID")[0],
		"CSeq: "+seq+" ACK",
		"Content-Length: 0",
	)
	return ack
}

// doDigest sends a request and, when challenged with 407, ACKs the
// challenge and sends it again with credentials (CSeq + 1, new branch).
// It returns the final response and the request as last sent.
func (c *oxConn) doDigest(t testing.TB, m oxRaw, user, password string) (*sip.Response, oxRaw) {
	t.Helper()
	res := c.do(t, m)
	if res.StatusCode != sip.StatusProxyAuthRequired {
		return res, m
	}
	if m.method() == "INVITE" {
		if err := c.write(oxAck(m, res).bytes()); err != nil {
			t.Fatal(err)
		}
	}
	chal, err := digest.ParseChallenge(res.GetHeader("Proxy-Authenticate").Value())
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: m.method(), URI: m.ruri(), Username: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	seq, _, _ := strings.Cut(m.value("CSeq"), " ")
	n, _ := strconv.Atoi(seq)
	m2 := m.clone()
	m2.set("CSeq", fmt.Sprintf("%d %s", n+1, m.method()))
	m2.set("Via", oxNewBranch(m.value("Via")))
	m2.lines = append(m2.lines, "Proxy-Authorization: "+cred.String())
	return c.do(t, m2), m2
}

// oxRegisterRaw is a phone that registers over its own TLS connection with
// a client certificate naming sip:user@contoso.com and takes its calls on
// that same connection (a client behind NAT). Its Contact names the local
// port of the connection.
func oxRegisterRaw(t testing.TB, px *testProxy, user string) *oxUA {
	t.Helper()
	ua := oxNewUA(t, user)
	c := ua.dial(t, px, "tls", px.pki.clientTLS(t, "sip:"+user+"@contoso.com"))
	ua.contact = fmt.Sprintf("<sip:%s@127.0.0.1:%d;transport=tls>", user, c.localPort())
	reg := oxRaw{start: "REGISTER sip:contoso.com SIP/2.0", lines: []string{
		fmt.Sprintf("Via: SIP/2.0/TLS 127.0.0.1:%d;branch=%s-ox%s", c.localPort(), sip.RFC3261BranchMagicCookie, sip.GenerateTagN(10)),
		"Max-Forwards: 70",
		fmt.Sprintf("From: <sip:%s@contoso.com>;tag=%s", user, sip.GenerateTagN(8)),
		fmt.Sprintf("To: <sip:%s@contoso.com>", user),
		"Call-ID: " + sip.GenerateTagN(16),
		"CSeq: 1 REGISTER",
		"Contact: " + ua.contact,
		"Expires: 300",
		"Content-Length: 0",
	}}
	if res := c.do(t, reg); res.StatusCode != 200 {
		t.Fatalf("%s: REGISTER: %d %s", user, res.StatusCode, res.Reason)
	}
	return ua
}

// oxContactURI is the URI inside a Contact value.
func oxContactURI(contact string) string {
	return strings.TrimSuffix(strings.TrimPrefix(contact, "<"), ">")
}

// ---------------------------------------------------------------------------
// Metrics.

// oxSkipPinCounts reads sipproxy_skip_pin_total for every decision and
// reason, keyed "decision/reason".
func oxSkipPinCounts(px *testProxy) map[string]float64 {
	out := map[string]float64{}
	for _, r := range policy.Reasons() {
		for _, d := range []string{policy.OutcomeKept, policy.OutcomeStripped} {
			out[d+"/"+string(r)] = testutil.ToFloat64(px.m.SkipPin.WithLabelValues(d, string(r)))
		}
	}
	return out
}

// oxAssertSkipPin checks that exactly one skip-pin decision was counted
// since before, under want ("stripped/not_tls"), or none when want is "".
func oxAssertSkipPin(t testing.TB, px *testProxy, before map[string]float64, want string) {
	t.Helper()
	after := oxSkipPinCounts(px)
	for k, v := range after {
		d := v - before[k]
		switch {
		case k == want && d != 1:
			t.Errorf("sipproxy_skip_pin_total{%s} went up by %v, want 1", k, d)
		case k != want && d != 0:
			t.Errorf("sipproxy_skip_pin_total{%s} went up by %v, want 0 (expected only %q)", k, d, want)
		}
	}
}

// ---------------------------------------------------------------------------
// 1 and 2: the skip-pin trust rule, end to end.

func oxMailbox(user, host string, port int) sip.Uri {
	u := sip.Uri{Scheme: "sip", User: user, Host: host, Port: port, UriParams: sip.NewParams()}
	u.UriParams.Add("opaque", "app:voicemail")
	return u
}

// oxCaller says who places the request and how.
type oxCaller struct {
	user      string // phone user (digest user unless a certificate names them)
	transport string // udp, tcp, tls
	certURI   string // client certificate SAN URI (tls)
	certDNS   string // client certificate DNS SAN (tls, trusted peer)
	from      string // From URI; "" is sip:user@contoso.com
}

func (c oxCaller) phone(t testing.TB, px *testProxy) *phone {
	t.Helper()
	o := phoneOpts{listen: c.transport == "udp"}
	if c.transport == "tls" && (c.certURI != "" || c.certDNS != "") {
		var dns []string
		if c.certDNS != "" {
			dns = []string{c.certDNS}
		}
		o.tls = px.pki.clientTLS(t, c.certURI, dns...)
	}
	p := newPhone(t, px, c.user, c.transport, o)
	if c.certURI != "" || c.certDNS != "" {
		p.password = "certificate-only-never-used"
	}
	return p
}

func (c oxCaller) fromURI(t testing.TB) sip.Uri {
	if c.from == "" {
		return uri(c.user)
	}
	var u sip.Uri
	if err := sip.ParseUri(c.from, &u); err != nil {
		t.Fatal(err)
	}
	return u
}

// oxRequest sends a non-INVITE through the proxy, answering a challenge.
func oxRequest(ctx context.Context, p *phone, method sip.RequestMethod, from, target sip.Uri, headers ...sip.Header) (*sip.Response, error) {
	req := sip.NewRequest(method, target)
	f := &sip.FromHeader{Address: from, Params: sip.NewParams()}
	f.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(f)
	req.AppendHeader(&sip.ToHeader{Address: target})
	for _, h := range headers {
		req.AppendHeader(h)
	}
	if method == sip.MESSAGE {
		req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
		req.SetBody([]byte("call me"))
	}
	p.route(req)
	res, err := p.client.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode == sip.StatusProxyAuthRequired {
		p.route(req)
		res, err = p.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: p.user, Password: p.password})
	}
	return res, err
}

// oxHeaders turns "Name: value" lines into headers sipgo writes back as
// exactly those lines.
func oxHeaders(lines []string) []sip.Header {
	var hs []sip.Header
	for _, l := range lines {
		hs = append(hs, sip.NewHeader(oxName(l), oxValue(l)))
	}
	return hs
}

const (
	oxSkipPin       = "Ms-Exchange-Command: skip-pin"
	oxTrustedPeer   = "peers:\n  - {name: um, tls_names: [um-peer.contoso.com], trust_skip_pin: true}\n"
	oxUntrustedPeer = "peers:\n  - {name: um, tls_names: [um-peer.contoso.com], trust_skip_pin: false}\n"
	oxSourcePeer    = "peers:\n  - {name: um, sources: [\"127.0.0.1/32\"], trust_skip_pin: true}\n"
)

// TestOCEXUMSkipPin runs the skip-pin trust rule end to end: a caller
// (sipgo phone) reaches a voicemail mailbox (or a user) through the proxy
// over a real socket, the UM stand-in listens on TLS and records what
// arrives on the wire, and sipproxy_skip_pin_total counts one decision with
// the exact reason.
func TestOCEXUMSkipPin(t *testing.T) {
	type tcase struct {
		name    string
		peers   string
		caller  oxCaller
		method  sip.RequestMethod           // "" is INVITE
		target  func(px *testProxy) sip.Uri // nil: alice's mailbox
		route   func(um *oxListener) string // a preloaded Route value
		headers []string                    // Ms-Exchange-Command lines sent
		toPhone bool                        // delivered to alice's registered phone, not to UM
		want    string                      // decision/reason counted
	}
	aliceTLSDigest := oxCaller{user: "alice", transport: "tls"}
	aliceTLSCert := oxCaller{user: "alice", transport: "tls", certURI: "sip:alice@contoso.com"}
	peerTLS := oxCaller{user: "um", transport: "tls", certDNS: "um-peer.contoso.com"}
	mailboxOf := func(user string) func(*testProxy) sip.Uri {
		return func(*testProxy) sip.Uri { return oxMailbox(user, "contoso.com", 0) }
	}
	cases := []tcase{
		// Kept: all four conditions hold.
		{name: "kept/alice digest over TLS to her mailbox", caller: aliceTLSDigest,
			headers: []string{oxSkipPin}, want: "kept/own_mailbox"},
		{name: "kept/alice client certificate to her mailbox", caller: aliceTLSCert,
			headers: []string{oxSkipPin}, want: "kept/own_mailbox"},
		{name: "kept/name and value in other case", caller: aliceTLSCert,
			headers: []string{"ms-exchange-command: SKIP-PIN"}, want: "kept/own_mailbox"},
		{name: "kept/mailbox named by the proxy's address", caller: aliceTLSDigest,
			target: func(px *testProxy) sip.Uri {
				h, p, _ := sip.ParseAddr(px.Addr("tls"))
				return oxMailbox("alice", h, p)
			},
			headers: []string{oxSkipPin}, want: "kept/own_mailbox"},
		{name: "kept/trusted peer over TLS", peers: oxTrustedPeer, caller: peerTLS,
			headers: []string{oxSkipPin}, want: "kept/trusted_peer"},
		{name: "kept/trusted peer by source over TLS", peers: oxSourcePeer,
			caller:  oxCaller{user: "um", transport: "tls"},
			headers: []string{oxSkipPin}, want: "kept/trusted_peer"},

		// Stripped: the request still reaches UM, without the header.
		{name: "stripped/alice over TCP", caller: oxCaller{user: "alice", transport: "tcp"},
			headers: []string{oxSkipPin}, want: "stripped/not_tls"},
		{name: "stripped/alice over UDP", caller: oxCaller{user: "alice", transport: "udp"},
			headers: []string{oxSkipPin}, want: "stripped/not_tls"},
		{name: "stripped/bob over TLS to alice's mailbox", caller: oxCaller{user: "bob", transport: "tls"},
			headers: []string{oxSkipPin}, want: "stripped/identity_mismatch"},
		{name: "stripped/alice's certificate to bob's mailbox", caller: aliceTLSCert, target: mailboxOf("bob"),
			headers: []string{oxSkipPin}, want: "stripped/identity_mismatch"},
		{name: "stripped/unauthenticated caller from another domain", caller: oxCaller{user: "mallory", transport: "tls", from: "sip:mallory@fabrikam.com"},
			headers: []string{oxSkipPin}, want: "stripped/unauthenticated"},
		{name: "stripped/MESSAGE to the mailbox", caller: aliceTLSDigest, method: sip.MESSAGE,
			headers: []string{oxSkipPin}, want: "stripped/not_invite"},
		{name: "stripped/OPTIONS to the mailbox", caller: aliceTLSCert, method: sip.OPTIONS,
			headers: []string{oxSkipPin}, want: "stripped/not_invite"},
		{name: "stripped/a list", caller: aliceTLSCert,
			headers: []string{"Ms-Exchange-Command: skip-pin, skip-pin"}, want: "stripped/bad_value"},
		{name: "stripped/a parameter", caller: aliceTLSCert,
			headers: []string{"Ms-Exchange-Command: skip-pin;x"}, want: "stripped/bad_value"},
		{name: "stripped/another command", caller: aliceTLSCert,
			headers: []string{"Ms-Exchange-Command: skip-everything"}, want: "stripped/bad_value"},
		{name: "stripped/two header lines", caller: aliceTLSCert,
			headers: []string{oxSkipPin, "MS-EXCHANGE-COMMAND: skip-pin"}, want: "stripped/bad_value"},
		{name: "stripped/alice to her own phone not voicemail", caller: aliceTLSDigest,
			target:  func(*testProxy) sip.Uri { return uri("alice") },
			headers: []string{oxSkipPin}, toPhone: true, want: "stripped/not_voicemail"},
		{name: "stripped/preloaded Route to UM is not the voicemail route", caller: aliceTLSCert,
			route: func(um *oxListener) string {
				return fmt.Sprintf("<sip:127.0.0.1:%d;transport=tls;lr>", um.port)
			},
			headers: []string{oxSkipPin}, want: "stripped/not_voicemail"},
		{name: "stripped/peer not trusted for skip-pin", peers: oxUntrustedPeer, caller: peerTLS,
			headers: []string{oxSkipPin}, want: "stripped/unauthenticated"},
		{name: "stripped/trusted peer over TCP (no certificate there)", peers: oxTrustedPeer,
			caller:  oxCaller{user: "um", transport: "tcp", from: "sip:um@exchange.contoso.com"},
			headers: []string{oxSkipPin}, want: "stripped/not_tls"},
		{name: "stripped/trusted peer by source over TCP", peers: oxSourcePeer,
			caller:  oxCaller{user: "um", transport: "tcp"},
			headers: []string{oxSkipPin}, want: "stripped/not_tls"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			um := oxListen(t, "um", "tls")
			px := startProxy(t, proxyOpts{voicemail: um.uri(), peers: tc.peers})
			um.serve(t, px)
			var alicePhone *oxUA
			if tc.toPhone {
				alicePhone = oxRegisterRaw(t, px, "alice")
			}
			caller := tc.caller.phone(t, px)
			target := oxMailbox("alice", "contoso.com", 0)
			if tc.target != nil {
				target = tc.target(px)
			}
			hdrs := oxHeaders(tc.headers)
			if tc.route != nil {
				hdrs = append(hdrs, sip.NewHeader("Route", tc.route(um)))
			}
			method := tc.method
			if method == "" {
				method = sip.INVITE
			}

			before := oxSkipPinCounts(px)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if method == sip.INVITE {
				sess, err := caller.callAs(ctx, tc.caller.fromURI(t), target, hdrs...)
				if err != nil {
					t.Fatalf("call: %v (status %d)", err, statusOf(err))
				}
				if err := sess.Ack(ctx); err != nil {
					t.Fatalf("ACK: %v", err)
				}
				if err := sess.Bye(ctx); err != nil {
					t.Fatalf("BYE: %v", err)
				}
			} else {
				res, err := oxRequest(ctx, caller, method, tc.caller.fromURI(t), target, hdrs...)
				if err != nil || res.StatusCode != 200 {
					t.Fatalf("%s: %v %v", method, res, err)
				}
			}

			rcv := um.oxUA
			if tc.toPhone {
				rcv = alicePhone
			}
			got := oxMustRaw(t, rcv.wait(t, string(method), 1).raw)
			if n := len(rcv.requests(string(method))); n != 1 {
				t.Errorf("%s received %d %s, want 1", rcv.name, n, method)
			}
			if !tc.toPhone { // with a Route too: see TestOCEXUMLooseRouteKeepsRequestURI
				if want := string(method) + " " + target.String() + " SIP/2.0"; got.start != want {
					t.Errorf("UM got request line %q, want %q (the mailbox must stay in the Request-URI)", got.start, want)
				}
			}
			var wantLines []string
			if strings.HasPrefix(tc.want, "kept/") {
				wantLines = tc.headers
			}
			if gotLines := got.get("Ms-Exchange-Command"); !slices.Equal(gotLines, wantLines) {
				t.Errorf("Ms-Exchange-Command lines at %s:\n got %q\nwant %q\n%s", rcv.name, gotLines, wantLines, got)
			}
			if method == sip.INVITE {
				// The dialog's BYE carried no header: no second decision.
				rcv.wait(t, "BYE", 1)
			}
			oxAssertSkipPin(t, px, before, tc.want)
		})
	}
}

// TestOCEXUMSkipPinInDialog: inside alice's (trusted) dialog with UM,
// neither a re-INVITE nor a BYE carries skip-pin on: they follow the route
// set, not the voicemail route. The re-INVITE's Request-URI is UM's
// Contact, so alice's identity no longer names the mailbox it targets:
// the policy's first failing check is identity_mismatch. The BYE is not
// an INVITE.
func TestOCEXUMSkipPinInDialog(t *testing.T) {
	um := oxListen(t, "um", "tls")
	px := startProxy(t, proxyOpts{voicemail: um.uri()})
	um.serve(t, px)
	alice := oxCaller{user: "alice", transport: "tls", certURI: "sip:alice@contoso.com"}.phone(t, px)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	before := oxSkipPinCounts(px)
	sess, err := alice.callAs(ctx, uri("alice"), oxMailbox("alice", "contoso.com", 0), sip.NewHeader("Ms-Exchange-Command", "skip-pin"))
	if err != nil {
		t.Fatalf("call: %v (%d)", err, statusOf(err))
	}
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if got := oxMustRaw(t, um.wait(t, "INVITE", 1).raw).get("Ms-Exchange-Command"); !slices.Equal(got, []string{oxSkipPin}) {
		t.Fatalf("initial INVITE: UM got %q", got)
	}
	oxAssertSkipPin(t, px, before, "kept/own_mailbox")
	um.wait(t, "ACK", 1)
	remote := sess.InviteResponse.Contact().Address

	t.Run("re-INVITE", func(t *testing.T) {
		before := oxSkipPinCounts(px)
		re := sip.NewRequest(sip.INVITE, remote)
		re.AppendHeader(sip.NewHeader("Ms-Exchange-Command", "skip-pin"))
		re.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		re.SetBody([]byte(testSDP))
		re.SetDestination(px.Addr("tls"))
		res, err := sess.Do(ctx, re)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("re-INVITE: %v %v", res, err)
		}
		ack := sip.NewRequest(sip.ACK, remote)
		ack.SetDestination(px.Addr("tls"))
		if err := sess.WriteRequest(ack); err != nil {
			t.Fatal(err)
		}
		got := oxMustRaw(t, um.wait(t, "INVITE", 2).raw)
		if !oxInDialog(got) {
			t.Fatalf("second INVITE at UM is not in the dialog:\n%s", got)
		}
		if h := got.get("Ms-Exchange-Command"); len(h) != 0 {
			t.Errorf("re-INVITE reached UM with %q", h)
		}
		oxAssertSkipPin(t, px, before, "stripped/identity_mismatch")
		um.wait(t, "ACK", 2)
	})
	t.Run("BYE", func(t *testing.T) {
		before := oxSkipPinCounts(px)
		bye := sip.NewRequest(sip.BYE, remote)
		bye.AppendHeader(sip.NewHeader("Ms-Exchange-Command", "skip-pin"))
		bye.SetDestination(px.Addr("tls"))
		if err := sess.WriteBye(ctx, bye); err != nil {
			t.Fatalf("BYE: %v", err)
		}
		got := oxMustRaw(t, um.wait(t, "BYE", 1).raw)
		if h := got.get("Ms-Exchange-Command"); len(h) != 0 {
			t.Errorf("BYE reached UM with %q", h)
		}
		oxAssertSkipPin(t, px, before, "stripped/not_invite")
	})
}

// TestOCEXUMLooseRouteKeepsRequestURI: when a Route header that is not ours
// names the next hop (RFC 3261 16.6 steps 6 and 7, loose routing with lr),
// the proxy sends the request there with the Request-URI unchanged. Two
// shapes: an INVITE with a preloaded Route to UM (the mailbox must stay in
// the Request-URI, UM reads it from there), and a BYE in a dialog where a
// second hop (UM's front end) record-routed too (the BYE must still be
// addressed to UM's Contact, not to that hop).
func TestOCEXUMLooseRouteKeepsRequestURI(t *testing.T) {
	t.Run("preloaded Route", func(t *testing.T) {
		um := oxListen(t, "um", "tls")
		px := startProxy(t, proxyOpts{voicemail: um.uri()})
		um.serve(t, px)
		alice := oxCaller{user: "alice", transport: "tls", certURI: "sip:alice@contoso.com"}.phone(t, px)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		mailbox := oxMailbox("alice", "contoso.com", 0)
		route := fmt.Sprintf("<sip:127.0.0.1:%d;transport=tls;lr>", um.port)
		sess, err := alice.callAs(ctx, uri("alice"), mailbox, sip.NewHeader("Route", route))
		if err != nil {
			t.Fatalf("call: %v (%d)", err, statusOf(err))
		}
		sess.Ack(ctx)
		got := oxMustRaw(t, um.wait(t, "INVITE", 1).raw)
		if want := "INVITE " + mailbox.String() + " SIP/2.0"; got.start != want {
			t.Errorf("UM got request line %q, want %q", got.start, want)
		}
		if r := got.get("Route"); !slices.Equal(r, []string{"Route: " + route}) {
			t.Errorf("UM got Route %q, want its own entry %q left for it to pop", r, route)
		}
	})
	t.Run("in-dialog BYE past a second record-routing hop", func(t *testing.T) {
		um := oxListen(t, "um", "tls")
		um.recordRoute = fmt.Sprintf("<sip:127.0.0.1:%d;transport=tls;lr>", um.port)
		px := startProxy(t, proxyOpts{voicemail: um.uri()})
		um.serve(t, px)
		alice := oxCaller{user: "alice", transport: "tls", certURI: "sip:alice@contoso.com"}.phone(t, px)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sess, err := alice.callAs(ctx, uri("alice"), oxMailbox("alice", "contoso.com", 0))
		if err != nil {
			t.Fatalf("call: %v (%d)", err, statusOf(err))
		}
		if err := sess.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		if err := sess.Bye(ctx); err != nil {
			t.Fatalf("BYE: %v", err)
		}
		bye := oxMustRaw(t, um.wait(t, "BYE", 1).raw)
		if want := "BYE " + oxContactURI(um.contact) + " SIP/2.0"; bye.start != want {
			t.Errorf("UM got request line %q, want %q (its Contact, the dialog's remote target)", bye.start, want)
		}
	})
}

func oxInDialog(m oxRaw) bool { return strings.Contains(m.value("To"), ";tag=") }

// ---------------------------------------------------------------------------
// 3: the spec's section 4 INVITEs, relayed faithfully.

func oxFixture(t testing.TB, name string) oxRaw {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "ocexum", name))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bytes.ReplaceAll(b, []byte("\r\n"), nil), []byte("\n")) || bytes.Contains(b, []byte("\r\r")) {
		t.Fatalf("%s: not CRLF throughout", name)
	}
	m := oxMustRaw(t, b)
	if cl, _ := strconv.Atoi(m.value("Content-Length")); cl != len(m.body) {
		t.Fatalf("%s: Content-Length %d, body %d bytes", name, cl, len(m.body))
	}
	return m
}

var (
	oxReceivedRE = regexp.MustCompile(`;received=[^;,\s]+`)
	oxRportRE    = regexp.MustCompile(`;rport=\d+`)
)

// oxAssertRelayed checks that got is sent as relayed by the proxy: the
// request line (with the Request-URI ruri, or unchanged when ""), then every
// header line byte for byte and in order, except what a proxy does to a
// request (RFC 3261 16.6): its own Via on top (received/rport allowed on
// the sender's Via), Record-Route added, Max-Forwards decremented,
// Content-Length recomputed, our realm's Proxy-Authorization consumed
// (22.3), and Ms-Exchange-Command when strip. The body is byte-identical.
func oxAssertRelayed(t testing.TB, px *testProxy, sent, got oxRaw, ruri string, strip bool) {
	t.Helper()
	wantStart := sent.start
	if ruri != "" {
		wantStart = sent.method() + " " + ruri + " SIP/2.0"
	}
	if got.start != wantStart {
		t.Errorf("request line:\n got %q\nwant %q", got.start, wantStart)
	}
	if got.body != sent.body {
		t.Errorf("body changed:\n got %q\nwant %q", got.body, sent.body)
	}

	ours := []string{px.Addr("tls"), px.Addr("tcp"), px.Addr("udp")}
	namesUs := func(l string) bool {
		return slices.ContainsFunc(ours, func(a string) bool { return a != "" && strings.Contains(l, a) })
	}
	if len(got.lines) == 0 || !strings.EqualFold(oxName(got.lines[0]), "Via") || !namesUs(got.lines[0]) {
		t.Fatalf("first header is not the proxy's Via:\n%s", got)
	}
	if rr := got.get("Record-Route"); len(rr) != 2 || !namesUs(rr[0]) || !namesUs(rr[1]) {
		t.Errorf("Record-Route: %q", rr)
	}
	sentMF, _ := strconv.Atoi(sent.value("Max-Forwards"))
	if mf := got.get("Max-Forwards"); len(mf) != 1 || oxValue(mf[0]) != strconv.Itoa(sentMF-1) {
		t.Errorf("Max-Forwards: got %q, want %d", mf, sentMF-1)
	}
	if cl := got.value("Content-Length"); cl != strconv.Itoa(len(got.body)) {
		t.Errorf("Content-Length %q for a %d-byte body", cl, len(got.body))
	}

	gotRest := got.clone()
	gotRest.lines = gotRest.lines[1:] // our Via
	var gl []string
	for _, l := range gotRest.without("Record-Route", "Max-Forwards", "Content-Length") {
		if strings.EqualFold(oxName(l), "Via") {
			l = oxReceivedRE.ReplaceAllString(l, "")
			l = oxRportRE.ReplaceAllString(l, "")
		}
		gl = append(gl, l)
	}
	drop := []string{"Max-Forwards", "Content-Length", "Proxy-Authorization"}
	if strip {
		drop = append(drop, "Ms-Exchange-Command")
	}
	wl := sent.without(drop...)
	if !slices.Equal(gl, wl) {
		t.Errorf("header lines changed beyond Via/Record-Route/Max-Forwards/Content-Length:\n--- got\n%s\n--- want\n%s",
			strings.Join(gl, "\n"), strings.Join(wl, "\n"))
	}
	// The lines Play-On-Phone and subscriber access depend on, one by one.
	for _, name := range []string{"From", "To", "Contact", "Call-ID", "CSeq", "Ms-Sensitivity", "Allow", "User-Agent", "Content-Type"} {
		if g, w := got.get(name), sent.get(name); !slices.Equal(g, w) {
			t.Errorf("%s: got %q, want %q", name, g, w)
		}
	}
	wantSkip := sent.get("Ms-Exchange-Command")
	if strip {
		wantSkip = nil
	}
	if g := got.get("Ms-Exchange-Command"); !slices.Equal(g, wantSkip) {
		t.Errorf("Ms-Exchange-Command: got %q, want %q", g, wantSkip)
	}
}

// TestOCEXUMSpecInviteSubscriberAccess sends the spec's 4.1 INVITE (alice
// reaching her own voicemail with skip-pin) through the proxy as raw bytes,
// and checks what the UM stand-in reads off its TLS socket.
func TestOCEXUMSpecInviteSubscriberAccess(t *testing.T) {
	cases := []struct {
		name      string
		transport string
		cert      bool // client certificate sip:alice@contoso.com; otherwise digest
		want      string
	}{
		{"tls/client certificate", "tls", true, "kept/own_mailbox"},
		{"tls/digest", "tls", false, "kept/own_mailbox"},
		{"tcp/digest", "tcp", false, "stripped/not_tls"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			um := oxListen(t, "um", "tls")
			px := startProxy(t, proxyOpts{voicemail: um.uri()})
			um.serve(t, px)
			var tc0 *tls.Config
			if tc.transport == "tls" {
				tc0 = px.pki.clientTLS(t, "")
				if tc.cert {
					tc0 = px.pki.clientTLS(t, "sip:alice@contoso.com")
				}
			}
			client := oxNewUA(t, "alice-client")
			c := client.dial(t, px, tc.transport, tc0)
			inv := oxFixture(t, "4.1-subscriber-access.sip")
			if tc.transport == "tcp" {
				inv.set("Via", strings.Replace(inv.value("Via"), "SIP/2.0/TLS", "SIP/2.0/TCP", 1))
			}

			before := oxSkipPinCounts(px)
			var res *sip.Response
			if tc.cert {
				res = c.do(t, inv)
			} else {
				res, inv = c.doDigest(t, inv, "alice", "alice-pw")
			}
			if res.StatusCode != 200 {
				t.Fatalf("4.1 INVITE: %d %s", res.StatusCode, res.Reason)
			}
			if err := c.write(oxAck(inv, res).bytes()); err != nil {
				t.Fatal(err)
			}
			got := oxMustRaw(t, um.wait(t, "INVITE", 1).raw)
			oxAssertRelayed(t, px, inv, got, "", strings.HasPrefix(tc.want, "stripped/"))
			oxAssertSkipPin(t, px, before, tc.want)
			um.wait(t, "ACK", 1) // the route set works for the 2xx ACK
			if n := len(um.requests("INVITE")); n != 1 {
				t.Errorf("UM received %d INVITEs", n)
			}
		})
	}
}

// TestOCEXUMSpecInvitePlayOnPhone sends the spec's 4.2 INVITE (UM dialing
// out to alice, Play-On-Phone) from a trusted UM peer over TLS, as raw
// bytes, to alice's phone registered over its own TLS connection, and
// checks what the phone reads off the wire: only the Request-URI (her
// binding), our Via and Record-Route and Max-Forwards (69 -> 68, as in the
// spec) differ; the Contact with its odd "sip: " spelling, ms-opaque and
// automata, From == To, Ms-Sensitivity, both Allow lines, User-Agent and
// the 317-byte SDP are untouched.
func TestOCEXUMSpecInvitePlayOnPhone(t *testing.T) {
	px := startProxy(t, proxyOpts{peers: "peers:\n  - {name: exchange-um, tls_names: [um-peer.contoso.com]}\n"})
	alice := oxRegisterRaw(t, px, "alice")
	umPeer := oxNewUA(t, "um-peer")
	c := umPeer.dial(t, px, "tls", px.pki.clientTLS(t, "", "um-peer.contoso.com"))
	inv := oxFixture(t, "4.2-play-on-phone.sip")

	before := oxSkipPinCounts(px)
	res := c.do(t, inv)
	if res.StatusCode != 200 {
		t.Fatalf("4.2 INVITE: %d %s", res.StatusCode, res.Reason)
	}
	if err := c.write(oxAck(inv, res).bytes()); err != nil {
		t.Fatal(err)
	}
	got := oxMustRaw(t, alice.wait(t, "INVITE", 1).raw)
	oxAssertRelayed(t, px, inv, got, oxContactURI(alice.contact), false)
	if mf := got.value("Max-Forwards"); mf != "68" {
		t.Errorf("Max-Forwards %s at alice, the spec shows 68", mf)
	}
	req := alice.requests("INVITE")[0].req
	if f, to := req.From().Address.String(), req.To().Address.String(); f != to {
		t.Errorf("From URI %s != To URI %s downstream: Play-On-Phone breaks", f, to)
	}
	if ct := req.Contact(); ct == nil || !ct.Params.Has("automata") {
		t.Errorf("Contact lost automata: %v", ct)
	}
	oxAssertSkipPin(t, px, before, "")
	alice.wait(t, "ACK", 1)
}

// ---------------------------------------------------------------------------
// 4: Ms-Sensitivity variants.

// TestOCEXUMSensitivityVariants: carol forwards every call immediately to
// dave. A call to carol whose Ms-Sensitivity says private-no-diversion in
// any spelling rings carol herself and never dave (and counts the rule as
// suppressed); any other value is forwarded to dave as usual. Whoever
// rings receives the Ms-Sensitivity lines unchanged. The caller is alice
// writing raw bytes over TLS with her client certificate.
func TestOCEXUMSensitivityVariants(t *testing.T) {
	cases := []struct {
		name  string
		lines []string // header lines sent
		flag  bool
	}{
		{"canonical", []string{"Ms-Sensitivity: private-no-diversion"}, true},
		{"upper-case name and mixed-case value", []string{"MS-SENSITIVITY: Private-No-Diversion"}, true},
		{"lower-case name", []string{"ms-sensitivity: PRIVATE-NO-DIVERSION"}, true},
		{"spaces around the value", []string{"Ms-Sensitivity:    private-no-diversion   "}, true},
		{"tab and no space", []string{"Ms-Sensitivity:\tprivate-no-diversion"}, true},
		{"space before the colon", []string{"Ms-Sensitivity : private-no-diversion"}, true},
		{"a list", []string{"Ms-Sensitivity: foo, private-no-diversion"}, true},
		{"a list with spaces", []string{"Ms-Sensitivity: normal ,  Private-No-Diversion , bar"}, true},
		{"two header lines", []string{"Ms-Sensitivity: normal", "Ms-Sensitivity: private-no-diversion"}, true},
		{"two header lines in other cases", []string{"ms-sensitivity: private-no-diversion", "MS-Sensitivity: normal"}, true},

		{"no header", nil, false},
		{"another sensitivity", []string{"Ms-Sensitivity: private"}, false},
		{"a longer token", []string{"Ms-Sensitivity: private-no-diversions"}, false},
		{"a list without it", []string{"Ms-Sensitivity: normal, no-diversion"}, false},
		{"another header", []string{"X-Ms-Sensitivity: private-no-diversion"}, false},
	}
	const rulesYAML = "rules:\n  - user: sip:carol@contoso.com\n    immediate: sip:dave@contoso.com\n"
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			px := startProxy(t, proxyOpts{rulesYAML: rulesYAML})
			carol := oxRegisterRaw(t, px, "carol")
			dave := oxRegisterRaw(t, px, "dave")
			alice := oxNewUA(t, "alice")
			c := alice.dial(t, px, "tls", px.pki.clientTLS(t, "sip:alice@contoso.com"))
			inv := oxRaw{start: "INVITE sip:carol@contoso.com SIP/2.0", lines: []string{
				fmt.Sprintf("Via: SIP/2.0/TLS 127.0.0.1:%d;branch=%s-ox%s", c.localPort(), sip.RFC3261BranchMagicCookie, sip.GenerateTagN(10)),
				"Max-Forwards: 70",
				"From: <sip:alice@contoso.com>;tag=" + sip.GenerateTagN(8),
				"To: <sip:carol@contoso.com>",
				"Call-ID: " + sip.GenerateTagN(16),
				"CSeq: 1 INVITE",
				fmt.Sprintf("Contact: <sip:alice@127.0.0.1:%d;transport=tls>", c.localPort()),
				"Content-Type: application/sdp",
			}, body: testSDP}
			inv.lines = append(inv.lines, tc.lines...)
			inv.lines = append(inv.lines, fmt.Sprintf("Content-Length: %d", len(testSDP)))

			res := c.do(t, inv)
			if res.StatusCode != 200 {
				t.Fatalf("call to carol: %d %s", res.StatusCode, res.Reason)
			}
			if err := c.write(oxAck(inv, res).bytes()); err != nil {
				t.Fatal(err)
			}
			rang, silent := dave, carol
			if tc.flag {
				rang, silent = carol, dave
			}
			got := oxMustRaw(t, rang.wait(t, "INVITE", 1).raw)
			rang.wait(t, "ACK", 1)
			time.Sleep(50 * time.Millisecond)
			if n := len(silent.requests("INVITE")); n != 0 {
				t.Errorf("%s rang %d time(s); only %s should have", silent.name, n, rang.name)
			}

			// The header travels on unchanged. sipgo writes a header line
			// back as "Name: value": whitespace around the colon and at the
			// end (not significant, RFC 3261 7.3.1) is normalised, the
			// name's spelling and everything inside the value are not.
			var want []string
			for _, l := range tc.lines {
				want = append(want, oxName(l)+": "+oxValue(l))
			}
			var gotLines []string
			for _, name := range []string{"Ms-Sensitivity", "X-Ms-Sensitivity"} {
				gotLines = append(gotLines, got.get(name)...)
			}
			if !slices.Equal(gotLines, want) {
				t.Errorf("Ms-Sensitivity lines at %s:\n got %q\nwant %q", rang.name, gotLines, want)
			}
			for _, l := range tc.lines {
				if oxName(l)+": "+oxValue(l) == l && !slices.Contains(got.lines, l) {
					t.Errorf("line %q not relayed byte for byte", l)
				}
			}

			applied := testutil.ToFloat64(px.m.Forwarding.WithLabelValues("immediate", "applied"))
			suppressed := testutil.ToFloat64(px.m.Forwarding.WithLabelValues("immediate", "suppressed"))
			if tc.flag && (applied != 0 || suppressed != 1) || !tc.flag && (applied != 1 || suppressed != 0) {
				t.Errorf("forwarding_total{immediate}: applied %v, suppressed %v (no-diversion %t)", applied, suppressed, tc.flag)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 5: `sipproxy check` warnings of issue 3.

// TestOCEXUMCheckWarnings: a voicemail server reached over anything but TLS
// and a peer trusted for skip-pin without tls_names are warned about, at
// the line of the key; TLS voicemail (transport=tls or sips:) and a peer
// named by its certificate are not.
func TestOCEXUMCheckWarnings(t *testing.T) {
	p := newPKI(t)
	type warning struct {
		key  string // the key the warning names
		line string // the start of the configuration line it points at
	}
	vm := warning{"voicemail.uri", "  uri:"}
	cases := []struct {
		name      string
		voicemail string
		peers     string
		want      []warning // issue-3 warnings, in file order
	}{
		{"voicemail over TCP", "sip:um.contoso.com:5066;transport=tcp", "", []warning{vm}},
		{"voicemail over UDP by default", "sip:um.contoso.com:5066", "", []warning{vm}},
		{"voicemail over TLS", "sip:um.contoso.com:5066;transport=tls", "", nil},
		{"voicemail sips", "sips:um.contoso.com:5066", "", nil},
		{"peer trusted for skip-pin by source only", "sip:um.contoso.com:5066;transport=tls",
			"peers:\n  - {name: um, sources: [\"10.0.0.5/32\"], trust_skip_pin: true}\n",
			[]warning{{"peers[0].trust_skip_pin", "  - {name: um"}}},
		{"peer trusted for skip-pin by certificate", "sip:um.contoso.com:5066;transport=tls",
			"peers:\n  - {name: um, sources: [\"10.0.0.5/32\"], tls_names: [um.contoso.com], trust_skip_pin: true}\n", nil},
		{"peer by source not trusted for skip-pin", "sip:um.contoso.com:5066;transport=tls",
			"peers:\n  - {name: gw, sources: [\"10.0.0.6/32\"]}\n", nil},
		{"both", "sip:um.contoso.com:5066;transport=tcp",
			"peers:\n  - {name: ok, tls_names: [a.contoso.com], trust_skip_pin: true}\n  - {name: um, sources: [\"10.0.0.5/32\"], trust_skip_pin: true}\n",
			[]warning{vm, {"peers[1].trust_skip_pin", "  - {name: um"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			yml := strings.NewReplacer(
				"{{CERT}}", p.serverCert, "{{KEY}}", p.srvKey, "{{CA}}", p.caPath,
				"{{VOICEMAILKEY}}", "uri", "{{VOICEMAIL}}", `"`+tc.voicemail+`"`, "{{PROBE}}", "0s", "{{SERVEREXTRA}}", "",
				"{{ROUTES}}", "  []", "{{PEERS}}", tc.peers,
				"{{TIMERC}}", "180s", "{{AUTHEXTRA}}", "", "{{UDPPORT}}", "0", "{{LIMITS}}", "",
			).Replace(baseConfig)
			cfg, err := config.LoadBytes("test.yaml", []byte(yml), p.dir)
			if err != nil {
				t.Fatalf("config: %v\n%s", err, yml)
			}
			var got []string
			for _, w := range cfg.Warnings() {
				s := w.Error()
				if strings.Contains(s, "voicemail.uri") || strings.Contains(s, "trust_skip_pin") {
					got = append(got, s)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("warnings:\n%s\nwant about %v", strings.Join(got, "\n"), tc.want)
			}
			lines := strings.Split(yml, "\n")
			for i, w := range tc.want {
				n := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, w.line) })
				prefix := fmt.Sprintf("test.yaml:%d: %s: ", n+1, w.key)
				if n < 0 || !strings.HasPrefix(got[i], prefix) {
					t.Errorf("warning %q, want it to start with %q", got[i], prefix)
				}
			}
			if len(tc.want) > 0 && tc.want[0] == vm && !strings.Contains(got[0], "skip-pin") {
				t.Errorf("voicemail warning does not say why it matters: %q", got[0])
			}
		})
	}
}

// TestOCEXUMSkipPinOnAck: the rule covers every request: an ACK carrying
// Ms-Exchange-Command arrives at the callee without it (not_invite).
func TestOCEXUMSkipPinOnAck(t *testing.T) {
	px := startProxy(t, proxyOpts{})
	bob := newPhone(t, px, "bob", "tcp", phoneOpts{listen: true})
	bob.mustRegister(t)
	alice := newPhone(t, px, "alice", "tls", phoneOpts{listen: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := alice.call(ctx, uri("bob"))
	if err != nil {
		t.Fatalf("call: %v (%d)", err, statusOf(err))
	}
	ack := sip.NewRequest(sip.ACK, sess.InviteResponse.Contact().Address)
	ack.AppendHeader(sip.NewHeader("Ms-Exchange-Command", "skip-pin"))
	if err := sess.WriteAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-bob.acks:
		if h := got.GetHeader("Ms-Exchange-Command"); h != nil {
			t.Fatalf("ACK reached bob with %q", h.Value())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("bob never received the ACK")
	}
	if n := testutil.ToFloat64(px.m.SkipPin.WithLabelValues("stripped", "not_invite")); n != 1 {
		t.Fatalf("skip_pin_total{stripped,not_invite} = %v", n)
	}
	sess.Bye(ctx)
}
