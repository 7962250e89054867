package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/config"
	"github.com/sipproxy/sipproxy/internal/resolve"
	"github.com/sipproxy/sipproxy/metrics"
	"github.com/sipproxy/sipproxy/proxy/auth"
	"github.com/sipproxy/sipproxy/proxy/limits"
	"github.com/sipproxy/sipproxy/proxy/registrar"
	"github.com/sipproxy/sipproxy/proxy/router"
	"github.com/sipproxy/sipproxy/proxy/state"
	"github.com/sipproxy/sipproxy/proxy/upstream"
	"github.com/sipproxy/sipproxy/rules"
)

// writeTimeout is how long a write to a TCP/TLS peer may make no progress
// before the connection is given up (up to 1.5 times it; see stallGuardConn).
const writeTimeout = 10 * time.Second

// Options are the collaborators a Server needs besides its configuration.
type Options struct {
	Logger  *slog.Logger
	Metrics *metrics.Metrics // required
	// Rules is the forwarding rule store; nil means no forwarding rules.
	Rules *rules.Store
	// Runtime is cfg provisioned (config.Provision), for a caller that
	// needs it too (the demo trusts the generated certificate); nil: New
	// provisions cfg itself.
	Runtime *config.Runtime
}

// Server is a running proxy: listeners, pipeline and the state it keeps
// (registrar bindings, in-flight calls).
type Server struct {
	cfg   *config.Config
	rt    *config.Runtime // what cfg provisioned: certificates, parsed URIs and prefixes
	log   *slog.Logger
	m     *metrics.Metrics
	rules *rules.Store

	ua     *sipgo.UserAgent
	sip    *sipgo.Server
	client *sipgo.Client

	router *router.Router // where requests go; knows our addresses once Start bound them

	// Reaching servers by name (RFC 3263) and keeping the voicemail
	// servers' health.
	resolver *resolve.Resolver
	vmPool   *upstream.Pool // nil without voicemail
	// tlsInsecure: the operator turned TLS verification off (tls_client).
	tlsInsecure bool
	// Bindings and dialogs beyond this process (statestore.go).
	state    state.Store
	instance string // this instance's name in the state store

	reg    *registrar.Registrar
	digest *auth.Digest
	peers  *auth.Peers

	certs     *peerCerts
	malformed *malformedReporter // what does not parse: counted, summarised
	flows     flowTokens
	dialogs   *dialogs // calls record-routed through us, for the drain

	// Abuse limits; nil when turned off.
	rate  *limits.RateLimiter
	flood *limits.RateLimiter // rate x5: beyond it, bytes are dropped unparsed
	fails *limits.FailureTracker
	conns *limits.ConnLimiter

	listeners []*listener
	byTrans   map[string]*listener // first listener of each transport: our Via/Record-Route on it
	// datagrams are the UDP listeners' sockets by bound address, for the
	// read filter (datagramConn). Written by Start before any is served.
	datagrams map[netip.AddrPort]*datagramConn

	active   atomic.Int64 // server transactions in the pipeline
	draining atomic.Bool
	started  atomic.Bool
	cancel   context.CancelFunc
}

// listener is one bound socket and how we name it in Via and Record-Route.
type listener struct {
	transport string // udp, tcp, tls
	bound     netip.AddrPort
	host      string // advertised host
	port      int
	closer    io.Closer
}

func (l *listener) hostport() string { return net.JoinHostPort(l.host, strconv.Itoa(l.port)) }

// New builds a Server from a validated configuration. Nothing is bound until Start.
func New(cfg *config.Config, opt Options) (*Server, error) {
	if opt.Metrics == nil {
		return nil, errors.New("proxy: metrics are required")
	}
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		cfg:       cfg,
		log:       log,
		m:         opt.Metrics,
		rules:     opt.Rules,
		certs:     newPeerCerts(),
		byTrans:   make(map[string]*listener),
		datagrams: make(map[netip.AddrPort]*datagramConn),
	}
	prov := opt.Runtime
	if prov == nil {
		var err error
		if prov, err = config.Provision(cfg); err != nil {
			return nil, fmt.Errorf("provision: %w", err)
		}
	}
	s.rt = prov
	rt, err := router.New(routerConfig(cfg, prov))
	if err != nil {
		return nil, err
	}
	s.router = rt
	if err := s.newUpstream(); err != nil {
		return nil, err
	}

	// Record-Route tokens outlive this process when auth.secret is set: an
	// instance restarted at the same address (a rolling upgrade), or a
	// sibling sharing the secret, can still read the flows of the dialogs it
	// record-routed (for identified senders; others need a dialog this
	// process saw set up, see dialogs).
	key := make([]byte, 32)
	if cfg.Auth.Secret != "" {
		m := hmac.New(sha256.New, []byte(cfg.Auth.Secret))
		m.Write([]byte("sipproxy record-route tokens"))
		key = m.Sum(nil)
	} else if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	s.flows = newFlowTokens(key)

	secret := []byte(cfg.Auth.Secret)
	if len(secret) == 0 {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
	}
	creds := make(map[string]auth.Credentials, len(cfg.Auth.Users))
	for _, u := range cfg.Auth.Users {
		creds[u.User] = auth.CredentialsFor(cfg.Auth.Realm, u)
	}
	s.digest = auth.NewDigest(auth.DigestConfig{
		Realm:      cfg.Auth.Realm,
		Users:      creds,
		Secret:     secret,
		NonceTTL:   cfg.Auth.NonceTTL.Duration,
		Algorithms: cfg.Auth.Algorithms,
	})
	s.peers = auth.NewPeers(s.rt.Peers)
	s.dialogs = newDialogs(12*time.Hour, s.m.DialogsActive)
	if err := s.newLimits(); err != nil {
		return nil, err
	}

	st, err := s.openState()
	if err != nil {
		return nil, err
	}
	s.state = st
	reg, err := registrar.New(registrar.Options{Active: s.m.RegistrationsActive,
		Store: s.state, Instance: s.instance, Advertise: s.advertisedOn, Logger: log})
	if err != nil {
		return nil, err
	}
	s.reg = reg

	parser := strictParser(cfg.Limits.MaxMessageBytes)
	idle := cfg.Limits.IdleTimeout.Duration
	// sipgo logs through sipLog: what outsiders send reaches the
	// operator's log only as malformed summaries (see sipgoLog). The TCP and
	// TLS transports configured here log through sipgo's package default
	// instead (sipgo sets their logger only on the transports it makes
	// itself): see SIPDefaultLogger.
	s.malformed = newMalformedReporter(log, s.m.Malformed)
	sipLog := slog.New(newSipgoLog(log.Handler(), s.malformed))
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("sipproxy"),
		sipgo.WithUserAgentParser(parser),
		sipgo.WithUserAgenTLSConfig(s.clientTLS(prov.TLSClient)),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(sipLog),
			// Before the transports: sipgo gives a transport passed in
			// the read filter set when it is passed.
			sip.WithTransportLayerReadFilter(s.readFilter),
			sip.WithTransportLayerTransports(sip.TransportsConfig{
				TCP: &sip.TransportTCP{ReadTimeout: idle, WriteTimeout: writeTimeout},
				TLS: &sip.TransportTLS{TransportTCP: &sip.TransportTCP{ReadTimeout: idle, WriteTimeout: writeTimeout}},
			}),
		),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sipLog),
			sip.WithTransactionLayerUnhandledResponseHandler(s.strayResponse),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("sip user agent: %w", err)
	}
	s.ua = ua
	s.sip, err = sipgo.NewServer(ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		return nil, err
	}
	s.client, err = sipgo.NewClient(ua, sipgo.WithClientLogger(sipLog))
	if err != nil {
		return nil, err
	}
	// One entry point for every method: the pipeline decides, not a method table.
	s.sip.OnNoRoute(s.handle)
	return s, nil
}

// newLimits builds the abuse limits from limits: in the configuration.
// Trusted peers' sources are exempt: a gateway carries many users.
func (s *Server) newLimits() error {
	lc := s.cfg.Limits
	var exempt []netip.Prefix
	for _, p := range s.rt.Peers {
		exempt = append(exempt, p.Prefixes...)
	}
	var err error
	if lc.RequestsPerSecond > 0 {
		s.rate, err = limits.NewRateLimiter(limits.RateConfig{Rate: float64(lc.RequestsPerSecond), Burst: lc.Burst, Exempt: exempt})
		if err != nil {
			return fmt.Errorf("limits: %w", err)
		}
		s.flood, err = limits.NewRateLimiter(limits.RateConfig{Rate: 5 * float64(lc.RequestsPerSecond), Burst: 5 * lc.Burst, Exempt: exempt})
		if err != nil {
			return fmt.Errorf("limits: %w", err)
		}
	}
	if lc.AuthFailures > 0 {
		s.fails, err = limits.NewFailureTracker(limits.FailureConfig{
			MaxFailures: lc.AuthFailures, Window: lc.AuthFailureWindow.Duration, BlockFor: lc.AuthBlock.Duration, Exempt: exempt,
		})
		if err != nil {
			return fmt.Errorf("limits: %w", err)
		}
	}
	if lc.ConnectionsPerSource > 0 {
		s.conns = limits.NewConnLimiter(lc.ConnectionsPerSource, exempt...)
	}
	return nil
}

func (s *Server) clientTLS(c config.TLSClientRuntime) *tls.Config {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            c.RootCAs,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // operator's explicit choice, warned by check
	}
	if c.Certificate != nil {
		tc.Certificates = []tls.Certificate{*c.Certificate}
	}
	s.verifyByName(tc)
	return tc
}

// readFilter runs on raw bytes before sipgo parses them: the cheapest place
// to refuse. A datagram or read larger than max_message_bytes, or from a
// source sending far beyond its rate (a flood: five times the configured
// rate and burst), is dropped unparsed; a TCP or TLS connection doing so is
// closed (dropping bytes from a stream would break its framing). Sources
// merely over their rate are answered 503 by the pipeline instead.
func (s *Server) readFilter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	stream := p.Transport != "UDP"
	if !stream {
		if a, ok := p.LocalAddr.(*net.UDPAddr); ok {
			if dc := s.datagrams[a.AddrPort()]; dc != nil {
				data = dc.whole(data)
			}
		}
	}
	if len(data) > s.cfg.Limits.MaxMessageBytes {
		s.m.Throttled.WithLabelValues("message_size").Inc()
		if stream {
			return nil, fmt.Errorf("read of %d bytes exceeds max_message_bytes", len(data))
		}
		return nil, nil // never an error on UDP: sipgo would stop the listener
	}
	if s.flood != nil {
		if src, ok := sourceAddr(p.RemoteAddr); ok {
			if allowed, _ := s.flood.Allow(src); !allowed {
				s.m.Throttled.WithLabelValues("flood").Inc()
				if stream {
					return nil, fmt.Errorf("source %s is flooding", src)
				}
				return nil, nil
			}
		}
	}
	return data, nil
}

func sourceAddr(a net.Addr) (netip.Addr, bool) {
	if n, ok := a.(namedAddr); ok {
		// An accepted TCP/TLS connection's address (stallGuardConn).
		a = n.Addr
	}
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap(), true
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// warnIgnoredCN says why a peer's certificate does not make it a peer when
// the only reason is its subject CN: a certificate with subjectAltNames is
// matched on its DNS SANs alone (auth.CertificateNames), which breaks
// gateways whose name is only in the CN. Once per connection.
func (s *Server) warnIgnoredCN(remote string, cert *x509.Certificate) {
	cn := cert.Subject.CommonName
	if cn == "" || slices.ContainsFunc(auth.CertificateNames(cert), func(n string) bool { return strings.EqualFold(n, cn) }) {
		return
	}
	for _, p := range s.cfg.Peers {
		if slices.ContainsFunc(p.TLSNames, func(n string) bool { return strings.EqualFold(n, cn) }) {
			s.log.Warn("client certificate names a peer only in its subject CN, which is ignored when the certificate has subjectAltNames; put the name in a DNS subjectAltName",
				"peer", p.Name, "cn", cn, "remote", remote)
			return
		}
	}
}

// strayResponse handles a response that matches no client transaction. A
// 2xx to an INVITE is forwarded statelessly along its Via (RFC 6026 7.2:
// retransmissions of the answer after our transaction ended, or the answer
// of a second fork); anything else is dropped (RFC 3261 16.7 lets a
// stateful proxy absorb it).
func (s *Server) strayResponse(res *sip.Response) {
	cseq := res.CSeq()
	if !res.IsSuccess() || cseq == nil || cseq.MethodName != sip.INVITE || !cleanResponse(res) {
		return
	}
	via := res.Via()
	if via == nil || !s.router.IsOurAddress(via.Host, via.Port, via.Transport) {
		return
	}
	// Nothing is learned from it for the dialog table: anyone can send a
	// 2xx with our Via on top, and a retransmitted 2xx of a re-INVITE is
	// not a new fork.
	up := res.Clone()
	up.RemoveHeader("Via")
	next := up.Via()
	if next == nil {
		return
	}
	up.SetTransport(next.Transport)
	up.SetDestination("") // derived from the Via: received and rport, as we stamped them
	if err := s.writeResponse(up); err != nil {
		s.log.Debug("stray 2xx not forwarded", "error", err)
	}
}

// writeResponse sends a response outside any transaction: over UDP from our
// listening socket, over TCP/TLS on the connection the request came in on.
func (s *Server) writeResponse(res *sip.Response) error {
	tp := s.ua.TransportLayer()
	if !sip.IsReliable(res.Transport()) {
		l, ok := s.byTrans["udp"]
		if !ok {
			return errors.New("no UDP listener")
		}
		c, err := tp.GetConnection("udp", l.bound.String())
		if err != nil {
			return err
		}
		defer c.TryClose()
		return c.WriteMsg(res)
	}
	return tp.WriteMsg(res)
}

// Start binds every configured listener and serves them. A bind error is
// returned before anything is served.
func (s *Server) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	serve := make([]func() error, 0, len(s.rt.Listeners))
	for _, lc := range s.rt.Listeners {
		l, run, err := s.bind(lc)
		if err != nil {
			cancel()
			for _, done := range s.listeners {
				done.closer.Close()
			}
			return fmt.Errorf("listen %s %s: %w", lc.Transport, lc.Addr, err)
		}
		s.addListener(l)
		serve = append(serve, run)
	}
	for i, run := range serve {
		l := s.listeners[i]
		go func() {
			if err := run(); err != nil && !errors.Is(err, net.ErrClosed) && !s.draining.Load() {
				s.log.Error("listener stopped", "transport", l.transport, "addr", l.bound.String(), "error", err)
			}
		}()
	}
	go s.reg.Run(ctx, 5*time.Second)
	go s.dialogs.sweep(ctx, time.Minute)
	go s.runProber(ctx)
	s.started.Store(true)
	for _, l := range s.listeners {
		s.log.Info("listening", "transport", l.transport, "addr", l.bound.String(), "advertise", l.hostport())
	}
	return nil
}

func (s *Server) bind(lc config.ListenerRuntime) (*listener, func() error, error) {
	l := &listener{transport: lc.Transport}
	var run func() error
	switch lc.Transport {
	case "udp":
		pc, err := net.ListenPacket("udp", lc.Addr)
		if err != nil {
			return nil, nil, err
		}
		l.closer = pc
		l.bound = pc.LocalAddr().(*net.UDPAddr).AddrPort()
		dc := newDatagramConn(pc, s.cfg.Limits.MaxMessageBytes)
		s.datagrams[l.bound] = dc
		run = func() error { return s.sip.ServeUDP(dc) }
	case "tcp", "tls":
		ln, err := net.Listen("tcp", lc.Addr)
		if err != nil {
			return nil, nil, err
		}
		l.closer = ln
		l.bound = ln.Addr().(*net.TCPAddr).AddrPort()
		if s.conns != nil {
			// Under TLS: a refused connection costs no handshake.
			ln = limits.LimitListener(ln, s.conns, func(netip.Addr) {
				s.m.Throttled.WithLabelValues("connections").Inc()
			})
		}
		ln = stallGuardListener{Listener: ln, timeout: writeTimeout}
		if lc.Transport == "tcp" {
			run = func() error { return s.sip.ServeTCP(ln) }
			break
		}
		if lc.Certificate == nil {
			ln.Close()
			return nil, nil, errors.New("no certificate loaded")
		}
		tc := &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*lc.Certificate},
		}
		if lc.ClientCAs != nil {
			// A certificate is optional (digest still works), but one that is
			// presented must chain to client_ca.
			tc.ClientCAs = lc.ClientCAs
			tc.ClientAuth = tls.VerifyClientCertIfGiven
		}
		tl := &tlsListener{
			Listener:         ln,
			config:           tc,
			handshakeTimeout: s.cfg.Limits.TLSHandshake.Duration,
			certs:            s.certs,
			onHandshakeError: func(remote string, err error) {
				s.log.Debug("tls handshake failed", "remote", remote, "error", err)
			},
			onCertificate: s.warnIgnoredCN,
		}
		run = func() error { return s.sip.ServeTLS(tl) }
	default:
		return nil, nil, fmt.Errorf("unknown transport %q", lc.Transport)
	}
	l.port = int(l.bound.Port())
	l.host = lc.Advertise
	if l.host == "" {
		l.host = s.cfg.Server.Advertise
	}
	if l.host == "" {
		l.host = l.bound.Addr().Unmap().String()
	}
	return l, run, nil
}

// addListener records a bound listener: the first of each transport names
// us in Via and Record-Route on it, and the router learns the address.
func (s *Server) addListener(l *listener) {
	s.listeners = append(s.listeners, l)
	if _, ok := s.byTrans[l.transport]; !ok {
		s.byTrans[l.transport] = l
	}
	ls := make([]router.Listener, len(s.listeners))
	for i, l := range s.listeners {
		ls[i] = router.Listener{Transport: l.transport, Host: l.host, Port: l.port, Bound: l.bound}
	}
	s.router = s.router.WithListeners(ls)
}

// routerConfig is the router's slice of the configuration.
func routerConfig(cfg *config.Config, rt *config.Runtime) router.Config {
	rc := router.Config{Domains: cfg.Server.Domains}
	for _, u := range cfg.Auth.Users {
		rc.Users = append(rc.Users, u.User)
	}
	rc.Voicemail = rt.Voicemail
	for _, r := range rt.Routes {
		rc.Routes = append(rc.Routes, router.Route{Domain: r.Domain, NextHop: r.NextHop})
	}
	for _, p := range rt.Peers {
		rc.Peers = append(rc.Peers, router.Peer{Name: p.Name, Names: p.TLSNames, Prefixes: p.Prefixes})
	}
	return rc
}

// Addr returns the bound address of the first listener of a transport
// ("udp", "tcp", "tls"), or "" when there is none. Useful with port 0.
func (s *Server) Addr(transport string) string {
	if l, ok := s.byTrans[transport]; ok {
		return l.bound.String()
	}
	return ""
}

// Addrs lists every bound listener as "transport ip:port".
func (s *Server) Addrs() []string {
	out := make([]string, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.transport + " " + l.bound.String()
	}
	return out
}

// Ready reports whether the proxy serves SIP and is not draining.
func (s *Server) Ready() bool { return s.started.Load() && !s.draining.Load() }

// Registrar exposes the bindings (for tests and the demo).
func (s *Server) Registrar() *registrar.Registrar { return s.reg }

// Shutdown drains: new connections and new out-of-dialog requests are
// refused (503), transactions in flight finish and calls established
// through us end (their BYE passes), then the sockets close.
// It returns ctx's error if the drain did not finish in time.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	for _, l := range s.listeners {
		if l.transport != "udp" {
			l.closer.Close() // stop accepting; live connections keep serving
		}
	}
	// Wait for the transactions in flight and for the calls established
	// through us: their BYE still has to pass.
	var err error
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for err == nil && (s.active.Load() > 0 || s.dialogs.active() > 0) {
		select {
		case <-tick.C:
		case <-ctx.Done():
			err = fmt.Errorf("drain: %d transactions and %d calls still active: %w", s.active.Load(), s.dialogs.active(), ctx.Err())
		}
	}
	for _, l := range s.listeners {
		if l.transport == "udp" {
			l.closer.Close()
		}
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.ua.Close()
	s.closeState()
	return err
}
