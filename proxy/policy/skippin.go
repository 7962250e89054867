package policy

import (
	"strings"

	"github.com/sipproxy/sipproxy/internal/aor"
)

// Reason says why a skip-pin header was kept or stripped. It is the reason
// label of sipproxy_skip_pin_total; the set is fixed (see Reasons).
type Reason string

// Reasons for stripping, in the order SkipPin checks them: when several
// conditions fail, the first one in this list is reported.
const (
	ReasonNotInvite        Reason = "not_invite"        // the request is not an INVITE
	ReasonBadValue         Reason = "bad_value"         // not exactly one header whose value is the token skip-pin
	ReasonNotTLS           Reason = "not_tls"           // it did not arrive over TLS
	ReasonUnauthenticated  Reason = "unauthenticated"   // no identity and not a skip-pin trusted peer
	ReasonIdentityMismatch Reason = "identity_mismatch" // identity is not both the From user and the mailbox
	ReasonNotVoicemail     Reason = "not_voicemail"     // it is not routed to the voicemail server
	// ReasonHopNotTLS: the branch towards the voicemail server (a pool
	// member, a failover or a redirect) does not travel over TLS, so UM
	// could not tell a trusted skip-pin from anyone's (HopKeepsSkipPin).
	ReasonHopNotTLS Reason = "hop_not_tls"
)

// Reasons for keeping.
const (
	ReasonOwnMailbox  Reason = "own_mailbox"  // an authenticated user reaching their own mailbox
	ReasonTrustedPeer Reason = "trusted_peer" // a TLS trusted peer with trust_skip_pin: true
)

// Reasons returns every reason SkipPin can give: the strip reasons in check
// order, then the keep reasons. Metrics use it to pre-create their series.
func Reasons() []Reason {
	return []Reason{
		ReasonNotInvite, ReasonBadValue, ReasonNotTLS, ReasonUnauthenticated,
		ReasonIdentityMismatch, ReasonNotVoicemail, ReasonHopNotTLS,
		ReasonOwnMailbox, ReasonTrustedPeer,
	}
}

// Kept reports whether r is a reason for keeping the header.
func (r Reason) Kept() bool {
	return r == ReasonOwnMailbox || r == ReasonTrustedPeer
}

// Values of the decision label of sipproxy_skip_pin_total.
const (
	OutcomeKept     = "kept"
	OutcomeStripped = "stripped"
)

// SkipPinInput is what the pipeline knows about a request when it applies
// the skip-pin trust rule. AORs are "user@host" as internal/aor.Of makes them.
type SkipPinInput struct {
	Method    string   // request method; case-sensitive (RFC 3261 7.1), so only "INVITE" is an INVITE
	Transport string   // ingress transport: "udp", "tcp" or "tls", ignoring ASCII case (sipgo says "TLS")
	Values    []string // the value of every Ms-Exchange-Command header line, raw, in order
	// Identity is the authenticated AOR "user@domain" from digest or a
	// verified client certificate; "" when the sender is not authenticated.
	Identity string
	// PeerTrustsSkipPin is set when the request came over TLS from a trusted
	// peer marked trust_skip_pin: true.
	PeerTrustsSkipPin bool
	FromAOR           string // From URI as user@host
	MailboxAOR        string // Request-URI as user@host: the mailbox targeted
	ToVoicemail       bool   // the routing stage sends the request to the voicemail server
}

// SkipPinDecision is the answer of SkipPin.
type SkipPinDecision struct {
	// Present is false when the request has no Ms-Exchange-Command header:
	// then there is nothing to do and nothing to count.
	Present bool
	// Keep means the headers are forwarded unchanged; otherwise every
	// Ms-Exchange-Command header is removed.
	Keep bool
	// Reason is why; "" when not Present.
	Reason Reason
}

// Strip reports whether the pipeline must remove every Ms-Exchange-Command
// header from the request.
func (d SkipPinDecision) Strip() bool { return d.Present && !d.Keep }

// Outcome is the decision label of sipproxy_skip_pin_total: OutcomeKept,
// OutcomeStripped, or "" when no header was present.
func (d SkipPinDecision) Outcome() string {
	switch {
	case !d.Present:
		return ""
	case d.Keep:
		return OutcomeKept
	default:
		return OutcomeStripped
	}
}

// SkipPin applies the skip-pin trust rule (docs/design.md; [MS-OCEXUM] 2.2.1,
// 3.1). The header is kept only when all of these hold, checked in this
// order, the first failure giving the reason:
//
//  1. the method is INVITE (else not_invite);
//  2. there is exactly one Ms-Exchange-Command header and its value, SIP
//     whitespace trimmed, is the token skip-pin ignoring ASCII case; a
//     comma list, parameters, an empty value or a second header are
//     bad_value;
//  3. the request arrived over TLS (else not_tls);
//  4. the sender is authenticated as the From user who is also the mailbox
//     owner (own_mailbox), or is a TLS trusted peer trusted for skip-pin
//     (trusted_peer); else unauthenticated when there is no identity and
//     identity_mismatch when there is one;
//  5. the request is routed to the voicemail server (else not_voicemail).
//
// When both keep reasons apply, own_mailbox is reported. AORs compare with
// the user part exact (not unescaped: an escaped spelling strips, it never
// keeps) and the host ignoring ASCII case. An identity that is not
// "user@host" with both parts non-empty owns no mailbox (identity_mismatch).
//
// SkipPin does not allocate.
func SkipPin(in SkipPinInput) SkipPinDecision {
	if len(in.Values) == 0 {
		return SkipPinDecision{}
	}
	strip := func(r Reason) SkipPinDecision { return SkipPinDecision{Present: true, Reason: r} }

	if in.Method != "INVITE" {
		return strip(ReasonNotInvite)
	}
	if len(in.Values) != 1 || !equalFoldASCII(trimWS(in.Values[0]), "skip-pin") {
		return strip(ReasonBadValue)
	}
	if !equalFoldASCII(in.Transport, "tls") {
		return strip(ReasonNotTLS)
	}
	var keep Reason
	switch {
	case ownsMailbox(in.Identity, in.FromAOR, in.MailboxAOR):
		keep = ReasonOwnMailbox
	case in.PeerTrustsSkipPin:
		keep = ReasonTrustedPeer
	case in.Identity == "":
		return strip(ReasonUnauthenticated)
	default:
		return strip(ReasonIdentityMismatch)
	}
	if !in.ToVoicemail {
		return strip(ReasonNotVoicemail)
	}
	return SkipPinDecision{Present: true, Keep: true, Reason: keep}
}

// ownsMailbox reports whether identity is a well-formed "user@host" equal
// to both the From AOR and the mailbox AOR.
func ownsMailbox(identity, from, mailbox string) bool {
	at := strings.LastIndexByte(identity, '@')
	if at <= 0 || at == len(identity)-1 {
		return false
	}
	return aor.Equal(identity, from) && aor.Equal(identity, mailbox)
}

// HopKeepsSkipPin is the skip-pin rule checked again for every branch of a
// request SkipPin kept: each server of a voicemail pool, each failover and
// each redirect is a new hop, and the header may travel only over TLS to a
// voicemail server (a configured one, or a trusted peer UM redirected us
// to). It returns "" when the branch keeps the header, else why it must
// be removed from that branch.
func HopKeepsSkipPin(hopTransport string, toVoicemail bool) Reason {
	if !toVoicemail {
		return ReasonNotVoicemail
	}
	if !equalFoldASCII(hopTransport, "tls") {
		return ReasonHopNotTLS
	}
	return ""
}
