package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
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
	var tx sip.ClientTransaction
	err := s.sendAs(dctx, req, tlsName(e), true, func() (err error) {
		tx, err = s.client.TransactionRequest(dctx, req, noBuild)
		return err
	})
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
	t.Host, t.Port, t.Transport, t.Explicit, t.Name = e.Host, e.Port, e.Transport, true, tlsName(e)
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

// tlsName is the name a TLS server at an endpoint must prove: its URI's
// host (RFC 5922 4: the domain of the URI, not an SRV target or the
// address DNS gave), or "" when that was the address itself.
func tlsName(e upstream.Endpoint) string {
	if e.Transport != "tls" || e.Name == e.Host {
		return ""
	}
	return e.Name
}

// sendAs hands req to sipgo (send) so that, when it travels over TLS to an
// address, the server there has proved name (the target's, see
// router.Target.Name), or the address itself when name is "", before
// anything is written to it. sipgo dials the address we give it, and Go
// checks no name at all for an address (it sends no SNI and leaves the
// connection state's ServerName empty), so verifyByName checks only the
// chain of such a connection and the name is checked here, on the
// connection the request will take (a new one or one already open, which
// another name's request may have opened): no name remembered for an
// address stands in for the request's own.
//
// server says the target is a voicemail server (isServer), not a client's
// flow or another hop: sipgo keeps the connections clients open to us in
// the same pool, by remote address, and one opened from the server's
// address and port would otherwise carry the request without any proof;
// it may, only when the client certificate it showed (verified against
// client_ca) names the server.
func (s *Server) sendAs(ctx context.Context, req *sip.Request, name string, server bool, send func() error) error {
	if s.tlsInsecure || !strings.EqualFold(req.Transport(), "tls") {
		return send()
	}
	host, _, err := net.SplitHostPort(req.Destination())
	if err != nil {
		return send()
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return send() // a name: sipgo dials it as such and Go checks it
	}
	if name == "" {
		name = host
	}
	c, err := s.ua.TransportLayer().ClientRequestConnection(ctx, req)
	if err != nil {
		return err
	}
	dialled, proved := s.connProves(c, req.Destination(), name, server)
	if !proved {
		if pool := s.ua.TransportLayer().Pool("tls"); dialled && pool != nil {
			// Nobody else may use it either: closed, and out of the pool.
			_ = pool.CloseAndDelete(c, req.Destination())
		} else {
			c.TryClose()
		}
		return fmt.Errorf("tls: the connection to %s does not prove the name %s", req.Destination(), name)
	}
	c.TryClose() // ClientRequestConnection took a reference; the transaction takes its own
	return send()
}

// isServer: a voicemail server (configured, or a peer UM redirected us
// to), the one hop skip-pin travels to, whose identity a TLS connection
// must prove even when a client opened it. Other hops (next hops, route
// sets, Contacts, flows) may use a connection their peer opened to us, as
// trunks that reuse their listening port do.
func isServer(t Target) bool { return t.Voicemail || t.Pool != "" }

// connProves reports whether a TLS connection proves name: the server of
// one sipgo dialled showed a certificate for it (its chain was verified
// when it was set up). A connection a client opened to one of our
// listeners (our tlsConn, not sipgo's bare *tls.Conn) is a flow, used as
// it is, unless a server was expected (see sendAs). dialled says which
// kind c is.
func (s *Server) connProves(c sip.Connection, addr, name string, server bool) (dialled, proved bool) {
	tc, ok := c.(*sip.TCPConnection)
	if !ok {
		return false, false
	}
	if tl, ok := tc.Conn.(*tls.Conn); ok {
		st := tl.ConnectionState()
		return true, len(st.PeerCertificates) > 0 && st.PeerCertificates[0].VerifyHostname(name) == nil
	}
	if !server {
		return false, true
	}
	cert := s.certs.get(addr)
	return false, cert != nil && cert.VerifyHostname(name) == nil
}

// verifyByName makes a TLS client configuration check a server's chain
// and, when it was dialled by name, that name. A server dialled by
// address (every server a name resolved to: sipgo dials the address we
// give it) has its name checked by sendAs before any request is written
// to it.
func (s *Server) verifyByName(tc *tls.Config) {
	if tc.InsecureSkipVerify {
		s.tlsInsecure = true
		return
	}
	roots := tc.RootCAs
	tc.InsecureSkipVerify = true //nolint:gosec // verified below and in sendAs
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: server sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: cs.ServerName}); err != nil {
			return fmt.Errorf("tls: server %s: %w", cs.ServerName, err)
		}
		return nil
	}
}
