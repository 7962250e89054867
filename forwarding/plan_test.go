package forwarding

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipproxy/sipproxy/internal/aor"
	"github.com/sipproxy/sipproxy/rules"
)

// tgt parses a SIP URI into a target, or fails the test binary.
func tgt(uri string) rules.Target {
	u, a, err := aor.Parse(uri)
	if err != nil {
		panic(err)
	}
	return rules.Target{URI: uri, Parsed: u, AOR: a}
}

func ptr(t rules.Target) *rules.Target { return &t }

func vm(user string) string  { return "sip:" + user + "@contoso.com;opaque=app:voicemail" }
func uri(user string) string { return "sip:" + user + "@contoso.com" }

// ruleSet is a Lookup over literal rules.
type ruleSet map[string]*rules.Rule

func (s ruleSet) Lookup(aor string) (*rules.Rule, bool) { r, ok := s[aor]; return r, ok }

func (s ruleSet) add(r rules.Rule) ruleSet {
	r.User = tgt(r.UserURI).AOR
	s[r.User] = &r
	return s
}

func immediate(user, to string) rules.Rule {
	return rules.Rule{UserURI: uri(user), Immediate: ptr(tgt(to))}
}

func unanswered(user, to string, after time.Duration) rules.Rule {
	return rules.Rule{UserURI: uri(user), Unanswered: &rules.Unanswered{Target: tgt(to), After: after}}
}

// testRules is the directory the decision table runs against.
func testRules() ruleSet {
	s := ruleSet{}
	s.add(immediate("alice", uri("bob")))
	s.add(rules.Rule{UserURI: uri("bob"),
		Unanswered: &rules.Unanswered{Target: tgt(vm("bob")), After: 15 * time.Second},
		Busy:       ptr(tgt(vm("bob")))})
	s.add(rules.Rule{UserURI: uri("carol"),
		Unanswered: &rules.Unanswered{Target: tgt(vm("carol")), After: 20 * time.Second},
		Busy:       ptr(tgt(vm("carol")))})
	s.add(rules.Rule{UserURI: uri("dave"), Busy: ptr(tgt(vm("dave")))})
	s.add(immediate("erin", uri("frank")))
	s.add(immediate("frank", uri("erin")))
	s.add(immediate("gina", uri("hank")))
	s.add(immediate("hank", uri("ivan")))
	s.add(immediate("ivan", uri("judy")))
	s.add(unanswered("judy", vm("judy"), 10*time.Second))
	s.add(immediate("kim", uri("alice")))
	s.add(immediate("mia", uri("nate")))
	s.add(unanswered("nate", uri("mia"), 10*time.Second))
	s.add(immediate("oscar", "sip:+14255550100@gw.fabrikam.com"))
	s.add(immediate("pat", vm("pat")))
	s.add(rules.Rule{UserURI: uri("quinn"), Immediate: ptr(tgt(uri("rob"))),
		Unanswered: &rules.Unanswered{Target: tgt(vm("quinn")), After: 5 * time.Second},
		Busy:       ptr(tgt(vm("quinn")))})
	s.add(unanswered("sam", uri("tom"), 10*time.Second))
	s.add(unanswered("tom", uri("sam"), 10*time.Second))
	s.add(immediate("uma", uri("vic")))
	s.add(rules.Rule{UserURI: uri("vic"), Immediate: ptr(tgt(uri("uma"))),
		Unanswered: &rules.Unanswered{Target: tgt(vm("vic")), After: 5 * time.Second}})
	s.add(rules.Rule{UserURI: uri("walt"),
		Unanswered: &rules.Unanswered{Target: tgt(uri("carol")), After: 7 * time.Second},
		Busy:       ptr(tgt(uri("dave")))})
	return s
}

// outcome is a Plan written as strings, so that a table row reads like the
// plan it expects.
type outcome struct {
	target     string
	history    []string // "from -> to kind cause"
	applied    int
	noAnswer   string // "to after cause"
	busy       string // "to cause"
	suppressed []Kind
	stopped    []string // "from -> to kind reason"
}

func hopString(h Hop) string {
	return fmt.Sprintf("%s -> %s %s %d", name(h.From), name(h.To), h.Kind, h.Cause)
}

// name is the user part, with "/vm" for a mailbox: "bob", "bob/vm".
func name(t rules.Target) string {
	n := t.Parsed.User
	if t.IsVoicemail() {
		n += "/vm"
	}
	return n
}

func outcomeOf(p Plan) outcome {
	o := outcome{target: name(p.Target), applied: len(p.Applied), suppressed: p.Suppressed}
	for _, h := range p.History {
		o.history = append(o.history, hopString(h))
	}
	if r := p.NoAnswer; r != nil {
		o.noAnswer = fmt.Sprintf("%s -> %s %s %d", name(r.From), name(r.To), r.After, r.Cause)
	}
	if r := p.Busy; r != nil {
		o.busy = fmt.Sprintf("%s -> %s %d", name(r.From), name(r.To), r.Cause)
	}
	for _, s := range p.Stopped {
		o.stopped = append(o.stopped, fmt.Sprintf("%s -> %s %s %s", name(s.From), name(s.To), s.Kind, s.Reason))
	}
	return o
}

func (o outcome) String() string {
	return fmt.Sprintf("target=%s history=%q applied=%d noAnswer=%q busy=%q suppressed=%v stopped=%q",
		o.target, o.history, o.applied, o.noAnswer, o.busy, o.suppressed, o.stopped)
}

func equalOutcome(a, b outcome) bool {
	return a.target == b.target && slices.Equal(a.history, b.history) && a.applied == b.applied &&
		a.noAnswer == b.noAnswer && a.busy == b.busy && slices.Equal(a.suppressed, b.suppressed) &&
		slices.Equal(a.stopped, b.stopped)
}

func allRegistered(string) bool  { return true }
func noneRegistered(string) bool { return false }

// only returns a HasBindings where just the named users are registered.
func only(users ...string) func(string) bool {
	return func(a string) bool {
		user, _, _ := strings.Cut(a, "@")
		return slices.Contains(users, user)
	}
}

func TestDecide(t *testing.T) {
	noDiv := Flags{NoDiversion: true}
	tests := []struct {
		name     string
		target   string
		flags    Flags
		bindings func(string) bool
		max      int
		history  []Hop
		want     outcome
	}{
		// Immediate x flag x bindings.
		{name: "immediate applies, new target's rules armed", target: uri("alice"), bindings: allRegistered,
			want: outcome{target: "bob", history: []string{"alice -> bob immediate 302"}, applied: 1,
				noAnswer: "bob -> bob/vm 15s 408", busy: "bob -> bob/vm 486"}},
		{name: "immediate then unregistered target goes to its unanswered target at once", target: uri("alice"), bindings: noneRegistered,
			want: outcome{target: "bob/vm", history: []string{"alice -> bob immediate 302", "bob -> bob/vm unanswered 480"}, applied: 2}},
		{name: "immediate suppressed by no-diversion", target: uri("alice"), flags: noDiv, bindings: allRegistered,
			want: outcome{target: "alice", suppressed: []Kind{Immediate}}},
		{name: "immediate suppressed by no-diversion, no bindings: alice rings nothing (480)", target: uri("alice"), flags: noDiv, bindings: noneRegistered,
			want: outcome{target: "alice", suppressed: []Kind{Immediate}}},

		// Unanswered (with busy) x flag x bindings.
		{name: "unanswered and busy armed", target: uri("carol"), bindings: allRegistered,
			want: outcome{target: "carol", noAnswer: "carol -> carol/vm 20s 408", busy: "carol -> carol/vm 486"}},
		{name: "unanswered with no bindings retargets at once with 480", target: uri("carol"), bindings: noneRegistered,
			want: outcome{target: "carol/vm", history: []string{"carol -> carol/vm unanswered 480"}, applied: 1}},
		{name: "unanswered and busy suppressed by no-diversion", target: uri("carol"), flags: noDiv, bindings: allRegistered,
			want: outcome{target: "carol", suppressed: []Kind{Unanswered, Busy}}},
		{name: "no-diversion with no bindings does not retarget", target: uri("carol"), flags: noDiv, bindings: noneRegistered,
			want: outcome{target: "carol", suppressed: []Kind{Unanswered, Busy}}},

		// Busy only x flag x bindings.
		{name: "busy armed", target: uri("dave"), bindings: allRegistered,
			want: outcome{target: "dave", busy: "dave -> dave/vm 486"}},
		{name: "busy armed with no bindings (480 is not busy)", target: uri("dave"), bindings: noneRegistered,
			want: outcome{target: "dave", busy: "dave -> dave/vm 486"}},
		{name: "busy suppressed by no-diversion", target: uri("dave"), flags: noDiv, bindings: allRegistered,
			want: outcome{target: "dave", suppressed: []Kind{Busy}}},
		{name: "busy suppressed by no-diversion, no bindings", target: uri("dave"), flags: noDiv, bindings: noneRegistered,
			want: outcome{target: "dave", suppressed: []Kind{Busy}}},

		// No rule.
		{name: "user without rules rings", target: uri("rob"), bindings: allRegistered,
			want: outcome{target: "rob"}},
		{name: "user without rules, no-diversion: nothing suppressed", target: uri("rob"), flags: noDiv, bindings: noneRegistered,
			want: outcome{target: "rob"}},
		{name: "nil bindings func assumes bindings", target: uri("carol"),
			want: outcome{target: "carol", noAnswer: "carol -> carol/vm 20s 408", busy: "carol -> carol/vm 486"}},

		// Immediate takes precedence; immediate to a mailbox or elsewhere.
		{name: "immediate wins over the user's unanswered and busy", target: uri("quinn"), bindings: allRegistered,
			want: outcome{target: "rob", history: []string{"quinn -> rob immediate 302"}, applied: 1}},
		{name: "no-diversion on immediate+unanswered+busy suppresses the immediate", target: uri("quinn"), flags: noDiv, bindings: allRegistered,
			want: outcome{target: "quinn", suppressed: []Kind{Immediate}}},
		{name: "immediate to own mailbox ends the chain", target: uri("pat"), bindings: allRegistered,
			want: outcome{target: "pat/vm", history: []string{"pat -> pat/vm immediate 302"}, applied: 1}},
		{name: "immediate to a foreign number", target: uri("oscar"), bindings: allRegistered,
			want: outcome{target: "+14255550100", history: []string{"oscar -> +14255550100 immediate 302"}, applied: 1}},
		{name: "a mailbox target has no rules even when its user has", target: vm("alice"), bindings: allRegistered,
			want: outcome{target: "alice/vm"}},

		// Chains and loops.
		{name: "chain kim -> alice -> bob", target: uri("kim"), bindings: allRegistered,
			want: outcome{target: "bob", history: []string{"kim -> alice immediate 302", "alice -> bob immediate 302"}, applied: 2,
				noAnswer: "bob -> bob/vm 15s 408", busy: "bob -> bob/vm 486"}},
		{name: "immediate loop stops at the last new target", target: uri("erin"), bindings: allRegistered,
			want: outcome{target: "frank", history: []string{"erin -> frank immediate 302"}, applied: 1,
				stopped: []string{"frank -> erin immediate loop"}}},
		{name: "immediate loop from the other end", target: uri("frank"), bindings: allRegistered,
			want: outcome{target: "erin", history: []string{"frank -> erin immediate 302"}, applied: 1,
				stopped: []string{"erin -> frank immediate loop"}}},
		{name: "unanswered back into the chain is not armed", target: uri("mia"), bindings: allRegistered,
			want: outcome{target: "nate", history: []string{"mia -> nate immediate 302"}, applied: 1,
				stopped: []string{"nate -> mia unanswered loop"}}},
		{name: "looping immediate falls back to unanswered of an unregistered user", target: uri("uma"), bindings: only("uma"),
			want: outcome{target: "vic/vm", history: []string{"uma -> vic immediate 302", "vic -> vic/vm unanswered 480"}, applied: 2,
				stopped: []string{"vic -> uma immediate loop"}}},
		{name: "looping immediate of a registered user rings it with its rules armed", target: uri("uma"), bindings: allRegistered,
			want: outcome{target: "vic", history: []string{"uma -> vic immediate 302"}, applied: 1,
				noAnswer: "vic -> vic/vm 5s 408", stopped: []string{"vic -> uma immediate loop"}}},
		{name: "unanswered and busy to other users are armed", target: uri("walt"), bindings: allRegistered,
			want: outcome{target: "walt", noAnswer: "walt -> carol 7s 408", busy: "walt -> dave 486"}},

		// max_diversions.
		{name: "max 2 cuts the chain gina -> hank -> ivan", target: uri("gina"), max: 2, bindings: allRegistered,
			want: outcome{target: "ivan", history: []string{"gina -> hank immediate 302", "hank -> ivan immediate 302"}, applied: 2,
				stopped: []string{"ivan -> judy immediate max-diversions"}}},
		{name: "max 3 reaches judy but cannot arm her unanswered", target: uri("gina"), max: 3, bindings: allRegistered,
			want: outcome{target: "judy", history: []string{"gina -> hank immediate 302", "hank -> ivan immediate 302", "ivan -> judy immediate 302"}, applied: 3,
				stopped: []string{"judy -> judy/vm unanswered max-diversions"}}},
		{name: "max 4 arms judy's unanswered", target: uri("gina"), max: 4, bindings: allRegistered,
			want: outcome{target: "judy", history: []string{"gina -> hank immediate 302", "hank -> ivan immediate 302", "ivan -> judy immediate 302"}, applied: 3,
				noAnswer: "judy -> judy/vm 10s 408"}},
		{name: "max 3 with unregistered judy stops before her mailbox", target: uri("gina"), max: 3, bindings: noneRegistered,
			want: outcome{target: "judy", history: []string{"gina -> hank immediate 302", "hank -> ivan immediate 302", "ivan -> judy immediate 302"}, applied: 3,
				stopped: []string{"judy -> judy/vm unanswered max-diversions"}}},
		{name: "max 0 allows no diversion", target: uri("alice"), max: -1, bindings: allRegistered,
			want: outcome{target: "alice", stopped: []string{"alice -> bob immediate max-diversions"}}},
		{name: "max 0 arms nothing", target: uri("carol"), max: -1, bindings: allRegistered,
			want: outcome{target: "carol", stopped: []string{"carol -> carol/vm unanswered max-diversions", "carol -> carol/vm busy max-diversions"}}},

		// History from earlier decisions of the same call.
		{name: "history counts towards max", target: uri("alice"), max: 2, bindings: allRegistered,
			history: []Hop{{From: tgt(uri("x")), To: tgt(uri("alice")), Kind: Unanswered, Cause: CauseNoAnswer}},
			want: outcome{target: "bob", history: []string{"x -> alice unanswered 408", "alice -> bob immediate 302"}, applied: 1,
				stopped: []string{"bob -> bob/vm unanswered max-diversions", "bob -> bob/vm busy max-diversions"}}},
		{name: "history targets count as loops", target: uri("tom"), bindings: allRegistered,
			history: []Hop{{From: tgt(uri("sam")), To: tgt(uri("tom")), Kind: Unanswered, Cause: CauseNoAnswer}},
			want: outcome{target: "tom", history: []string{"sam -> tom unanswered 408"},
				stopped: []string{"tom -> sam unanswered loop"}}},
		{name: "the original user's mailbox is not a loop", target: uri("bob"), bindings: allRegistered,
			history: []Hop{{From: tgt(uri("alice")), To: tgt(uri("bob")), Kind: Immediate, Cause: CauseUnconditional}},
			want: outcome{target: "bob", history: []string{"alice -> bob immediate 302"},
				noAnswer: "bob -> bob/vm 15s 408", busy: "bob -> bob/vm 486"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			max := tc.max
			if max == 0 {
				max = 5
			}
			in := Input{Target: tgt(tc.target), Flags: tc.flags, Rules: testRules(),
				HasBindings: tc.bindings, MaxDiversions: max, History: tc.history}
			got := outcomeOf(Decide(in))
			if !equalOutcome(got, tc.want) {
				t.Errorf("Decide(%s)\n got %v\nwant %v", tc.target, got, tc.want)
			}
		})
	}
}

// TestDecideFollow walks whole calls through retargets, as the proxy does:
// decide, ring, retarget on the outcome, decide again.
func TestDecideFollow(t *testing.T) {
	tests := []struct {
		name     string
		target   string
		bindings func(string) bool
		max      int
		outcomes []int // final responses of successive ringing targets; 0 = no-answer timer
		want     []outcome
	}{
		{name: "no answer to voicemail", target: uri("carol"), outcomes: []int{0},
			want: []outcome{
				{target: "carol", noAnswer: "carol -> carol/vm 20s 408", busy: "carol -> carol/vm 486"},
				{target: "carol/vm", history: []string{"carol -> carol/vm unanswered 408"}},
			}},
		{name: "busy to voicemail", target: uri("carol"), outcomes: []int{486},
			want: []outcome{
				{target: "carol", noAnswer: "carol -> carol/vm 20s 408", busy: "carol -> carol/vm 486"},
				{target: "carol/vm", history: []string{"carol -> carol/vm busy 486"}},
			}},
		{name: "decline without busy rule takes unanswered with cause 486", target: uri("judy"), outcomes: []int{603},
			want: []outcome{
				{target: "judy", noAnswer: "judy -> judy/vm 10s 408"},
				{target: "judy/vm", history: []string{"judy -> judy/vm unanswered 486"}},
			}},
		{name: "all branches 480 takes unanswered with cause 480", target: uri("judy"), outcomes: []int{480},
			want: []outcome{
				{target: "judy", noAnswer: "judy -> judy/vm 10s 408"},
				{target: "judy/vm", history: []string{"judy -> judy/vm unanswered 480"}},
			}},
		{name: "immediate then no answer: chain alice -> bob -> bob's mailbox", target: uri("alice"), outcomes: []int{408},
			want: []outcome{
				{target: "bob", history: []string{"alice -> bob immediate 302"}, applied: 1,
					noAnswer: "bob -> bob/vm 15s 408", busy: "bob -> bob/vm 486"},
				{target: "bob/vm", history: []string{"alice -> bob immediate 302", "bob -> bob/vm unanswered 408"}},
			}},
		{name: "chain continues through a user's rules after a retarget", target: uri("walt"), outcomes: []int{0, 0},
			want: []outcome{
				{target: "walt", noAnswer: "walt -> carol 7s 408", busy: "walt -> dave 486"},
				{target: "carol", history: []string{"walt -> carol unanswered 408"},
					noAnswer: "carol -> carol/vm 20s 408", busy: "carol -> carol/vm 486"},
				{target: "carol/vm", history: []string{"walt -> carol unanswered 408", "carol -> carol/vm unanswered 408"}},
			}},
		{name: "retarget to an unregistered user goes straight on", target: uri("walt"), bindings: only("walt"), outcomes: []int{0},
			want: []outcome{
				{target: "walt", noAnswer: "walt -> carol 7s 408", busy: "walt -> dave 486"},
				{target: "carol/vm", history: []string{"walt -> carol unanswered 408", "carol -> carol/vm unanswered 480"}, applied: 1},
			}},
		{name: "unanswered ping-pong stops at the second user", target: uri("sam"), outcomes: []int{0},
			want: []outcome{
				{target: "sam", noAnswer: "sam -> tom 10s 408"},
				{target: "tom", history: []string{"sam -> tom unanswered 408"}, stopped: []string{"tom -> sam unanswered loop"}},
			}},
		{name: "max_diversions bounds the whole call", target: uri("walt"), max: 1, outcomes: []int{0},
			want: []outcome{
				{target: "walt", noAnswer: "walt -> carol 7s 408", busy: "walt -> dave 486"},
				{target: "carol", history: []string{"walt -> carol unanswered 408"},
					stopped: []string{"carol -> carol/vm unanswered max-diversions", "carol -> carol/vm busy max-diversions"}},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			max := tc.max
			if max == 0 {
				max = 5
			}
			bindings := tc.bindings
			if bindings == nil {
				bindings = allRegistered
			}
			in := Input{Target: tgt(tc.target), Rules: testRules(), HasBindings: bindings, MaxDiversions: max}
			plan := Decide(in)
			for step, want := range tc.want {
				if got := outcomeOf(plan); !equalOutcome(got, want) {
					t.Fatalf("step %d\n got %v\nwant %v", step, got, want)
				}
				if step == len(tc.outcomes) {
					break
				}
				r := plan.NoAnswer
				if code := tc.outcomes[step]; code != 0 {
					r = plan.RetargetOn(code)
				}
				if r == nil {
					t.Fatalf("step %d: no retarget for outcome %d", step, tc.outcomes[step])
				}
				in = plan.Follow(r)
				plan = Decide(in)
			}
			if len(tc.want) != len(tc.outcomes)+1 {
				t.Fatalf("bad test: %d outcomes need %d plans", len(tc.outcomes), len(tc.outcomes)+1)
			}
		})
	}
}

func TestRetargetOn(t *testing.T) {
	noAnswer := &Retarget{Hop: Hop{From: tgt(uri("carol")), To: tgt(vm("carol")), Kind: Unanswered, Cause: CauseNoAnswer}, After: 20 * time.Second}
	busy := &Retarget{Hop: Hop{From: tgt(uri("carol")), To: tgt(uri("dave")), Kind: Busy, Cause: CauseBusy}}
	both := Plan{NoAnswer: noAnswer, Busy: busy}
	tests := []struct {
		plan      Plan
		code      int
		wantKind  Kind // "" = no retarget
		wantCause Cause
	}{
		{both, 486, Busy, CauseBusy},
		{both, 600, Busy, CauseBusy},
		{both, 603, Busy, CauseBusy},
		{both, 408, Unanswered, CauseNoAnswer},
		{both, 480, Unanswered, CauseUnavailable},
		{both, 404, "", 0},
		{both, 487, "", 0},
		{both, 500, "", 0},
		{both, 200, "", 0},
		{Plan{NoAnswer: noAnswer}, 486, Unanswered, CauseBusy},
		{Plan{NoAnswer: noAnswer}, 603, Unanswered, CauseBusy},
		{Plan{Busy: busy}, 408, "", 0},
		{Plan{Busy: busy}, 480, "", 0},
		{Plan{}, 486, "", 0},
	}
	for _, tc := range tests {
		r := tc.plan.RetargetOn(tc.code)
		switch {
		case tc.wantKind == "" && r != nil:
			t.Errorf("plan(noAnswer=%v busy=%v).RetargetOn(%d) = %s, want none", tc.plan.NoAnswer != nil, tc.plan.Busy != nil, tc.code, hopString(r.Hop))
		case tc.wantKind != "" && (r == nil || r.Kind != tc.wantKind || r.Cause != tc.wantCause):
			t.Errorf("plan(noAnswer=%v busy=%v).RetargetOn(%d) = %v, want %s %d", tc.plan.NoAnswer != nil, tc.plan.Busy != nil, tc.code, r, tc.wantKind, tc.wantCause)
		}
	}
	if noAnswer.Cause != CauseNoAnswer {
		t.Errorf("RetargetOn changed the plan's retarget: cause %d", noAnswer.Cause)
	}
}

func TestFollowDoesNotShareHistory(t *testing.T) {
	in := Input{Target: tgt(uri("alice")), Rules: testRules(), HasBindings: allRegistered, MaxDiversions: 5}
	p := Decide(in) // alice -> bob, bob's rules armed
	if p.NoAnswer == nil || p.Busy == nil {
		t.Fatalf("plan for alice arms no-answer %v, busy %v", p.NoAnswer, p.Busy)
	}
	one := p.Follow(p.NoAnswer)
	two := p.Follow(&Retarget{Hop: Hop{From: p.Target, To: tgt(uri("dave")), Kind: Busy, Cause: CauseBusy}})
	if got := hopString(one.History[1]); got != "bob -> bob/vm unanswered 408" {
		t.Errorf("first follow's last hop = %s: overwritten by the second follow", got)
	}
	if got := hopString(two.History[1]); got != "bob -> dave busy 486" || name(two.Target) != "dave" {
		t.Errorf("second follow: target %s, last hop %s", name(two.Target), got)
	}
	if len(p.History) != 1 || one.MaxDiversions != 5 || one.Rules == nil || one.HasBindings == nil {
		t.Errorf("follow lost the call: plan history %d, max %d", len(p.History), one.MaxDiversions)
	}
}

func TestPlanOriginal(t *testing.T) {
	in := Input{Target: tgt(uri("kim")), Rules: testRules(), HasBindings: allRegistered, MaxDiversions: 5}
	p := Decide(in)
	if got := name(p.Original()); got != "kim" {
		t.Errorf("Original() = %s after a chain from kim", got)
	}
	p = Decide(Input{Target: tgt(uri("rob")), Rules: testRules(), MaxDiversions: 5})
	if got := name(p.Original()); got != "rob" {
		t.Errorf("Original() = %s without diversion, want rob", got)
	}
}

// TestDecideWithStore runs a decision against the real rule store, loaded
// from a rules file in the format of docs/design.md and docs/rules.md.
func TestDecideWithStore(t *testing.T) {
	file := []byte(`rules:
  - user: sip:alice@contoso.com
    immediate: sip:bob@contoso.com
  - user: sip:bob@Contoso.com
    unanswered: {target: "sip:bob@contoso.com;opaque=app:voicemail", after: 15s}
    busy: "sip:bob@contoso.com;opaque=app:voicemail"
`)
	rs, err := rules.Parse("rules.yaml", file, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	store := rules.New()
	if err := store.Replace(rs); err != nil {
		t.Fatal(err)
	}
	in := Input{Target: tgt("sip:alice@CONTOSO.com;transport=tcp"), Rules: store.Snapshot(), HasBindings: allRegistered, MaxDiversions: 5}
	got := outcomeOf(Decide(in))
	want := outcome{target: "bob", history: []string{"alice -> bob immediate 302"}, applied: 1,
		noAnswer: "bob -> bob/vm 15s 408", busy: "bob -> bob/vm 486"}
	if !equalOutcome(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

// BenchmarkDecide shows what a decision allocates: the plan only.
func BenchmarkDecide(b *testing.B) {
	rs := testRules()
	in := Input{Target: tgt(uri("kim")), Rules: rs, HasBindings: allRegistered, MaxDiversions: 5}
	b.ReportAllocs()
	for b.Loop() {
		if p := Decide(in); name(p.Target) != "bob" {
			b.Fatal("wrong plan")
		}
	}
}
