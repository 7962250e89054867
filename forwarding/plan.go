package forwarding

import (
	"slices"
	"time"

	"github.com/sipproxy/sipproxy/rules"
)

// Kind is a kind of forwarding rule, as counted in
// forwarding_total{kind}.
type Kind string

// The rule kinds.
const (
	Immediate  Kind = "immediate"  // forward before ringing
	Unanswered Kind = "unanswered" // forward when nobody answers, or at once when nobody is registered
	Busy       Kind = "busy"       // forward when the user is busy or declines
)

// Cause is why a call was retargeted, as an RFC 4458 cause value. It goes
// into History-Info (cause= URI parameter) and, as a reason, into
// Diversion (RFC 5806).
type Cause int

// The causes the forwarding engine produces.
const (
	CauseUnconditional Cause = 302 // immediate forwarding
	CauseNoAnswer      Cause = 408 // unanswered forwarding after the no-answer timer or 408/480 from every branch
	CauseUnavailable   Cause = 480 // unanswered forwarding of a user with no registered bindings
	CauseBusy          Cause = 486 // busy forwarding
)

// DiversionReason is the RFC 5806 reason of the cause.
func (c Cause) DiversionReason() string {
	switch c {
	case CauseUnconditional:
		return "unconditional"
	case CauseNoAnswer:
		return "no-answer"
	case CauseUnavailable:
		return "unavailable"
	case CauseBusy:
		return "user-busy"
	}
	return "unknown"
}

// Flags are the facts about an INVITE that change forwarding.
type Flags struct {
	// NoDiversion is set by `Ms-Sensitivity: private-no-diversion`
	// (MS-OCEXUM 3.2): no immediate, unanswered or busy forwarding at all.
	NoDiversion bool
}

// Lookup finds the forwarding rule of a normalised address of record.
// *rules.Snapshot satisfies it.
type Lookup interface {
	Lookup(aor string) (*rules.Rule, bool)
}

// Hop is one diversion of a call: the user From's rule of kind Kind sent
// the call to To, for Cause.
type Hop struct {
	From  rules.Target // the diverting user
	To    rules.Target // the new target
	Kind  Kind
	Cause Cause
}

// Retarget is a diversion the proxy performs later, if the ringing target's
// outcome calls for it (see Plan.RetargetOn and Input.Follow).
type Retarget struct {
	Hop
	After time.Duration // NoAnswer only: how long the target may ring
}

// StopReason is why a matching rule was not followed.
type StopReason string

// The reasons a matching rule is not followed.
const (
	StopLoop          StopReason = "loop"           // its target is already in the call's chain
	StopMaxDiversions StopReason = "max-diversions" // the call has made MaxDiversions diversions
)

// Stopped is a diversion a rule asked for that the plan does not make.
type Stopped struct {
	Hop
	Reason StopReason
}

// Input is what Decide decides on.
type Input struct {
	// Target is the user the INVITE is for: the Request-URI on the first
	// decision (rules.TargetOf), the retarget's To on later ones (Follow).
	Target rules.Target
	Flags  Flags
	// Rules is the rule set the call started with; keep the same snapshot
	// for every decision of one call. nil means no rules.
	Rules Lookup
	// HasBindings reports whether a user has registered contacts; nil means
	// assume so. Only consulted for users with an unanswered rule.
	HasBindings func(aor string) bool
	// MaxDiversions bounds the diversions of the whole call, History
	// included (forwarding.max_diversions). Zero or less allows none.
	MaxDiversions int
	// History is the diversions already made in this call, oldest first.
	History []Hop
}

// Plan is what the proxy does with an INVITE for a user.
//
// Deliver the request to Target now: its registered bindings for a local
// user, Exchange UM for a voicemail target (opaque=app:voicemail), the
// static route otherwise. Put History on it (HistoryInfo, Diversion) when it
// is not empty. While Target rings, NoAnswer and Busy are the retargets
// armed; RetargetOn picks one for a final response.
type Plan struct {
	Target rules.Target
	// History is every diversion of the call so far, oldest first: the
	// input's history followed by the ones this decision made.
	History []Hop
	// Applied is the diversions this decision made (the tail of History):
	// count each as forwarding_total{kind,outcome="applied"}.
	Applied []Hop
	// NoAnswer retargets when nobody answers within After, or when every
	// branch fails with 408 or 480 (or 486, 600, 603 and Busy is nil).
	// Cancel the branches first. Count it as applied when executed.
	NoAnswer *Retarget
	// Busy retargets when the best final response is 486, 600 or 603.
	// Count it as applied when executed.
	Busy *Retarget
	// Suppressed is the rule kinds of the target user that no-diversion
	// turned off: count each as forwarding_total{kind,outcome="suppressed"}.
	Suppressed []Kind
	// Stopped is the diversions rules asked for that loops or the
	// max_diversions bound prevented (worth a log line).
	Stopped []Stopped

	in Input // what the plan was decided on, for Follow
}

// Follow returns the input for deciding again after the proxy executes r, a
// retarget of this plan (NoAnswer, Busy or RetargetOn's result): the same
// call, its rule snapshot and flags, now for r.To, with r added to the
// plan's History. Chains and the max_diversions bound thus span the call.
func (p Plan) Follow(r *Retarget) Input {
	next := p.in
	next.Target = r.To
	next.History = append(slices.Clip(p.History), r.Hop)
	return next
}

// Original is the target the caller asked for: where History starts.
func (p Plan) Original() rules.Target {
	if len(p.History) > 0 {
		return p.History[0].From
	}
	return p.Target
}

// RetargetOn returns the retarget to execute when every branch to Target
// has failed and code is the best final response (RFC 3261 16.7), or nil
// when the response goes back to the caller: Busy for 486, 600 and 603;
// NoAnswer for 408 and 480, and for 486, 600 and 603 when there is no Busy.
// The cause of a NoAnswer retarget then says what happened (480
// unavailable, 486 busy). When the no-answer timer fires, execute NoAnswer
// as it is (cause 408). A call its caller cancelled is never retargeted.
func (p Plan) RetargetOn(code int) *Retarget {
	var r *Retarget
	var cause Cause
	switch code {
	case 486, 600, 603:
		if p.Busy != nil {
			return p.Busy
		}
		r, cause = p.NoAnswer, CauseBusy
	case 408:
		r, cause = p.NoAnswer, CauseNoAnswer
	case 480:
		r, cause = p.NoAnswer, CauseUnavailable
	}
	if r == nil {
		return nil
	}
	out := *r
	out.Cause = cause
	return &out
}

// Decide makes the plan for delivering a call to in.Target.
//
// With the no-diversion flag no rule applies: the plan rings the target
// user's own bindings and lists the kinds it suppressed. Otherwise Decide
// follows immediate rules, and the unanswered rules of users with no
// bindings (cause 480), from user to user (alice -> bob -> carol's mailbox)
// and arms the unanswered and busy rules of the user it ends at. A voicemail
// target ends the chain. A diversion to a target already in the call
// (alice -> bob -> alice) or beyond MaxDiversions is not made: the chain
// stops at the last new target, and the diversion is listed in Stopped.
//
// Decide is pure: it reads the rules and bindings and nothing else.
func Decide(in Input) Plan {
	p := Plan{Target: in.Target, History: slices.Clip(in.History), in: in}
	if in.Target.IsVoicemail() {
		return p // a mailbox has no rules
	}
	rule := lookup(in, in.Target)
	if in.Flags.NoDiversion {
		p.Suppressed = suppressed(rule)
		return p
	}

	c := newChain(in)
	for rule != nil {
		hop, ok := p.divert(in, c, rule)
		if !ok {
			break
		}
		p.History = append(p.History, hop)
		c.add(hop.To)
		p.Target = hop.To
		if hop.To.IsVoicemail() {
			rule = nil
			break
		}
		rule = lookup(in, hop.To)
	}
	if len(p.History) > len(in.History) {
		p.Applied = p.History[len(in.History):]
	}
	if rule != nil {
		p.arm(in, c, rule)
	}
	return p
}

// divert returns the diversion p.Target's rule makes before ringing, if any
// is allowed: immediate, else unanswered when the user has no bindings.
// Diversions refused are recorded in p.Stopped.
func (p *Plan) divert(in Input, c *chain, rule *rules.Rule) (Hop, bool) {
	if rule.Immediate != nil {
		hop := Hop{From: p.Target, To: *rule.Immediate, Kind: Immediate, Cause: CauseUnconditional}
		if p.allowed(in, c, hop) {
			return hop, true
		}
	}
	if rule.Unanswered != nil && !hasBindings(in, p.Target) {
		hop := Hop{From: p.Target, To: rule.Unanswered.Target, Kind: Unanswered, Cause: CauseUnavailable}
		if p.allowed(in, c, hop) {
			return hop, true
		}
	}
	return Hop{}, false
}

// arm sets the retargets of the user the plan rings. An unanswered rule of
// a user with no bindings was already tried by divert.
func (p *Plan) arm(in Input, c *chain, rule *rules.Rule) {
	if u := rule.Unanswered; u != nil && hasBindings(in, p.Target) {
		hop := Hop{From: p.Target, To: u.Target, Kind: Unanswered, Cause: CauseNoAnswer}
		if p.allowed(in, c, hop) {
			p.NoAnswer = &Retarget{Hop: hop, After: u.After}
		}
	}
	if rule.Busy != nil {
		hop := Hop{From: p.Target, To: *rule.Busy, Kind: Busy, Cause: CauseBusy}
		if p.allowed(in, c, hop) {
			p.Busy = &Retarget{Hop: hop}
		}
	}
}

// allowed reports whether hop may be added to the call, recording why not.
func (p *Plan) allowed(in Input, c *chain, hop Hop) bool {
	switch {
	case c.has(hop.To):
		p.Stopped = append(p.Stopped, Stopped{Hop: hop, Reason: StopLoop})
	case len(p.History) >= in.MaxDiversions:
		p.Stopped = append(p.Stopped, Stopped{Hop: hop, Reason: StopMaxDiversions})
	default:
		return true
	}
	return false
}

// suppressed lists the kinds of rule no-diversion turns off for a user: the
// immediate rule when there is one (the others would not have applied),
// else the unanswered and busy rules.
func suppressed(rule *rules.Rule) []Kind {
	switch {
	case rule == nil:
		return nil
	case rule.Immediate != nil:
		return []Kind{Immediate}
	}
	var kinds []Kind
	if rule.Unanswered != nil {
		kinds = append(kinds, Unanswered)
	}
	if rule.Busy != nil {
		kinds = append(kinds, Busy)
	}
	return kinds
}

func lookup(in Input, t rules.Target) *rules.Rule {
	if in.Rules == nil || t.AOR == "" {
		return nil
	}
	r, ok := in.Rules.Lookup(t.AOR)
	if !ok {
		return nil
	}
	return r
}

func hasBindings(in Input, t rules.Target) bool {
	return in.HasBindings == nil || in.HasBindings(t.AOR)
}

// chain is the targets a call has been to, by AOR; a voicemail target
// counts apart from its user (carol's mailbox is not carol). A chain is at
// most max_diversions long: a list beats a map.
type chain struct{ keys []chainKey }

type chainKey struct {
	aor       string
	voicemail bool
}

func newChain(in Input) *chain {
	c := &chain{keys: make([]chainKey, 0, 2*len(in.History)+1+max(in.MaxDiversions, 0))}
	for _, h := range in.History {
		c.add(h.From)
		c.add(h.To)
	}
	c.add(in.Target)
	return c
}

func (c *chain) add(t rules.Target) {
	if !c.has(t) {
		c.keys = append(c.keys, chainKey{t.AOR, t.IsVoicemail()})
	}
}

func (c *chain) has(t rules.Target) bool {
	return slices.Contains(c.keys, chainKey{t.AOR, t.IsVoicemail()})
}
