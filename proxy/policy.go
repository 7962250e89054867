package proxy

import (
	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/aor"
	"github.com/sipproxy/sipproxy/proxy/auth"
	"github.com/sipproxy/sipproxy/proxy/policy"
)

// applyPolicy enforces MS-OCEXUM on a routed request: Ms-Exchange-Command is
// kept byte for byte only when the skip-pin trust rule holds, and
// Ms-Sensitivity: private-no-diversion becomes the call's no-diversion flag.
func (s *Server) applyPolicy(r *request, d *Decision) {
	req := r.Request
	if r.id.Source != auth.SourcePeer {
		s.dropAssertedIdentity(r, d)
	}
	values := headerValues(req, policy.HeaderExchangeCommand)
	if len(values) > 0 {
		in := policy.SkipPinInput{
			Method:      string(req.Method),
			Transport:   r.in.Transport,
			Values:      values,
			FromAOR:     aor.Of(req.From().Address),
			MailboxAOR:  aor.Of(req.Recipient),
			ToVoicemail: d.Kind == KindVoicemail,
		}
		switch r.id.Source {
		case auth.SourceDigest, auth.SourceCertificate:
			in.Identity = r.id.AOR
			// A mailbox addressed by one of our IPs is named in our domain.
			if s.router.IsLocal(req.Recipient.Host, req.Recipient.Port) {
				in.MailboxAOR = s.router.AOR(req.Recipient)
			}
		case auth.SourcePeer:
			in.PeerTrustsSkipPin = r.id.Peer.TrustSkipPin && r.in.Transport == "tls"
		}
		dec := policy.SkipPin(in)
		if dec.Present {
			if dec.Strip() {
				removeHeaderAll(req, policy.HeaderExchangeCommand)
			}
			s.m.SkipPin.WithLabelValues(dec.Outcome(), string(dec.Reason)).Inc()
			r.logger().Info("skip-pin", "decision", dec.Outcome(), "reason", string(dec.Reason),
				"transport", r.in.Transport, "identity", r.id.AOR, "mailbox", in.MailboxAOR)
		}
	}
	if req.Method == sip.INVITE {
		r.noDiversion = policy.NoDiversion(headerValues(req, policy.HeaderSensitivity))
	}
}

// dropAssertedIdentity removes what only a trusted element may assert.
// P-Asserted-Identity and its relatives from anyone but a trusted peer are
// removed (RFC 3325 5: a proxy strips them at the edge of its trust domain).
// On the way to the voicemail server, Diversion and History-Info from an
// end user are removed too: UM may pick the mailbox or the greeting from
// them, so a user must not be able to write them next to skip-pin. (Ours,
// added by forwarding, are put on later, when a retarget happens.)
func (s *Server) dropAssertedIdentity(r *request, d *Decision) {
	n := 0
	for _, name := range [...]string{"P-Asserted-Identity", "P-Preferred-Identity", "Remote-Party-ID"} {
		n += removeHeaderAll(r.Request, name)
	}
	if d.Kind == KindVoicemail {
		for _, name := range [...]string{"Diversion", "History-Info"} {
			n += removeHeaderAll(r.Request, name)
		}
	}
	if n > 0 {
		r.logger().Info("removed identity headers an untrusted sender supplied", "count", n, "transport", r.in.Transport)
	}
}
