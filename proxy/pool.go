package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/resolve"
	"github.com/sipproxy/sipproxy/proxy/router"
	"github.com/sipproxy/sipproxy/proxy/upstream"
)

// newUpstream builds what reaches servers by name: the RFC 3263 resolver
// and the voicemail pool with its health. Nothing is resolved or sent
// here; Start runs the prober.
func (s *Server) newUpstream() error {
	res, err := resolve.New(resolve.Options{Server: s.cfg.Server.Resolver})
	if err != nil {
		return fmt.Errorf("resolver: %w", err)
	}
	s.resolver = res
	if len(s.rt.Voicemail) == 0 {
		return nil
	}
	var retry time.Duration
	if s.cfg.Voicemail.ProbeInterval.Duration <= 0 {
		// Without probes only calls can bring a target back: offer it
		// again after a while, or two failed calls would remove it for good.
		retry = 30 * time.Second
	}
	s.vmPool, err = upstream.New(upstream.Config{
		URIs:      s.rt.Voicemail,
		Resolver:  res,
		Up:        s.m.UpstreamUp,
		Failovers: s.m.UpstreamFailovers,
		Log:       s.log,
		Retry:     retry,
	})
	if err != nil {
		return fmt.Errorf("voicemail pool: %w", err)
	}
	return nil
}

// runProber probes the voicemail servers with OPTIONS until ctx ends.
func (s *Server) runProber(ctx context.Context) {
	if s.vmPool == nil || s.cfg.Voicemail.ProbeInterval.Duration <= 0 {
		return
	}
	s.vmPool.NewProber(s.probe, s.cfg.Voicemail.ProbeInterval.Duration, s.cfg.Server.NoResponseTimeout.Duration).Run(ctx)
}

// probe sends one OPTIONS to an endpoint (as Kamailio's dispatcher does)
// and waits for its final answer.
func (s *Server) probe(ctx context.Context, e upstream.Endpoint) error {
	t := router.Target{Host: e.Host, Port: e.Port, Transport: e.Transport}
	s.tlsNames.learn(e)
	l := s.listenerFor(e.Transport)
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: uriHost(e.Host), Port: e.Port})
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: sip.NetworkToUpper(e.Transport),
		Host: uriHost(l.host), Port: l.port, Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	me := sip.Uri{Scheme: "sip", User: "sipproxy", Host: uriHost(l.host), Port: l.port}
	from := &sip.FromHeader{Address: me, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: req.Recipient})
	cid := sip.CallIDHeader(sip.GenerateTagN(16) + "@sipproxy.probe")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.NewHeader("Content-Length", "0"))
	req.SetTransport(sip.NetworkToUpper(e.Transport))
	req.SetDestination(t.Addr())
	if e.Transport == "udp" {
		if lu, ok := s.byTrans["udp"]; ok {
			req.Laddr = sip.Addr{IP: net.IP(lu.bound.Addr().AsSlice()), Port: lu.port}
		}
	}
	// Connection set-up is bounded as a call's is: a call that shares
	// this dial (sipgo dials once per address) must not wait longer.
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	tx, err := s.client.TransactionRequest(dctx, req, noBuild)
	cancel()
	if err != nil {
		return err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return upstream.ResponseError(res.StatusCode)
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return err
			}
			return errors.New("transaction ended without a final answer")
		case <-ctx.Done():
			return fmt.Errorf("no final answer: %w", ctx.Err())
		}
	}
}

// expand turns configured targets into the addresses to try, in order
// (RFC 3263): the voicemail pool's servers in service, a next hop's or a
// redirect's name resolved. A target whose host is an address stays as it
// is; one that does not resolve is left out (and logged).
func (s *Server) expand(ts []Target) []Target {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	var out []Target
	pooled := false
	for _, t := range ts {
		if t.Pool == router.PoolVoicemail && s.vmPool != nil {
			// The pool is every configured voicemail target at once.
			if pooled {
				continue
			}
			pooled = true
			eps, err := s.vmPool.Targets(ctx)
			if err != nil {
				s.log.Warn("no voicemail server resolves", "error", err)
			}
			for _, e := range eps {
				out = append(out, s.endpointTarget(t, e))
			}
			continue
		}
		eps, err := s.resolver.Resolve(ctx, hopURI(t))
		if err != nil {
			s.log.Warn("next hop does not resolve", "host", t.Host, "error", err)
			continue
		}
		for _, e := range eps {
			out = append(out, s.endpointTarget(t, e))
		}
	}
	return out
}

// endpointTarget is t sent to one resolved address.
func (s *Server) endpointTarget(t Target, e upstream.Endpoint) Target {
	s.tlsNames.learn(e)
	t.Host, t.Port, t.Transport, t.Explicit = e.Host, e.Port, e.Transport, true
	return t
}

// hopURI is the URI a target's next hop was configured as, for RFC 3263.
func hopURI(t Target) sip.Uri {
	u := sip.Uri{Scheme: "sip", Host: uriHost(t.Host), Port: t.Port}
	if t.Explicit {
		u.UriParams = sip.NewParams()
		u.UriParams.Add("transport", t.Transport)
	}
	return u
}

// report tells the voicemail pool how one of its servers did: failover
// says how it failed ("" when it answered).
func (s *Server) report(t Target, failover string) {
	if t.Pool != router.PoolVoicemail || s.vmPool == nil {
		return
	}
	e := upstream.Endpoint{Host: t.Host, Port: t.Port, Transport: t.Transport}
	s.vmPool.Report(e, failover == "", failover)
}

// tlsNames remembers, for each address a name resolved to, the names the
// server there must prove in its certificate (RFC 5922 4: the domain of
// the URI, not the address DNS gave us). The set is bounded by the
// configuration: voicemail and next-hop names, and redirects to peers.
type tlsNames struct {
	mu sync.Mutex
	m  map[string]map[string]bool // IP -> names
}

func (n *tlsNames) learn(e upstream.Endpoint) {
	if e.Transport != "tls" || e.Name == "" || e.Name == e.Host {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = make(map[string]map[string]bool)
	}
	if n.m[e.Host] == nil {
		n.m[e.Host] = make(map[string]bool)
	}
	n.m[e.Host][e.Name] = true
}

func (n *tlsNames) names(ip string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, 0, len(n.m[ip]))
	for name := range n.m[ip] {
		out = append(out, name)
	}
	return out
}

// verifyByName makes a TLS client configuration verify a server reached by
// address against the names that address was resolved from: sipgo dials
// the address we give it and would otherwise check the certificate for the
// IP. A server with no name on record (an address configured as such) is
// checked for its address, as before.
func (s *Server) verifyByName(tc *tls.Config) {
	if tc.InsecureSkipVerify {
		return
	}
	roots := tc.RootCAs
	tc.InsecureSkipVerify = true //nolint:gosec // verified below, by name
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: server sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		names := s.tlsNames.names(cs.ServerName)
		if len(names) == 0 {
			names = []string{cs.ServerName}
		}
		var err error
		for _, name := range names {
			_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name})
			if err == nil {
				return nil
			}
		}
		return fmt.Errorf("tls: server %s: %w", cs.ServerName, err)
	}
}
