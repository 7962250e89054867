package rules

import (
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/aor"
)

// Limits on the no-answer delay of an unanswered rule.
const (
	MinAfter = 1 * time.Second
	MaxAfter = 300 * time.Second
)

// Target is where a rule sends a call.
type Target struct {
	URI    string  // as written in the rules file (or in the request)
	Parsed sip.Uri // URI parsed
	AOR    string  // normalised address of record "user@host" (internal/aor)
}

// TargetOf makes a Target from a parsed SIP URI, such as the Request-URI of
// an INVITE, so that it can be handed to the forwarding engine.
func TargetOf(u sip.Uri) Target {
	return Target{URI: u.String(), Parsed: u, AOR: aor.Of(u)}
}

// IsVoicemail reports whether the target is a voicemail mailbox: a URI
// carrying opaque=app:voicemail, which the proxy routes to Exchange UM.
// sip:carol@contoso.com;opaque=app:voicemail is carol's mailbox, not carol,
// so a voicemail target has no forwarding rules of its own.
func (t Target) IsVoicemail() bool { return aor.IsMailbox(t.Parsed) }

// Unanswered is a rule that retargets a call nobody answers within After.
type Unanswered struct {
	Target Target
	After  time.Duration
}

// Rule is the forwarding configuration of one user. At least one of
// Immediate, Unanswered and Busy is set. When Immediate is set the user's
// phones never ring, so Unanswered and Busy only matter once it is removed.
type Rule struct {
	User       string // normalised address of record, the store's key
	UserURI    string // the user URI as written
	Immediate  *Target
	Unanswered *Unanswered
	Busy       *Target
	Line       int // line of the rule in its file (0 when not from a file)
}
