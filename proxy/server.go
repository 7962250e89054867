package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/config"
	"github.com/sipproxy/sipproxy/metrics"
	"github.com/sipproxy/sipproxy/proxy/auth"
	"github.com/sipproxy/sipproxy/proxy/registrar"
	"github.com/sipproxy/sipproxy/rules"
)

// Options are the collaborators a Server needs besides its configuration.
type Options struct {
	Logger  *slog.Logger
	Metrics *metrics.Metrics // required
	// Rules is the forwarding rule store; nil means no forwarding rules.
	Rules *rules.Store
}

// Server is a running proxy: listeners, pipeline and the state it keeps
// (registrar bindings, in-flight calls).
type Server struct {
	cfg   *config.Config
	log   *slog.Logger
	m     *metrics.Metrics
	rules *rules.Store

	ua     *sipgo.UserAgent
	sip    *sipgo.Server
	client *sipgo.Client

	reg    *registrar.Registrar
	digest *auth.Digest
	peers  *auth.Peers
	users  map[string]bool
	domain map[string]bool

	certs *peerCerts
	flows flowTokens

	listeners []*listener
	byTrans   map[string]*listener // first listener of each transport: our Via/Record-Route on it

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
		cfg:     cfg,
		log:     log,
		m:       opt.Metrics,
		rules:   opt.Rules,
		certs:   newPeerCerts(),
		users:   make(map[string]bool),
		domain:  make(map[string]bool),
		byTrans: make(map[string]*listener),
	}
	for _, d := range cfg.Server.Domains {
		s.domain[strings.ToLower(d)] = true
	}

	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	s.flows = flowTokens{key: key}

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
		s.users[u.User] = true
	}
	s.digest = auth.NewDigest(auth.DigestConfig{
		Realm:      cfg.Auth.Realm,
		Users:      creds,
		Secret:     secret,
		NonceTTL:   cfg.Auth.NonceTTL.Duration,
		Algorithms: cfg.Auth.Algorithms,
	})
	s.peers = auth.NewPeers(cfg.Peers)

	reg, err := registrar.New(registrar.Options{Active: s.m.RegistrationsActive})
	if err != nil {
		return nil, err
	}
	s.reg = reg

	// sipgo keeps these as package settings; they are the same for every
	// Server, so setting them here is idempotent.
	sip.UDPMTUSize = 65000

	parser := sip.NewParser()
	parser.MaxMessageLength = cfg.Limits.MaxMessageBytes
	idle := cfg.Limits.IdleTimeout.Duration
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("sipproxy"),
		sipgo.WithUserAgentParser(parser),
		sipgo.WithUserAgenTLSConfig(clientTLS(cfg.Server.TLSClient)),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(log),
			sip.WithTransportLayerTransports(sip.TransportsConfig{
				TCP: &sip.TransportTCP{ReadTimeout: idle, WriteTimeout: 10 * time.Second},
				TLS: &sip.TransportTLS{TransportTCP: &sip.TransportTCP{ReadTimeout: idle, WriteTimeout: 10 * time.Second}},
			}),
			sip.WithTransportLayerReadFilter(s.readFilter),
		),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(log),
			sip.WithTransactionLayerUnhandledResponseHandler(func(*sip.Response) {}),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("sip user agent: %w", err)
	}
	s.ua = ua
	s.sip, err = sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		return nil, err
	}
	s.client, err = sipgo.NewClient(ua, sipgo.WithClientLogger(log))
	if err != nil {
		return nil, err
	}
	// One entry point for every method: the pipeline decides, not a method table.
	s.sip.OnNoRoute(s.handle)
	return s, nil
}

func clientTLS(c config.TLSClient) *tls.Config {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            c.RootCAs,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // operator's explicit choice, warned by check
	}
	if c.Certificate != nil {
		tc.Certificates = []tls.Certificate{*c.Certificate}
	}
	return tc
}

// readFilter enforces message limits before parsing: a peer that sends more
// than max_message_bytes in one read gets its connection closed.
func (s *Server) readFilter(_ sip.TransportReadProps, data []byte) ([]byte, error) {
	if len(data) > s.cfg.Limits.MaxMessageBytes {
		s.m.Throttled.WithLabelValues("message_size").Inc()
		return nil, fmt.Errorf("message of %d bytes exceeds max_message_bytes", len(data))
	}
	return data, nil
}

// Start binds every configured listener and serves them. A bind error is
// returned before anything is served.
func (s *Server) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	serve := make([]func() error, 0, len(s.cfg.Server.Listen))
	for _, lc := range s.cfg.Server.Listen {
		l, run, err := s.bind(lc)
		if err != nil {
			cancel()
			for _, done := range s.listeners {
				done.closer.Close()
			}
			return fmt.Errorf("listen %s %s: %w", lc.Transport, lc.Addr, err)
		}
		s.listeners = append(s.listeners, l)
		if _, ok := s.byTrans[l.transport]; !ok {
			s.byTrans[l.transport] = l
		}
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
	s.started.Store(true)
	for _, l := range s.listeners {
		s.log.Info("listening", "transport", l.transport, "addr", l.bound.String(), "advertise", l.hostport())
	}
	return nil
}

func (s *Server) bind(lc config.Listener) (*listener, func() error, error) {
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
		run = func() error { return s.sip.ServeUDP(pc) }
	case "tcp", "tls":
		ln, err := net.Listen("tcp", lc.Addr)
		if err != nil {
			return nil, nil, err
		}
		l.closer = ln
		l.bound = ln.Addr().(*net.TCPAddr).AddrPort()
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

// Addr returns the bound address of the first listener of a transport
// ("udp", "tcp", "tls"), or "" when there is none. Useful with port 0.
func (s *Server) Addr(transport string) string {
	if l, ok := s.byTrans[transport]; ok {
		return l.bound.String()
	}
	return ""
}

// Ready reports whether the proxy serves SIP and is not draining.
func (s *Server) Ready() bool { return s.started.Load() && !s.draining.Load() }

// Registrar exposes the bindings (for tests and the demo).
func (s *Server) Registrar() *registrar.Registrar { return s.reg }

// Shutdown drains: new connections and new out-of-dialog requests are
// refused (503), transactions in flight finish, then the sockets close.
// It returns ctx's error if the drain did not finish in time.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	for _, l := range s.listeners {
		if l.transport != "udp" {
			l.closer.Close() // stop accepting; live connections keep serving
		}
	}
	var err error
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for s.active.Load() > 0 && err == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
			err = fmt.Errorf("drain: %d transactions still active: %w", s.active.Load(), ctx.Err())
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
	return err
}
