package proxy

import (
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/aor"
	"github.com/sipproxy/sipproxy/proxy/auth"
)

// identify resolves who sent the request: a trusted peer, a TLS client
// certificate, or digest credentials (in that order; the first that holds
// wins). Requests that need an identity and have none are challenged here.
// It returns false when it answered the request itself.
func (s *Server) identify(r *request) bool {
	req := r.Request
	if s.recognise(r); r.id.Source == auth.SourcePeer {
		s.dropOurCredentials(req)
		return true
	}

	register := req.Method == sip.REGISTER
	credHeader := "Proxy-Authorization"
	if register {
		credHeader = "Authorization"
	}
	if !r.id.Authenticated() && s.fails != nil && r.in.Source.IsValid() && s.needsIdentity(req) {
		// A source that guessed wrong too often is refused without a
		// challenge, so it cannot go on guessing.
		if blocked, wait := s.fails.Blocked(r.in.Source.Addr()); blocked {
			s.m.Throttled.WithLabelValues("auth_blocked").Inc()
			s.m.Auth.WithLabelValues("failed").Inc()
			secs := int((wait + time.Second - 1) / time.Second)
			s.replyWith(r, sip.StatusForbidden, "Too Many Authentication Failures", sip.NewHeader("Retry-After", strconv.Itoa(max(secs, 1))))
			return false
		}
	}
	if !r.id.Authenticated() {
		if creds := headerValues(req, credHeader); len(creds) > 0 && s.cfg.Auth.Realm != "" {
			res := s.digest.VerifyFor(creds, string(req.Method), r.nonceBinding())
			if res.Status == auth.OK && !s.digestURIFits(res.URI, req.Recipient) {
				// Credentials computed for another request (RFC 2617
				// 3.2.2.5): a replay, not an answer.
				s.m.Auth.WithLabelValues("failed").Inc()
				s.reply(r, sip.StatusBadRequest, "Digest URI Does Not Match")
				return false
			}
			switch res.Status {
			case auth.OK:
				r.id = auth.Identity{Source: auth.SourceDigest, AOR: s.digestAOR(req, res.User)}
				s.m.Auth.WithLabelValues("ok").Inc()
				if s.fails != nil && r.in.Source.IsValid() {
					s.fails.Succeed(r.in.Source.Addr())
				}
			case auth.Stale:
				s.challenge(r, true)
				return false
			case auth.Missing:
				// No credentials for our realm: treat as absent.
			case auth.Malformed:
				s.m.Auth.WithLabelValues("failed").Inc()
				s.reply(r, sip.StatusBadRequest, "Malformed Credentials")
				return false
			default:
				s.m.Auth.WithLabelValues("failed").Inc()
				r.logger().Info("authentication failed", "method", req.Method, "source", r.in.Source.String())
				if s.fails != nil && r.in.Source.IsValid() && s.fails.Fail(r.in.Source.Addr()) {
					r.logger().Warn("source blocked after repeated authentication failures", "source", r.in.Source.Addr().String())
					s.m.Throttled.WithLabelValues("auth_blocked").Inc()
					s.replyWith(r, sip.StatusForbidden, "Too Many Authentication Failures",
						sip.NewHeader("Retry-After", strconv.Itoa(int(s.cfg.Limits.AuthBlock.Seconds()))))
					return false
				}
				// Same answer whether the user exists or not.
				s.challenge(r, false)
				return false
			}
		}
	}
	if r.id.Authenticated() {
		s.dropOurCredentials(req)
	}

	if !r.id.Authenticated() && s.needsIdentity(req) {
		s.challenge(r, false)
		return false
	}
	if r.id.AOR != "" {
		// A local user may only speak as themselves.
		claimed := req.From().Address
		if register {
			claimed = req.To().Address
		}
		if s.router.IsOurDomain(claimed.Host) && !aor.Equal(r.id.AOR, aor.Of(claimed)) {
			s.reply(r, sip.StatusForbidden, "Identity Does Not Match")
			return false
		}
	}
	return true
}

// dropOurCredentials removes the Proxy-Authorization values for our realm
// once the sender is known, however it was identified (RFC 3261 22.3): the
// next hops have no use for them, and a password hash has no business
// travelling further. Credentials for other realms go on, in order.
func (s *Server) dropOurCredentials(req *sip.Request) {
	values := headerValues(req, "Proxy-Authorization")
	if len(values) == 0 || s.digest == nil {
		return
	}
	keep := values[:0:0]
	for _, v := range values {
		if !s.digest.ForUs(v) {
			keep = append(keep, v)
		}
	}
	if len(keep) == len(values) {
		return
	}
	removeHeaderAll(req, "Proxy-Authorization")
	for _, v := range keep {
		req.AppendHeader(sip.NewHeader("Proxy-Authorization", v))
	}
}

// recognise sets r.id from what the packet or connection proves on its
// own: a trusted peer (by source and/or certificate name), or a user's TLS
// client certificate. A REGISTER binds a user's calls to a contact: only
// that user, proven by digest or certificate, may make it; a peer's
// standing does not extend to registering others.
func (s *Server) recognise(r *request) {
	var names []string
	if r.in.Cert != nil {
		names = auth.CertificateNames(r.in.Cert)
	}
	if p, ok := s.peers.Match(r.in.Source.Addr(), r.in.Transport, names); ok {
		if r.Method != sip.REGISTER {
			r.id = auth.Identity{Source: auth.SourcePeer, Peer: p}
			return
		}
		r.logger().Info("REGISTER from a trusted peer needs the user's own credentials or certificate", "peer", p.Name)
	}
	if r.in.Cert != nil {
		if id, ok := auth.CertificateIdentity(r.in.Cert, s.cfg.Server.Domains); ok {
			r.id = id
		}
	}
}

// needsIdentity: REGISTER always; new requests from one of our users
// (From in our domains). In-dialog requests, CANCEL and ACK cannot be
// challenged meaningfully and are not.
func (s *Server) needsIdentity(req *sip.Request) bool {
	if req.Method == sip.REGISTER {
		return true
	}
	if inDialog(req) || req.Method == sip.ACK || req.Method == sip.CANCEL {
		return false
	}
	if req.Method == sip.OPTIONS && s.addressedToUs(req) {
		return false
	}
	// From names a user of ours only through one of our domains: an IP
	// in From says nothing about who the user is.
	return s.router.IsOurDomain(req.From().Address.Host)
}

func (s *Server) challenge(r *request, stale bool) {
	code, reason, name := sip.StatusProxyAuthRequired, "Proxy Authentication Required", "Proxy-Authenticate"
	if r.Method == sip.REGISTER {
		code, reason, name = sip.StatusUnauthorized, "Unauthorized", "WWW-Authenticate"
	}
	s.m.Auth.WithLabelValues("challenged").Inc()
	vals := s.digest.ChallengeFor(stale, r.nonceBinding())
	hs := make([]sip.Header, len(vals))
	for i, v := range vals {
		hs[i] = sip.NewHeader(name, v)
	}
	s.replyWith(r, code, reason, hs...)
}

// digestAOR names a digest user in the domain the request claims when that
// domain is ours, so identity compares equal to From/To.
func (s *Server) digestAOR(req *sip.Request, user string) string {
	u := req.From().Address
	if req.Method == sip.REGISTER {
		u = req.To().Address
	}
	if s.router.IsOurDomain(u.Host) {
		u.User = user
		return aor.Of(u)
	}
	return user + "@" + s.router.Primary()
}

// nonceBinding names where a request came from for digest nonces: the
// connection (TCP, TLS) or source (UDP). A nonce answered from anywhere else
// is stale, so credentials seen on one hop cannot be replayed on another.
func (r *request) nonceBinding() string {
	return r.in.Transport + " " + r.in.Flow.Remote
}

// digestURIFits accepts the digest-uri of credentials when it names the
// Request-URI (scheme, user, host and port; parameters differ between
// clients), or names the proxy itself with no user: some clients (sipp
// among them) compute credentials for the server they send to rather than
// for the Request-URI. Credentials computed for another user's URI are
// refused.
func (s *Server) digestURIFits(digestURI string, ruri sip.Uri) bool {
	var u sip.Uri
	if err := sip.ParseUri(digestURI, &u); err != nil {
		return false
	}
	if u.User == "" && s.router.IsLocal(u.Host, u.Port) {
		return true
	}
	return sameRequestURI(u, ruri)
}

// sameRequestURI compares two SIP URIs on scheme, user, host and port.
func sameRequestURI(u, ruri sip.Uri) bool {
	port := func(p int) int {
		if p == 0 {
			return 5060
		}
		return p
	}
	return strings.EqualFold(u.Scheme, ruri.Scheme) && u.User == ruri.User &&
		strings.EqualFold(u.Host, ruri.Host) && port(u.Port) == port(ruri.Port)
}
