package proxy

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/proxy/registrar"
	"github.com/sipproxy/sipproxy/proxy/router"
)

// execute carries out a route decision.
func (s *Server) execute(r *request, d Decision) {
	switch d.Kind {
	case KindRegister:
		res := s.reg.Register(r.Request, d.AOR, registrar.Flow{Transport: r.in.Transport, Source: r.in.Flow.Remote})
		s.respond(r, res)
	case KindSelf:
		res := sip.NewResponseFromRequest(r.Request, sip.StatusOK, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", allowed))
		res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
		// A proxy answering for itself supports no extension of its own
		// (RFC 3261 11.2: an empty list); UM's ping only needs the 200.
		res.AppendHeader(sip.NewHeader("Supported", ""))
		s.respond(r, res)
	case KindLocal:
		if r.Method == sip.INVITE {
			s.callLocal(r, d.AOR)
			return
		}
		targets := s.bindingTargets(d.AOR)
		if len(targets) == 0 {
			s.reply(r, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
			return
		}
		// Non-INVITE requests are not forked: the preferred binding takes it.
		s.forwardNonInvite(r, targets[0])
	default: // KindVoicemail, KindStatic, KindRouteSet
		if d.Kind == KindRouteSet && (r.Method == sip.INVITE || r.Method == sip.UPDATE) {
			// A target refresh: the sender's new Contact is where the
			// other side's requests may go from now on.
			tag, _ := r.From().Params.Get("tag")
			s.dialogs.refreshed(r.callID, r.in.Source.Addr(), r.Request, r.id.Authenticated(), tag)
		}
		if r.Method == sip.INVITE {
			// Voicemail servers and next hops are server pools, tried one
			// after the other (RFC 3263 4.3); a route set names one hop.
			s.newCall(r).run(d.Targets, d.Kind == KindVoicemail || d.Kind == KindStatic)
			return
		}
		ts := d.Targets[:1]
		if d.Kind == KindVoicemail || d.Kind == KindStatic {
			// Not forked: the servers of the pool in service, one after
			// the other while they fail as servers fail.
			if ts = s.expand(d.Targets); len(ts) == 0 {
				s.reply(r, sip.StatusServiceUnavailable, "Service Unavailable")
				return
			}
		}
		s.forwardNonInvite(r, ts...)
	}
}

const allowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, MESSAGE, NOTIFY, SUBSCRIBE, REFER"

// bindingTargets turns a user's live bindings into targets, preferring the
// flow the REGISTER came over (clients behind NAT do not listen on their
// Contact) and falling back to the Contact address.
func (s *Server) bindingTargets(aor string) []Target {
	bs := s.reg.Lookup(aor)
	out := make([]Target, 0, len(bs))
	for _, b := range bs {
		t, ok := router.TargetOf(b.Contact, b.Flow.Transport)
		if !ok {
			continue
		}
		if b.Flow.Transport != "" && b.Flow.Source != "" {
			flow := &Flow{Transport: b.Flow.Transport, Remote: b.Flow.Source}
			// A UDP phone registered from its own Contact (no NAT) is
			// reachable from any instance; anything else only through the
			// connection or NAT binding the holding instance has.
			direct := b.Flow.Transport == "udp" && t.Transport == "udp" && b.Flow.Source == t.Addr()
			if !direct && b.Instance != "" && b.Instance != s.instance && b.InstanceAddr != "" {
				// Another instance of the pool holds the phone's flow: the
				// call goes through it.
				host, port, err := net.SplitHostPort(b.InstanceAddr)
				p, perr := strconv.Atoi(port)
				if err != nil || perr != nil {
					continue
				}
				t.Host, t.Port, t.Transport, t.Explicit, t.Holder = host, p, b.Flow.Transport, true, flow
			} else {
				t.Flow = flow
			}
		}
		out = append(out, t)
	}
	return out
}

// noBuild stops sipgo from "completing" a request we have built fully.
func noBuild(*sipgo.Client, *sip.Request) error { return nil }

// prepare makes the copy of the request for one target (RFC 3261 16.6):
// new Request-URI, Max-Forwards decremented, Record-Route, our Via with a
// loop-detecting branch, and where and how it travels.
func (s *Server) prepare(r *request, t Target, recordRoute bool) (*sip.Request, Flow) {
	return s.prepareOn(branchCopy(r.Request), r, t, recordRoute)
}

// branchCopy is the copy of a request that one branch sends: a header list
// of its own holding the received header values, and the received body.
// Nothing on the way out changes a received header in place (prepareOn,
// history.apply and checkHop add, remove or replace entries of the copy's
// list; sipgo fills in only the Via we add, and clones what it takes for an
// ACK or a response), so the values can be shared where sipgo's Clone
// copied every one: that copy was about 5% of a call's heap objects and 3%
// of its CPU.
func branchCopy(req *sip.Request) *sip.Request {
	out := sip.NewRequest(req.Method, req.Recipient)
	out.SipVersion = req.SipVersion
	for _, h := range req.Headers() {
		out.AppendHeader(h)
	}
	out.SetBody(req.Body())
	out.SetTransport(req.Transport())
	out.SetSource(req.Source())
	out.SetDestination(req.Destination())
	out.Laddr = req.Laddr
	return out
}

// prepareOn is prepare on a given copy, or on the request itself when
// nothing will ever be answered from it (an ACK): the copy is the largest
// cost of relaying one.
func (s *Server) prepareOn(out *sip.Request, r *request, t Target, recordRoute bool) (*sip.Request, Flow) {
	out.Recipient = *t.URI.Clone()
	out.SipVersion = "SIP/2.0" // nothing of the sender's request line is relayed verbatim

	// A fresh header in the same place: sipgo's clone shares the
	// Max-Forwards value with the original (and with the other branches).
	mf := sip.MaxForwardsHeader(70)
	if in := r.MaxForwards(); in != nil {
		mf = sip.MaxForwardsHeader(int(*in) - 1)
		out.ReplaceHeader(&mf)
	} else {
		out.AppendHeader(&mf)
	}

	// Where it goes: the target's flow while it is open, else its address.
	hop := Flow{Transport: t.Transport, Remote: t.Addr()}
	if t.Flow != nil && s.flowOpen(*t.Flow) {
		hop = *t.Flow
	}

	if t.Holder != nil {
		// The instance holding the client's flow is the next hop: our
		// Route names it and seals the flow (same auth.secret across the
		// pool), so that it can deliver over that connection.
		u := sip.Uri{Scheme: "sip", Host: uriHost(t.Host), Port: t.Port, UriParams: sip.NewParams()}
		u.UriParams.Add("transport", t.Transport)
		u.UriParams.Add("lr", "")
		u.UriParams.Add(flowParam, s.flows.encode(*t.Holder, r.callID))
		out.PrependHeader(&sip.RouteHeader{Address: u})
	}
	if recordRoute {
		var egress *Flow
		if t.Flow != nil {
			egress = &hop
		}
		s.addRecordRoute(out, r.in, hop.Transport, egress, r.callID)
	}

	l := s.listenerFor(hop.Transport)
	via := &sip.ViaHeader{
		ProtocolName:    "SIP",
		ProtocolVersion: "2.0",
		Transport:       sip.NetworkToUpper(hop.Transport),
		Host:            uriHost(l.host),
		Port:            l.port,
		Params:          sip.NewParams(),
	}
	via.Params.Add("branch", newBranch(r.loopHash()))
	out.PrependHeader(via)

	out.SetTransport(sip.NetworkToUpper(hop.Transport))
	out.SetDestination(hop.Remote)
	out.Laddr = sip.Addr{}
	if hop.Transport == "udp" && l.transport == "udp" {
		// Send from the listening socket so replies and NATs see our port.
		out.Laddr = sip.Addr{IP: net.IP(l.bound.Addr().AsSlice()), Port: l.port}
	}
	return out, hop
}

// listenerFor is the listener that names us on a transport. Without one (say
// we dial TLS but do not listen on it) responses still come back on the
// connection, so any listener's host will do.
func (s *Server) listenerFor(transport string) *listener {
	if l, ok := s.byTrans[transport]; ok {
		return l
	}
	if l, ok := s.byTrans["tcp"]; ok && transport == "tls" {
		return &listener{transport: transport, host: l.host, port: sip.DefaultPort("tls"), bound: l.bound}
	}
	l := s.listeners[0]
	return &listener{transport: transport, host: l.host, port: sip.DefaultPort(transport), bound: l.bound}
}

// addRecordRoute inserts our Record-Route (16.6 step 4). We always insert
// two entries, one naming the listener facing each side (RFC 5658 double
// record-routing): this handles a transport change, and each entry carries
// the flow of its side so in-dialog requests reach clients behind NAT.
func (s *Server) addRecordRoute(out *sip.Request, in Ingress, egressTransport string, egress *Flow, callID string) {
	inbound := s.rrHeader(s.listenerFor(in.Transport), &in.Flow, callID)
	outbound := s.rrHeader(s.listenerFor(egressTransport), egress, callID)
	out.PrependHeader(inbound)
	out.PrependHeader(outbound)
}

func (s *Server) rrHeader(l *listener, f *Flow, callID string) *sip.RecordRouteHeader {
	u := sip.Uri{Scheme: "sip", Host: uriHost(l.host), Port: l.port, UriParams: sip.NewParams()}
	u.UriParams.Add("transport", l.transport)
	u.UriParams.Add("lr", "")
	var flow Flow
	if f != nil && f.Valid() {
		flow = *f
	}
	u.UriParams.Add(flowParam, s.flows.encode(flow, callID))
	return &sip.RecordRouteHeader{Address: u}
}

// uriHost writes a host for a URI or Via sent-by: IPv6 literals in brackets.
func uriHost(h string) string {
	if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
		return "[" + h + "]"
	}
	return h
}

// flowOpen reports whether a flow can still carry a request: a UDP source
// always can; a TCP/TLS connection only while it is open.
func (s *Server) flowOpen(f Flow) bool {
	if f.Transport == "udp" {
		return true
	}
	pool := s.ua.TransportLayer().Pool(f.Transport)
	if pool == nil {
		return false
	}
	c := pool.Get(f.Remote)
	if c == nil {
		return false
	}
	c.TryClose() // Get took a reference
	return true
}

// upstream prepares a downstream response for the way back (16.7 step 3):
// our Via removed, sent where the request came from.
//
// It edits res in place rather than copying it (a copy is a third of the
// memory a call allocates): every response object a client transaction
// hands us is relayed at most once, and sipgo never reads it again (a
// retransmission arrives as a new object).
func (s *Server) upstream(r *request, res *sip.Response) *sip.Response {
	if !cleanResponse(res) {
		// Not relayed as it is: the caller gets a 502 for a final
		// response, nothing for a provisional one.
		s.malformedResponse(res, r.callID) // counted; logged once per source per minute
		if res.IsProvisional() {
			return nil
		}
		return sip.NewResponseFromRequest(r.Request, sip.StatusBadGateway, "Bad Gateway", nil)
	}
	up := res
	up.RemoveHeader("Via")
	if up.Via() == nil {
		return nil
	}
	up.SetTransport(r.Transport())
	up.SetDestination(r.replyTo())
	return up
}

// replyTo is where responses to this request go (RFC 3261 18.2.2, RFC 3581).
func (r *request) replyTo() string {
	if r.in.Transport != "udp" || !r.in.Source.IsValid() {
		return r.Source()
	}
	via := r.Via()
	port := via.Port
	if v, ok := via.Params.Get("rport"); ok && v != "" {
		if p, err := strconv.Atoi(v); err == nil {
			port = p
		}
	}
	if port == 0 {
		port = 5060
	}
	return net.JoinHostPort(r.in.Source.Addr().String(), strconv.Itoa(port))
}

// forwardNonInvite proxies a non-INVITE request statefully to one target.
// With several targets (a pool's servers) it goes on to the next one when
// a server cannot be reached or answers 503 (RFC 3263 4.3).
func (s *Server) forwardNonInvite(r *request, ts ...Target) {
	for i, t := range ts {
		if s.tryNonInvite(r, t, i == len(ts)-1) {
			return
		}
	}
}

// tryNonInvite sends r to t; false means t failed as a server fails and
// the request goes on to the next target (never when last).
func (s *Server) tryNonInvite(r *request, t Target, last bool) bool {
	out, _ := s.prepare(r, t, false)
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	var tx sip.ClientTransaction
	err := s.sendAs(ctx, out, t.Name, isServer(t), func() (err error) {
		tx, err = s.client.TransactionRequest(ctx, out, noBuild)
		return err
	})
	cancel()
	if err != nil {
		r.logger().Info("next hop unreachable", "method", r.Method, "target", out.Destination(), "error", err)
		s.report(t, failTransport)
		if !last {
			return false
		}
		s.reply(r, sip.StatusServiceUnavailable, "Next Hop Unreachable")
		return true
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode == sip.StatusTrying {
				continue
			}
			if res.StatusCode == sip.StatusServiceUnavailable && !last {
				s.report(t, failOverloaded)
				return false
			}
			if !res.IsProvisional() {
				s.report(t, "")
			}
			if r.Method == sip.UPDATE && res.IsSuccess() && res.To() != nil {
				if a, ok := addrOf(res.Source()); ok {
					tag, _ := res.To().Params.Get("tag")
					s.dialogs.refreshed(r.callID, a, res, true, tag)
				}
			}
			// RFC 3261 15.1.1: a BYE ends the dialog with a 2xx, 481 or
			// 408 (after a 401/407 the same BYE comes again, with
			// credentials for a hop behind us). Ended before the answer
			// goes up: the sender may follow it at once.
			if r.Method == sip.BYE && (res.IsSuccess() || res.StatusCode == sip.StatusCallTransactionDoesNotExists || res.StatusCode == sip.StatusRequestTimeout) {
				s.dialogs.closed(r.callID, r.Request)
			}
			if up := s.upstream(r, res); up != nil {
				s.respond(r, up)
			}
			if !res.IsProvisional() {
				return true
			}
		case <-tx.Done():
			s.replyTxError(r, tx.Err())
			if r.Method == sip.BYE {
				s.dialogs.closed(r.callID, r.Request)
			}
			return true
		}
	}
}

// replyTxError answers for a client transaction that ended without a final
// response: Timer B/F (408) or a transport failure (503).
func (s *Server) replyTxError(r *request, err error) {
	if errors.Is(err, sip.ErrTransactionTimeout) {
		s.reply(r, sip.StatusRequestTimeout, "Request Timeout")
		return
	}
	r.logger().Info("next hop failed", "method", r.Method, "error", err)
	s.reply(r, sip.StatusServiceUnavailable, "Next Hop Unreachable")
}

// forwardAck relays an ACK for a 2xx along the dialog's route set (it is a
// new transaction of its own, with no response). ACKs we cannot route are
// dropped: nobody is waiting for an answer.
func (s *Server) forwardAck(r *request) {
	if !s.validateQuiet(r) {
		return
	}
	// An ACK cannot be challenged, but a peer or a certificate still
	// vouches for its sender (and routes it outside a known dialog).
	s.recognise(r)
	d := s.route(r)
	if d.Kind != KindRouteSet || len(d.Targets) == 0 {
		r.logger().Debug("ACK not routable; dropped", "kind", d.Kind.String())
		return
	}
	// The skip-pin rule covers every request, ACK included.
	s.applyPolicy(r, &d)
	out, _ := s.prepareOn(r.Request, r, d.Targets[0], false)
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	if err := s.sendAs(ctx, out, d.Targets[0].Name, isServer(d.Targets[0]), func() error { return s.client.WriteRequest(out, noBuild) }); err != nil {
		r.logger().Info("ACK not forwarded", "target", out.Destination(), "error", err)
	}
}

// validateQuiet is validate for requests we must never answer (ACK).
func (s *Server) validateQuiet(r *request) bool {
	req := r.Request
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil {
		return false
	}
	if mf := req.MaxForwards(); mf != nil && int(*mf) == 0 {
		return false
	}
	if ok, _ := wellFormed(req); !ok {
		return false
	}
	s.stampVia(r)
	return !s.looped(r)
}
