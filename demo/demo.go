// Package demo is `sipproxy demo`: it starts the proxy on its embedded
// default configuration together with a stand-in for Exchange UM (the
// voicemail server) and two demo phones on loopback, places the three
// MS-OCEXUM scenarios, prints what the voicemail server received and what
// the proxy counted, and reports whether every scenario behaved as the
// design requires.
//
// The scenarios:
//
//  1. Subscriber access with skip-pin over TLS: alice (digest over TLS)
//     calls her own mailbox with Ms-Exchange-Command: skip-pin; UM receives
//     the header.
//  2. The same over TCP: UM receives the INVITE without the header.
//  3. Play-On-Phone: UM dials carol (From = To = carol, Contact ;automata,
//     Ms-Sensitivity: private-no-diversion); carol's phone answers busy;
//     her busy and unanswered forwarding rules are suppressed, so the caller
//     gets carol's 486 and the voicemail server receives nothing. A control
//     call without the header shows that the busy rule does divert to
//     voicemail otherwise.
package demo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sipproxy/sipproxy/internal/config"
	"github.com/sipproxy/sipproxy/internal/pki"
	"github.com/sipproxy/sipproxy/metrics"
	"github.com/sipproxy/sipproxy/proxy"
	"github.com/sipproxy/sipproxy/rules"
)

// Options configure a demo run.
type Options struct {
	// Out receives the narrative. Required.
	Out io.Writer
	// Logger receives the proxy's and the demo user agents' logs; nil
	// discards them.
	Logger *slog.Logger
	// FreePorts binds every listener (SIP, metrics, the voicemail stand-in)
	// to a free loopback port instead of the embedded default's fixed ports.
	FreePorts bool
	// PortsOffset is added to every fixed port (5060, 5061, 9090, 5066):
	// for running next to something that already holds them. Ignored with
	// FreePorts.
	PortsOffset int
	// Timeout bounds the whole run; zero means 30 seconds.
	Timeout time.Duration

	// rules replaces the embedded default rules (tests prove the checks
	// can fail). nil: the embedded rules.
	rules []byte
}

// Result is what a run observed.
type Result struct {
	Scenarios []Scenario
	// Metrics are the sipproxy_skip_pin_total and sipproxy_forwarding_total
	// lines scraped from /metrics at the end, as printed.
	Metrics []string
}

// Scenario is the outcome of one scenario.
type Scenario struct {
	Name     string
	Problems []string // empty when it behaved as described
}

// OK reports whether the scenario behaved as described.
func (s Scenario) OK() bool { return len(s.Problems) == 0 }

const (
	domain        = "contoso.com"
	skipPin       = "skip-pin"
	noDiversion   = "private-no-diversion"
	hdrCommand    = "Ms-Exchange-Command"
	hdrSensitive  = "Ms-Sensitivity"
	callTimeout   = 5 * time.Second
	quietInterval = 300 * time.Millisecond // how long "received nothing" is watched after the final response
)

// demoSDP is a minimal audio offer/answer.
const demoSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=sipproxy demo\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

// Run runs the demo. It returns an error when the demo could not run or
// when any scenario did not behave as described; the Result says which.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Out == nil {
		return nil, errors.New("demo: Options.Out is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	d, err := start(ctx, o)
	if err != nil {
		return nil, err
	}
	defer d.stop()

	d.intro()
	res := &Result{}
	for _, sc := range []func(context.Context) Scenario{d.subscriberAccessTLS, d.subscriberAccessTCP, d.playOnPhone} {
		res.Scenarios = append(res.Scenarios, sc(ctx))
	}
	res.Metrics, err = d.metricLines(ctx)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(d.out, "\nMetrics (%s):\n", d.metricsURL)
	for _, l := range res.Metrics {
		fmt.Fprintln(d.out, "  "+l)
	}
	failed := 0
	for _, s := range res.Scenarios {
		if !s.OK() {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(d.out, "\ndemo FAILED: %d of %d scenarios did not behave as described:\n", failed, len(res.Scenarios))
		var msgs []string
		for _, s := range res.Scenarios {
			for _, p := range s.Problems {
				fmt.Fprintf(d.out, "  %s: %s\n", s.Name, p)
				msgs = append(msgs, s.Name+": "+p)
			}
		}
		return res, fmt.Errorf("demo: %s", strings.Join(msgs, "; "))
	}
	fmt.Fprintf(d.out, "\ndemo ok: all %d scenarios behaved as MS-OCEXUM requires\n", len(res.Scenarios))
	return res, nil
}

// run is the state of one demo: the proxy and its peers.
type run struct {
	out        io.Writer
	log        *slog.Logger
	cfg        *config.Config
	srv        *proxy.Server
	m          *metrics.Metrics
	ms         *metrics.Server
	metricsURL string
	vmURI      string

	um, alice, carol *agent
	proxyCAs         *x509.CertPool
	cleanup          []func()
}

func start(ctx context.Context, o Options) (d *run, err error) {
	d = &run{out: o.Out, log: o.Logger}
	defer func() {
		if err != nil {
			d.stop()
		}
	}()
	cfg, err := config.Default()
	if err != nil {
		return nil, err
	}
	if err := adjustPorts(cfg, o.FreePorts, o.PortsOffset); err != nil {
		return nil, err
	}
	d.cfg = cfg
	// Provisioned now: the phones trust the proxy's generated certificate.
	rt, err := config.Provision(cfg)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if d.proxyCAs, err = proxyRoots(rt); err != nil {
		return nil, err
	}

	// The voicemail stand-in listens where voicemail.uri points, over TLS
	// with a throw-away certificate (the default trusts it through
	// tls_client.insecure_skip_verify).
	vm := cfg.Voicemail.Targets()[0]
	d.um, err = newAgent(d, "um", "tls", netip.AddrPortFrom(netip.MustParseAddr(vm.Host), uint16(vm.Port)), answer)
	if err != nil {
		return nil, fmt.Errorf("demo: voicemail stand-in: %w", err)
	}
	vm.Port = int(d.um.addr.Port())
	cfg.Voicemail.URI = vm.String()
	d.vmURI = cfg.Voicemail.URI
	rt.Voicemail = cfg.Voicemail.Targets()

	// The proxy, wired as `sipproxy run` wires it.
	d.m = metrics.New()
	store := rules.New()
	ruleText := cfg.Forwarding.EmbeddedRules
	if o.rules != nil {
		ruleText = o.rules
	}
	rs, err := rules.Parse("embedded default rules", ruleText, cfg.Forwarding.DefaultAfter.Duration)
	if err == nil {
		err = store.Replace(rs)
	}
	if err != nil {
		return nil, err
	}
	d.m.Reloaded(true, len(rs), time.Now())
	d.srv, err = proxy.New(cfg, proxy.Options{Logger: d.log.With("component", "proxy"), Metrics: d.m, Rules: store, Runtime: rt})
	if err != nil {
		return nil, err
	}
	d.ms, err = metrics.Listen(cfg.Metrics.Listen, d.m, d.srv.Ready)
	if err != nil {
		return nil, fmt.Errorf("demo: metrics listen %s: %w", cfg.Metrics.Listen, err)
	}
	go func() { _ = d.ms.Serve() }()
	d.cleanup = append(d.cleanup, func() {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = d.ms.Shutdown(c)
	})
	d.metricsURL = "http://" + d.ms.Addr() + "/metrics"
	if err := d.srv.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	d.cleanup = append(d.cleanup, func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.srv.Shutdown(c)
	})

	// The phones: alice over TLS (digest: the default TLS listener asks
	// for no client certificate), carol over TCP, answering busy.
	if d.alice, err = newAgent(d, "alice", "tls", netip.MustParseAddrPort("127.0.0.1:0"), answer); err != nil {
		return nil, err
	}
	if d.carol, err = newAgent(d, "carol", "tcp", netip.MustParseAddrPort("127.0.0.1:0"), busy); err != nil {
		return nil, err
	}
	for _, a := range []*agent{d.alice, d.carol} {
		if err := a.register(ctx); err != nil {
			return nil, fmt.Errorf("demo: %s could not register: %w", a.name, err)
		}
	}
	return d, nil
}

func (d *run) stop() {
	for i := len(d.cleanup) - 1; i >= 0; i-- {
		d.cleanup[i]()
	}
	d.cleanup = nil
}

// adjustPorts moves the embedded default's fixed ports: to free ports, or
// by an offset; the voicemail stand-in's port moves with them.
func adjustPorts(cfg *config.Config, free bool, offset int) error {
	if err := cfg.MovePorts(free, offset); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	vm := cfg.Voicemail.Targets()[0]
	switch p := vm.Port + offset; {
	case free:
		vm.Port = 0
	case p < 1 || p > 65535:
		return fmt.Errorf("demo: port offset %d moves voicemail port %d out of range", offset, vm.Port)
	default:
		vm.Port = p
	}
	cfg.Voicemail.URI = vm.String()
	return nil
}

// proxyRoots trusts the proxy's generated TLS certificate, so the phones
// verify the proxy as real clients would.
func proxyRoots(rt *config.Runtime) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, l := range rt.Listeners {
		if l.Transport != "tls" || l.Certificate == nil || len(l.Certificate.Certificate) == 0 {
			continue
		}
		c, err := x509.ParseCertificate(l.Certificate.Certificate[0])
		if err != nil {
			return nil, err
		}
		pool.AddCert(c)
	}
	return pool, nil
}

func (d *run) intro() {
	fmt.Fprintf(d.out, `sipproxy demo: the MS-OCEXUM scenarios against the embedded default configuration

  proxy      udp %s   tcp %s   tls %s (self-signed)
  metrics    %s
  voicemail  a stand-in for Exchange UM at %s (voicemail.uri)
  alice      registered over TLS with digest (the default TLS listener asks for no client certificate)
  carol      registered over TCP; her phone answers 486 Busy Here
             her rules: unanswered -> her voicemail after 15s, busy -> her voicemail
`, d.srv.Addr("udp"), d.srv.Addr("tcp"), d.srv.Addr("tls"), d.metricsURL, d.vmURI)
}

// --- the scenarios ---

func mailbox(user string) sip.Uri {
	u := sip.Uri{Scheme: "sip", User: user, Host: domain, UriParams: sip.NewParams()}
	u.UriParams.Add("opaque", "app:voicemail")
	return u
}

func aorURI(user string) sip.Uri { return sip.Uri{Scheme: "sip", User: user, Host: domain} }

func (d *run) subscriberAccessTLS(ctx context.Context) Scenario {
	return d.subscriberAccess(ctx, "1. Subscriber access with skip-pin over TLS", "tls", true, "own_mailbox",
		"UM lets alice into her mailbox without asking for the PIN")
}

func (d *run) subscriberAccessTCP(ctx context.Context) Scenario {
	return d.subscriberAccess(ctx, "2. The same over TCP", "tcp", false, "not_tls",
		"UM asks alice for her PIN (skip-pin is only true over TLS)")
}

// subscriberAccess: alice calls her own mailbox with skip-pin over
// transport; UM must receive the header exactly when kept.
func (d *run) subscriberAccess(ctx context.Context, name, transport string, kept bool, reason, meaning string) Scenario {
	sc := Scenario{Name: name}
	fmt.Fprintf(d.out, "\n%s\n", name)
	target := mailbox("alice")
	fmt.Fprintf(d.out, "   alice -> INVITE %s  (%s, digest as alice)\n", target.String(), strings.ToUpper(transport))
	fmt.Fprintf(d.out, "            %s: %s\n", hdrCommand, skipPin)

	before, err := d.scrape(ctx)
	if err != nil {
		sc.Problems = append(sc.Problems, err.Error())
		return sc
	}
	mark := d.um.mark()
	code, reasonPhrase, err := d.alice.call(ctx, transport, d.alice.dlg, aorURI("alice"), target, sip.NewHeader(hdrCommand, skipPin))
	if err != nil {
		sc.Problems = append(sc.Problems, "call: "+err.Error())
	}
	got := d.um.since(mark)
	fmt.Fprintln(d.out, "   voicemail server received:")
	switch len(got) {
	case 0:
		fmt.Fprintln(d.out, "            nothing")
		sc.Problems = append(sc.Problems, "the voicemail server received no INVITE")
	default:
		req := got[0]
		fmt.Fprintf(d.out, "            INVITE %s  (proxy to UM over %s)\n", req.Recipient.String(), req.Transport())
		fmt.Fprintf(d.out, "            From: %s\n", headerValue(req, "From"))
		vals := headerValues(req, hdrCommand)
		if len(vals) == 0 {
			fmt.Fprintf(d.out, "            %s: (none: the proxy stripped it)\n", hdrCommand)
		}
		for _, v := range vals {
			fmt.Fprintf(d.out, "            %s: %s\n", hdrCommand, v)
		}
		if req.Recipient.User != "alice" || !hasParam(req.Recipient, "opaque", "app:voicemail") {
			sc.Problems = append(sc.Problems, "the voicemail server received Request-URI "+req.Recipient.String()+", not alice's mailbox")
		}
		switch {
		case kept && (len(vals) != 1 || !strings.EqualFold(strings.TrimSpace(vals[0]), skipPin)):
			sc.Problems = append(sc.Problems, fmt.Sprintf("the voicemail server did not receive %s: %s (got %q)", hdrCommand, skipPin, vals))
		case !kept && len(vals) != 0:
			sc.Problems = append(sc.Problems, fmt.Sprintf("the voicemail server received %s %q over %s; it must be stripped", hdrCommand, vals, transport))
		}
		if len(got) > 1 {
			sc.Problems = append(sc.Problems, fmt.Sprintf("the voicemail server received %d INVITEs, want 1", len(got)))
		}
	}
	fmt.Fprintf(d.out, "   caller got %d %s\n", code, reasonPhrase)
	if code != sip.StatusOK {
		sc.Problems = append(sc.Problems, fmt.Sprintf("caller got %d, want 200 from the voicemail server", code))
	}

	decision := "stripped"
	if kept {
		decision = "kept"
	}
	series := fmt.Sprintf(`sipproxy_skip_pin_total{decision=%q,reason=%q}`, decision, reason)
	after, err := d.scrape(ctx)
	if err != nil {
		sc.Problems = append(sc.Problems, err.Error())
		return sc
	}
	diff := after.diff(before, "sipproxy_skip_pin_total")
	fmt.Fprintf(d.out, "   counted: %s\n", describeDiff(diff))
	if want := map[string]float64{series: 1}; !sameDiff(diff, want) {
		sc.Problems = append(sc.Problems, fmt.Sprintf("skip-pin counters changed by %s, want %s", describeDiff(diff), describeDiff(want)))
	}
	d.verdict(sc.Problems, fmt.Sprintf("skip-pin %s (%s): %s", decision, reason, meaning))
	return sc
}

// playOnPhone: UM calls carol on behalf of carol with
// private-no-diversion; carol is busy; nothing may reach voicemail.
func (d *run) playOnPhone(ctx context.Context) Scenario {
	sc := Scenario{Name: "3. Play-On-Phone call to carol"}
	fmt.Fprintf(d.out, "\n%s (UM dials out on carol's behalf: From = To = carol)\n", sc.Name)

	// UM's dial-out Contact carries the automata feature tag (MS-OCEXUM 4.2).
	contact := sip.ContactHeader{
		Address: sip.Uri{Scheme: "sip", User: "um", Host: d.um.addr.Addr().String(), Port: int(d.um.addr.Port()), UriParams: sip.NewParams()},
		Params:  sip.NewParams(),
	}
	contact.Address.UriParams.Add("transport", "tls")
	contact.Address.UriParams.Add("ms-opaque", "d3m0")
	contact.Params.Add("automata", "")
	dialOut := &sipgo.DialogUA{Client: d.um.client, ContactHDR: contact}
	carol := aorURI("carol")
	fmt.Fprintf(d.out, "   voicemail server -> INVITE %s  (TLS, digest as carol*)\n", carol.String())
	fmt.Fprintf(d.out, "            From: <%s>   To: <%s>\n", carol.String(), carol.String())
	fmt.Fprintf(d.out, "            Contact: %s\n", contact.Value())
	fmt.Fprintf(d.out, "            %s: %s\n", hdrSensitive, noDiversion)

	before, err := d.scrape(ctx)
	if err != nil {
		sc.Problems = append(sc.Problems, err.Error())
		return sc
	}
	umMark, carolMark := d.um.mark(), d.carol.mark()
	code, reasonPhrase, err := d.um.callAs(ctx, "tls", dialOut, "carol", carol, carol, sip.NewHeader(hdrSensitive, noDiversion))
	if err != nil && code == 0 {
		sc.Problems = append(sc.Problems, "call: "+err.Error())
	}
	time.Sleep(quietInterval)

	rang := d.carol.since(carolMark)
	if len(rang) == 0 {
		fmt.Fprintln(d.out, "   carol's phone received: nothing")
		sc.Problems = append(sc.Problems, "carol's phone did not ring")
	} else {
		req := rang[0]
		fmt.Fprintf(d.out, "   carol's phone received INVITE %s with\n", req.Recipient.String())
		fmt.Fprintf(d.out, "            %s: %s\n", hdrSensitive, headerValue(req, hdrSensitive))
		fmt.Fprintf(d.out, "            Contact: %s\n", headerValue(req, "Contact"))
		if v := headerValue(req, hdrSensitive); !strings.EqualFold(v, noDiversion) {
			sc.Problems = append(sc.Problems, fmt.Sprintf("carol's phone got %s %q, want it passed on unchanged", hdrSensitive, v))
		}
		if c := req.Contact(); c == nil || !c.Params.Has("automata") {
			sc.Problems = append(sc.Problems, "carol's phone got a Contact without ;automata")
		}
		if f, t := req.From(), req.To(); f == nil || t == nil || f.Address.User != "carol" || t.Address.User != "carol" {
			sc.Problems = append(sc.Problems, "From and To at carol's phone are not both carol")
		}
		fmt.Fprintln(d.out, "   carol's phone answered 486 Busy Here")
	}
	fmt.Fprintf(d.out, "   caller got %d %s\n", code, reasonPhrase)
	if code != sip.StatusBusyHere {
		sc.Problems = append(sc.Problems, fmt.Sprintf("caller got %d, want carol's own 486", code))
	}
	got := d.um.since(umMark)
	fmt.Fprint(d.out, "   voicemail server received: ")
	if len(got) == 0 {
		fmt.Fprintln(d.out, "nothing")
	} else {
		fmt.Fprintf(d.out, "INVITE %s\n", got[0].Recipient.String())
		sc.Problems = append(sc.Problems, "the call was diverted to the voicemail server: "+got[0].Recipient.String())
	}
	after, err := d.scrape(ctx)
	if err != nil {
		sc.Problems = append(sc.Problems, err.Error())
		return sc
	}
	diff := after.diff(before, "sipproxy_forwarding_total")
	var suppressed []string
	for _, k := range []string{"immediate", "unanswered", "busy"} {
		if diff[fmt.Sprintf(`sipproxy_forwarding_total{kind=%q,outcome="suppressed"}`, k)] > 0 {
			suppressed = append(suppressed, k)
		}
	}
	if len(suppressed) == 0 {
		fmt.Fprintln(d.out, "   forwarding suppressed: none")
	} else {
		fmt.Fprintf(d.out, "   forwarding suppressed: %s (carol's rules; not applied to this call)\n", strings.Join(suppressed, ", "))
	}
	fmt.Fprintf(d.out, "   counted: %s\n", describeDiff(diff))
	want := map[string]float64{
		`sipproxy_forwarding_total{kind="busy",outcome="suppressed"}`:       1,
		`sipproxy_forwarding_total{kind="unanswered",outcome="suppressed"}`: 1,
	}
	if !sameDiff(diff, want) {
		sc.Problems = append(sc.Problems, fmt.Sprintf("forwarding counters changed by %s, want %s", describeDiff(diff), describeDiff(want)))
	}
	fmt.Fprintln(d.out, "   * in production UM is a trusted peer (peers:) and is not challenged; the embedded")
	fmt.Fprintln(d.out, "     default has no peers, so the stand-in authenticates with carol's demo password")
	// The verdict right after the call it judges: printed after the
	// control call it read as the control call's verdict.
	d.verdict(sc.Problems, "no diversion: UM hears carol's real answer, her forwarding is suppressed")
	seen := len(sc.Problems)

	// Control: without the header the same busy phone diverts to voicemail,
	// so "received nothing" above is the header's doing.
	fmt.Fprintln(d.out, "\n   For contrast, the same busy phone without Ms-Sensitivity: alice calls carol (TLS)")
	before = after
	umMark = d.um.mark()
	code, reasonPhrase, err = d.alice.call(ctx, "tls", d.alice.dlg, aorURI("alice"), carol)
	if err != nil && code == 0 {
		sc.Problems = append(sc.Problems, "control call: "+err.Error())
	}
	got = d.um.since(umMark)
	fmt.Fprintln(d.out, "   voicemail server received:")
	if len(got) == 0 {
		fmt.Fprintln(d.out, "            nothing")
		sc.Problems = append(sc.Problems, "control call: carol's busy rule did not divert to the voicemail server")
	} else {
		req := got[0]
		fmt.Fprintf(d.out, "            INVITE %s  (proxy to UM over %s)\n", req.Recipient.String(), req.Transport())
		for _, v := range headerValues(req, "Diversion") {
			fmt.Fprintf(d.out, "            Diversion: %s\n", v)
		}
		if req.Recipient.User != "carol" || !hasParam(req.Recipient, "opaque", "app:voicemail") {
			sc.Problems = append(sc.Problems, "control call reached the voicemail server as "+req.Recipient.String()+", not carol's mailbox")
		}
		if div := strings.Join(headerValues(req, "Diversion"), ", "); !strings.Contains(div, "reason=user-busy") {
			sc.Problems = append(sc.Problems, fmt.Sprintf("control call: Diversion %q does not say user-busy", div))
		}
	}
	fmt.Fprintf(d.out, "   caller got %d %s\n", code, reasonPhrase)
	if code != sip.StatusOK {
		sc.Problems = append(sc.Problems, fmt.Sprintf("control call: caller got %d, want 200 from the voicemail server", code))
	}
	if after, err = d.scrape(ctx); err != nil {
		sc.Problems = append(sc.Problems, err.Error())
		return sc
	}
	diff = after.diff(before, "sipproxy_forwarding_total")
	fmt.Fprintf(d.out, "   counted: %s\n", describeDiff(diff))
	if want := map[string]float64{`sipproxy_forwarding_total{kind="busy",outcome="applied"}`: 1}; !sameDiff(diff, want) {
		sc.Problems = append(sc.Problems, fmt.Sprintf("control call: forwarding counters changed by %s, want %s", describeDiff(diff), describeDiff(want)))
	}
	d.verdict(sc.Problems[seen:], "without the header carol's busy rule diverts to her voicemail")
	return sc
}

// verdict closes a call's section: what it showed, or the problems found.
func (d *run) verdict(problems []string, what string) {
	if len(problems) == 0 {
		fmt.Fprintf(d.out, "   => %s   [ok]\n", what)
		return
	}
	fmt.Fprintf(d.out, "   => NOT AS DESCRIBED: %s\n", strings.Join(problems, "; "))
}

// --- user agents ---

// agent is a sipgo user agent playing a phone or the voicemail server.
type agent struct {
	d      *run
	name   string
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	dlg    *sipgo.DialogUA
	addr   netip.AddrPort // where it listens

	onInvite func(a *agent, req *sip.Request, tx sip.ServerTransaction) // set before it listens

	mu       sync.Mutex
	received []*sip.Request // INVITEs, in arrival order
	sessions []*sipgo.DialogServerSession
}

// newAgent starts a user agent listening on addr over transport ("tls" or
// "tcp") that handles INVITEs with onInvite.
func newAgent(d *run, name, transport string, addr netip.AddrPort, onInvite func(*agent, *sip.Request, sip.ServerTransaction)) (*agent, error) {
	log := d.log.With("component", "demo-"+name)
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("sipproxy-demo-"+name),
		sipgo.WithUserAgentHostname(domain),
		sipgo.WithUserAgenTLSConfig(&tls.Config{RootCAs: d.proxyCAs, MinVersion: tls.VersionTLS12}),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(log),
			sip.WithTransactionLayerUnhandledResponseHandler(func(*sip.Response) {}),
		),
	)
	if err != nil {
		return nil, err
	}
	a := &agent{d: d, name: name, ua: ua, onInvite: onInvite}
	d.cleanup = append(d.cleanup, func() { ua.Close() })
	if a.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(log)); err != nil {
		return nil, err
	}
	if a.client, err = sipgo.NewClient(ua, sipgo.WithClientLogger(log), sipgo.WithClientHostname("127.0.0.1")); err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, err
	}
	a.addr = ln.Addr().(*net.TCPAddr).AddrPort()
	serve := func() error { return a.srv.ServeTCP(ln) }
	if transport == "tls" {
		cert, err := pki.SelfSigned("127.0.0.1")
		if err != nil {
			ln.Close()
			return nil, err
		}
		tl := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		serve = func() error { return a.srv.ServeTLS(tl) }
	}
	d.cleanup = append(d.cleanup, func() { ln.Close() })
	go func() {
		if err := serve(); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Debug("listener stopped", "error", err)
		}
	}()

	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: name, Host: a.addr.Addr().String(), Port: int(a.addr.Port()), UriParams: sip.NewParams()}}
	contact.Address.UriParams.Add("transport", transport)
	a.dlg = &sipgo.DialogUA{Client: a.client, ContactHDR: contact}

	a.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		a.mu.Lock()
		a.received = append(a.received, req)
		a.mu.Unlock()
		a.onInvite(a, req, tx)
	})
	a.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, s := range a.sessions {
			_ = s.ReadAck(req, tx)
		}
	})
	a.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	a.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	return a, nil
}

func (a *agent) password() string { return a.name + "-secret" }

// mark and since select the INVITEs received after a point.
func (a *agent) mark() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.received)
}

func (a *agent) since(mark int) []*sip.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*sip.Request(nil), a.received[mark:]...)
}

// answer is the voicemail server: it answers every call.
func answer(a *agent, req *sip.Request, tx sip.ServerTransaction) {
	sess, err := a.dlg.ReadInvite(req, tx)
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusInternalServerError, "Demo Error", nil))
		return
	}
	a.mu.Lock()
	a.sessions = append(a.sessions, sess)
	a.mu.Unlock()
	_ = sess.Respond(sip.StatusRinging, "Ringing", nil)
	_ = sess.RespondSDP([]byte(demoSDP))
	<-tx.Done()
}

// busy is carol's phone: she is on another call.
func busy(_ *agent, req *sip.Request, tx sip.ServerTransaction) {
	_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBusyHere, "Busy Here", nil))
}

func (a *agent) proxyAddr(transport string) string { return a.d.srv.Addr(transport) }

// register binds the agent's Contact for its user, answering the challenge.
// It registers over the transport its Contact names.
func (a *agent) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	transport := "tcp"
	if v, _ := a.dlg.ContactHDR.Address.UriParams.Get("transport"); v != "" {
		transport = v
	}
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: domain})
	from := &sip.FromHeader{Address: aorURI(a.name), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aorURI(a.name)})
	req.AppendHeader(a.dlg.ContactHDR.Clone())
	req.AppendHeader(sip.NewHeader("Expires", "300"))
	route := func() {
		req.SetTransport(strings.ToUpper(transport))
		req.SetDestination(a.proxyAddr(transport))
	}
	route()
	res, err := a.client.Do(ctx, req)
	if err == nil && res.StatusCode == sip.StatusUnauthorized {
		route()
		res, err = a.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: a.name, Password: a.password()})
	}
	if err != nil {
		return err
	}
	if res.StatusCode != sip.StatusOK {
		return fmt.Errorf("%d %s", res.StatusCode, res.Reason)
	}
	return nil
}

// call places an INVITE as the agent's own user and returns the final
// status; a 2xx dialog is acknowledged and hung up at once.
func (a *agent) call(ctx context.Context, transport string, dlg *sipgo.DialogUA, from, target sip.Uri, headers ...sip.Header) (int, string, error) {
	return a.callAs(ctx, transport, dlg, a.name, from, target, headers...)
}

// callAs places an INVITE From from to target (To = target), answering a
// challenge with authUser's demo password.
func (a *agent) callAs(ctx context.Context, transport string, dlg *sipgo.DialogUA, authUser string, from, target sip.Uri, headers ...sip.Header) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req := sip.NewRequest(sip.INVITE, target)
	fh := &sip.FromHeader{Address: from, Params: sip.NewParams()}
	fh.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(fh)
	req.AppendHeader(&sip.ToHeader{Address: target}) // a mailbox keeps ;opaque in To, as in MS-OCEXUM 4.1
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	for _, h := range headers {
		req.AppendHeader(h)
	}
	req.SetBody([]byte(demoSDP))
	req.SetTransport(strings.ToUpper(transport))
	req.SetDestination(a.proxyAddr(transport))
	sess, err := dlg.WriteInvite(ctx, req)
	if err != nil {
		return 0, "", err
	}
	defer sess.Close()
	err = sess.WaitAnswer(ctx, sipgo.AnswerOptions{Username: authUser, Password: authUser + "-secret"})
	var de *sipgo.ErrDialogResponse
	switch {
	case err == nil:
		code, reason := sess.InviteResponse.StatusCode, sess.InviteResponse.Reason
		if aerr := sess.Ack(ctx); aerr != nil {
			return code, reason, fmt.Errorf("ACK: %w", aerr)
		}
		if berr := sess.Bye(ctx); berr != nil {
			return code, reason, fmt.Errorf("BYE: %w", berr)
		}
		return code, reason, nil
	case errors.As(err, &de):
		return de.Res.StatusCode, de.Res.Reason, nil
	default:
		return 0, "", err
	}
}

// --- SIP helpers ---

func headerValues(req *sip.Request, name string) []string {
	var out []string
	for _, h := range req.GetHeaders(name) {
		out = append(out, h.Value())
	}
	return out
}

func headerValue(req *sip.Request, name string) string {
	return strings.Join(headerValues(req, name), ", ")
}

func hasParam(u sip.Uri, key, value string) bool {
	if u.UriParams == nil {
		return false
	}
	v, ok := u.UriParams.Get(key)
	return ok && strings.EqualFold(v, value)
}

// --- metrics ---

// sample is one scrape: series (name{labels}) -> value, plus the raw text.
type sample struct {
	values map[string]float64
	text   []byte
}

func (d *run) scrape(ctx context.Context) (*sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.metricsURL, nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", d.metricsURL, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", d.metricsURL, res.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", d.metricsURL, err)
	}
	s := &sample{values: map[string]float64{}, text: body}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var v float64
			switch {
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			default:
				continue
			}
			s.values[seriesName(name, m.GetLabel())] = v
		}
	}
	return s, nil
}

// seriesName renders name{k="v",...} with labels in the order the
// exposition gives them (sorted by name).
func seriesName(name string, labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return name
	}
	parts := make([]string, len(labels))
	for i, l := range labels {
		parts[i] = fmt.Sprintf("%s=%q", l.GetName(), l.GetValue())
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// diff lists the series of a family whose value changed since before.
func (s *sample) diff(before *sample, family string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range s.values {
		if !strings.HasPrefix(k, family+"{") && k != family {
			continue
		}
		if dv := v - before.values[k]; dv != 0 {
			out[k] = dv
		}
	}
	return out
}

func sameDiff(got, want map[string]float64) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func describeDiff(diff map[string]float64) string {
	if len(diff) == 0 {
		return "nothing"
	}
	keys := make([]string, 0, len(diff))
	for k := range diff {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s +%s", k, strconv.FormatFloat(diff[k], 'g', -1, 64))
	}
	return strings.Join(parts, ", ")
}

// metricLines are the exposition lines of the two MS-OCEXUM counters.
func (d *run) metricLines(ctx context.Context) ([]string, error) {
	s, err := d.scrape(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(s.text))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "sipproxy_skip_pin_total") || strings.HasPrefix(l, "sipproxy_forwarding_total") {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}
