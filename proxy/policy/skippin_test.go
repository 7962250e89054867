package policy_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/sipproxy/sipproxy/proxy/policy"
)

// caller is one way a request can be identified in the matrix.
type caller struct {
	name     string
	identity string
	peer     bool
}

// mailbox is who sends (From) and whose mailbox is targeted (Request-URI).
type mailbox struct {
	name    string
	from    string
	mailbox string
}

// matrixRow is one combination of the skip-pin matrix, in labels that the
// oracle reads and in the input that SkipPin reads.
type matrixRow struct {
	method, transport, caller, mailbox, value string
	voicemail                                 bool
	in                                        policy.SkipPinInput
}

func (r matrixRow) String() string {
	return fmt.Sprintf("%s/%s/%s/%s/vm=%t/%s", r.method, r.transport, r.caller, r.mailbox, r.voicemail, r.value)
}

// skipPinMatrix builds every combination of method x transport x caller x
// mailbox x voicemail x value.
func skipPinMatrix() []matrixRow {
	methods := []string{"INVITE", "OPTIONS", "BYE"}
	transports := []string{"udp", "tcp", "tls"}
	callers := []caller{
		{name: "none"},
		{name: "digest", identity: "alice@contoso.com"},
		// A certificate SAN URI may spell the host in another case.
		{name: "cert", identity: "alice@Contoso.COM"},
		{name: "peer", peer: true},
	}
	mailboxes := []mailbox{
		{name: "own", from: "alice@contoso.com", mailbox: "alice@contoso.com"},
		{name: "other", from: "alice@contoso.com", mailbox: "bob@contoso.com"},
	}
	values := []string{"skip-pin", "no-pin"}

	var rows []matrixRow
	for _, m := range methods {
		for _, tp := range transports {
			for _, c := range callers {
				for _, mb := range mailboxes {
					for _, vm := range []bool{true, false} {
						for _, v := range values {
							rows = append(rows, matrixRow{
								method: m, transport: tp, caller: c.name, mailbox: mb.name, value: v, voicemail: vm,
								in: policy.SkipPinInput{
									Method:            m,
									Transport:         tp,
									Values:            []string{v},
									Identity:          c.identity,
									PeerTrustsSkipPin: c.peer,
									FromAOR:           mb.from,
									MailboxAOR:        mb.mailbox,
									ToVoicemail:       vm,
								},
							})
						}
					}
				}
			}
		}
	}
	return rows
}

// oracle is the skip-pin rule of docs/design.md written out plainly over the
// matrix labels, in the documented check order.
func oracle(r matrixRow) (keep bool, reason policy.Reason) {
	if r.method != "INVITE" {
		return false, "not_invite"
	}
	if r.value != "skip-pin" {
		return false, "bad_value"
	}
	if r.transport != "tls" {
		return false, "not_tls"
	}
	var why policy.Reason
	switch {
	case (r.caller == "digest" || r.caller == "cert") && r.mailbox == "own":
		why = "own_mailbox"
	case r.caller == "peer":
		why = "trusted_peer"
	case r.caller == "none":
		return false, "unauthenticated"
	default:
		return false, "identity_mismatch"
	}
	if !r.voicemail {
		return false, "not_voicemail"
	}
	return true, why
}

func TestSkipPinMatrix(t *testing.T) {
	rows := skipPinMatrix()
	if len(rows) != 3*3*4*2*2*2 {
		t.Fatalf("matrix has %d rows, want %d", len(rows), 3*3*4*2*2*2)
	}
	t.Logf("skip-pin matrix: %d rows", len(rows))

	got := map[string]int{}
	for _, r := range rows {
		keep, reason := oracle(r)
		want := policy.SkipPinDecision{Present: true, Keep: keep, Reason: reason}
		d := policy.SkipPin(r.in)
		if d != want {
			t.Errorf("%v: got %+v, want %+v", r, d, want)
		}
		got[d.Outcome()+"/"+string(d.Reason)]++
	}

	// Counted by hand from the dimensions, so that a wrong oracle shows too:
	// OPTIONS and BYE are 2/3 of 288; INVITE with the other value is half
	// of the remaining 96; of the 48 INVITE skip-pin rows 32 are not TLS;
	// the 16 left split by caller, mailbox and voicemail.
	want := map[string]int{
		"stripped/not_invite":        192,
		"stripped/bad_value":         48,
		"stripped/not_tls":           32,
		"stripped/unauthenticated":   4, // none x {own, other} x vm
		"stripped/identity_mismatch": 4, // {digest, cert} x other x vm
		"stripped/not_voicemail":     4, // {digest own, cert own, peer own, peer other} not to voicemail
		"kept/own_mailbox":           2, // {digest, cert} x own
		"kept/trusted_peer":          2, // peer x {own, other}
	}
	if !maps.Equal(got, want) {
		t.Errorf("outcome counts:\n got %v\nwant %v", got, want)
	}
}

func TestSkipPinEdgeCases(t *testing.T) {
	// base is alice, authenticated, reaching her own mailbox over TLS: kept.
	base := func() policy.SkipPinInput {
		return policy.SkipPinInput{
			Method:      "INVITE",
			Transport:   "tls",
			Values:      []string{"skip-pin"},
			Identity:    "alice@contoso.com",
			FromAOR:     "alice@contoso.com",
			MailboxAOR:  "alice@contoso.com",
			ToVoicemail: true,
		}
	}
	kept := func(r policy.Reason) policy.SkipPinDecision {
		return policy.SkipPinDecision{Present: true, Keep: true, Reason: r}
	}
	stripped := func(r policy.Reason) policy.SkipPinDecision {
		return policy.SkipPinDecision{Present: true, Reason: r}
	}

	tests := []struct {
		name string
		mod  func(*policy.SkipPinInput)
		want policy.SkipPinDecision
	}{
		{"base", func(*policy.SkipPinInput) {}, kept(policy.ReasonOwnMailbox)},

		// Presence.
		{"no header", func(in *policy.SkipPinInput) { in.Values = nil }, policy.SkipPinDecision{}},
		{"empty values slice", func(in *policy.SkipPinInput) { in.Values = []string{} }, policy.SkipPinDecision{}},
		{"no header on BYE", func(in *policy.SkipPinInput) { in.Method, in.Values = "BYE", nil }, policy.SkipPinDecision{}},

		// The value.
		{"upper case, spaces", func(in *policy.SkipPinInput) { in.Values = []string{" SKIP-PIN "} }, kept(policy.ReasonOwnMailbox)},
		{"mixed case, tabs", func(in *policy.SkipPinInput) { in.Values = []string{"\tSkip-Pin\t"} }, kept(policy.ReasonOwnMailbox)},
		{"comma list twice", func(in *policy.SkipPinInput) { in.Values = []string{"skip-pin, skip-pin"} }, stripped(policy.ReasonBadValue)},
		{"trailing comma", func(in *policy.SkipPinInput) { in.Values = []string{"skip-pin,"} }, stripped(policy.ReasonBadValue)},
		{"two headers", func(in *policy.SkipPinInput) { in.Values = []string{"skip-pin", "skip-pin"} }, stripped(policy.ReasonBadValue)},
		{"second header empty", func(in *policy.SkipPinInput) { in.Values = []string{"skip-pin", ""} }, stripped(policy.ReasonBadValue)},
		{"empty value", func(in *policy.SkipPinInput) { in.Values = []string{""} }, stripped(policy.ReasonBadValue)},
		{"blank value", func(in *policy.SkipPinInput) { in.Values = []string{" \t "} }, stripped(policy.ReasonBadValue)},
		{"with parameter", func(in *policy.SkipPinInput) { in.Values = []string{"skip-pin;x=1"} }, stripped(policy.ReasonBadValue)},
		{"quoted", func(in *policy.SkipPinInput) { in.Values = []string{`"skip-pin"`} }, stripped(policy.ReasonBadValue)},
		{"CR inside is not a hyphen", func(in *policy.SkipPinInput) { in.Values = []string{"skip\rpin"} }, stripped(policy.ReasonBadValue)},
		{"no hyphen", func(in *policy.SkipPinInput) { in.Values = []string{"skippin"} }, stripped(policy.ReasonBadValue)},
		{"other command", func(in *policy.SkipPinInput) { in.Values = []string{"play-greeting"} }, stripped(policy.ReasonBadValue)},
		{"unicode long s folds to s", func(in *policy.SkipPinInput) { in.Values = []string{"\u017fkip-pin"} }, stripped(policy.ReasonBadValue)},
		{"kelvin sign folds to k", func(in *policy.SkipPinInput) { in.Values = []string{"s\u212aip-pin"} }, stripped(policy.ReasonBadValue)},
		{"no-break space is not SIP whitespace", func(in *policy.SkipPinInput) { in.Values = []string{"skip-pin\u00a0"} }, stripped(policy.ReasonBadValue)},

		// Method: case-sensitive per RFC 3261 7.1.
		{"lower-case invite", func(in *policy.SkipPinInput) { in.Method = "invite" }, stripped(policy.ReasonNotInvite)},
		{"empty method", func(in *policy.SkipPinInput) { in.Method = "" }, stripped(policy.ReasonNotInvite)},
		{"ACK", func(in *policy.SkipPinInput) { in.Method = "ACK" }, stripped(policy.ReasonNotInvite)},

		// Transport.
		{"TLS as sipgo spells it", func(in *policy.SkipPinInput) { in.Transport = "TLS" }, kept(policy.ReasonOwnMailbox)},
		{"TCP upper case", func(in *policy.SkipPinInput) { in.Transport = "TCP" }, stripped(policy.ReasonNotTLS)},
		{"wss", func(in *policy.SkipPinInput) { in.Transport = "wss" }, stripped(policy.ReasonNotTLS)},
		{"empty transport", func(in *policy.SkipPinInput) { in.Transport = "" }, stripped(policy.ReasonNotTLS)},
		{"unicode tls", func(in *policy.SkipPinInput) { in.Transport = "tl\u017f" }, stripped(policy.ReasonNotTLS)},

		// Identity against From and mailbox.
		{"identity is From, not mailbox", func(in *policy.SkipPinInput) { in.MailboxAOR = "bob@contoso.com" }, stripped(policy.ReasonIdentityMismatch)},
		{"identity is mailbox, not From", func(in *policy.SkipPinInput) { in.FromAOR = "bob@contoso.com" }, stripped(policy.ReasonIdentityMismatch)},
		{"bob spoofs alice's From for her mailbox", func(in *policy.SkipPinInput) { in.Identity = "bob@contoso.com" }, stripped(policy.ReasonIdentityMismatch)},
		{"host case differs everywhere", func(in *policy.SkipPinInput) {
			in.Identity, in.FromAOR, in.MailboxAOR = "alice@CONTOSO.COM", "alice@contoso.com", "alice@Contoso.Com"
		}, kept(policy.ReasonOwnMailbox)},
		{"user case differs", func(in *policy.SkipPinInput) { in.Identity = "Alice@contoso.com" }, stripped(policy.ReasonIdentityMismatch)},
		{"escaped user is not unescaped", func(in *policy.SkipPinInput) {
			in.FromAOR, in.MailboxAOR = "%61lice@contoso.com", "%61lice@contoso.com"
		}, stripped(policy.ReasonIdentityMismatch)},
		{"other domain", func(in *policy.SkipPinInput) { in.FromAOR, in.MailboxAOR = "alice@fabrikam.com", "alice@fabrikam.com" }, stripped(policy.ReasonIdentityMismatch)},
		{"host differs by unicode fold", func(in *policy.SkipPinInput) {
			in.FromAOR, in.MailboxAOR = "alice@conto\u017fo.com", "alice@conto\u017fo.com"
		}, stripped(policy.ReasonIdentityMismatch)},
		{"user with @ compares to last @", func(in *policy.SkipPinInput) {
			in.Identity, in.FromAOR, in.MailboxAOR = "a@b@contoso.com", "a@b@CONTOSO.com", "a@b@contoso.com"
		}, kept(policy.ReasonOwnMailbox)},
		{"identity without user", func(in *policy.SkipPinInput) {
			in.Identity, in.FromAOR, in.MailboxAOR = "contoso.com", "contoso.com", "contoso.com"
		}, stripped(policy.ReasonIdentityMismatch)},
		{"identity with empty user", func(in *policy.SkipPinInput) {
			in.Identity, in.FromAOR, in.MailboxAOR = "@contoso.com", "@contoso.com", "@contoso.com"
		}, stripped(policy.ReasonIdentityMismatch)},
		{"identity with empty host", func(in *policy.SkipPinInput) {
			in.Identity, in.FromAOR, in.MailboxAOR = "alice@", "alice@", "alice@"
		}, stripped(policy.ReasonIdentityMismatch)},
		{"From and mailbox empty", func(in *policy.SkipPinInput) { in.FromAOR, in.MailboxAOR = "", "" }, stripped(policy.ReasonIdentityMismatch)},
		{"bare host From against user identity", func(in *policy.SkipPinInput) { in.FromAOR = "contoso.com" }, stripped(policy.ReasonIdentityMismatch)},

		// Trusted peers.
		{"peer over tls", func(in *policy.SkipPinInput) { in.Identity, in.PeerTrustsSkipPin = "", true }, kept(policy.ReasonTrustedPeer)},
		{"peer without tls", func(in *policy.SkipPinInput) { in.Identity, in.PeerTrustsSkipPin, in.Transport = "", true, "tcp" }, stripped(policy.ReasonNotTLS)},
		{"peer over udp", func(in *policy.SkipPinInput) { in.Identity, in.PeerTrustsSkipPin, in.Transport = "", true, "udp" }, stripped(policy.ReasonNotTLS)},
		{"peer for any mailbox", func(in *policy.SkipPinInput) {
			in.Identity, in.PeerTrustsSkipPin, in.FromAOR, in.MailboxAOR = "", true, "carol@contoso.com", "dave@contoso.com"
		}, kept(policy.ReasonTrustedPeer)},
		{"peer and own mailbox: own_mailbox wins", func(in *policy.SkipPinInput) { in.PeerTrustsSkipPin = true }, kept(policy.ReasonOwnMailbox)},
		{"peer with mismatched identity", func(in *policy.SkipPinInput) {
			in.PeerTrustsSkipPin, in.Identity = true, "bob@contoso.com"
		}, kept(policy.ReasonTrustedPeer)},
		{"peer not to voicemail", func(in *policy.SkipPinInput) {
			in.Identity, in.PeerTrustsSkipPin, in.ToVoicemail = "", true, false
		}, stripped(policy.ReasonNotVoicemail)},

		// Check order: when several conditions fail, the first one wins.
		{"order: not_invite before bad_value", func(in *policy.SkipPinInput) {
			*in = policy.SkipPinInput{Method: "OPTIONS", Transport: "udp", Values: []string{"x, y"}, FromAOR: "alice@contoso.com", MailboxAOR: "bob@contoso.com"}
		}, stripped(policy.ReasonNotInvite)},
		{"order: bad_value before not_tls", func(in *policy.SkipPinInput) {
			*in = policy.SkipPinInput{Method: "INVITE", Transport: "udp", Values: []string{"x"}, FromAOR: "alice@contoso.com", MailboxAOR: "bob@contoso.com"}
		}, stripped(policy.ReasonBadValue)},
		{"order: not_tls before unauthenticated", func(in *policy.SkipPinInput) {
			*in = policy.SkipPinInput{Method: "INVITE", Transport: "tcp", Values: []string{"skip-pin"}, FromAOR: "alice@contoso.com", MailboxAOR: "bob@contoso.com"}
		}, stripped(policy.ReasonNotTLS)},
		{"order: unauthenticated before not_voicemail", func(in *policy.SkipPinInput) {
			*in = policy.SkipPinInput{Method: "INVITE", Transport: "tls", Values: []string{"skip-pin"}, FromAOR: "alice@contoso.com", MailboxAOR: "alice@contoso.com"}
		}, stripped(policy.ReasonUnauthenticated)},
		{"order: identity_mismatch before not_voicemail", func(in *policy.SkipPinInput) {
			in.Identity, in.ToVoicemail = "bob@contoso.com", false
		}, stripped(policy.ReasonIdentityMismatch)},
		{"order: not_voicemail last", func(in *policy.SkipPinInput) { in.ToVoicemail = false }, stripped(policy.ReasonNotVoicemail)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			tt.mod(&in)
			if got := policy.SkipPin(in); got != tt.want {
				t.Errorf("SkipPin(%+v) = %+v, want %+v", in, got, tt.want)
			}
		})
	}
}

func TestSkipPinDecisionLabels(t *testing.T) {
	tests := []struct {
		d       policy.SkipPinDecision
		outcome string
		strip   bool
	}{
		{policy.SkipPinDecision{}, "", false},
		{policy.SkipPinDecision{Present: true, Keep: true, Reason: policy.ReasonTrustedPeer}, "kept", false},
		{policy.SkipPinDecision{Present: true, Reason: policy.ReasonNotTLS}, "stripped", true},
	}
	for _, tt := range tests {
		if got := tt.d.Outcome(); got != tt.outcome {
			t.Errorf("%+v.Outcome() = %q, want %q", tt.d, got, tt.outcome)
		}
		if got := tt.d.Strip(); got != tt.strip {
			t.Errorf("%+v.Strip() = %t, want %t", tt.d, got, tt.strip)
		}
	}
}

// TestReasons pins the label values of sipproxy_skip_pin_total (issue 3)
// and that every decision SkipPin makes uses one of them consistently.
func TestReasons(t *testing.T) {
	want := []policy.Reason{
		"not_invite", "bad_value", "not_tls", "unauthenticated", "identity_mismatch", "not_voicemail",
		"hop_not_tls", // issue 9: every branch towards a voicemail pool is checked again
		"own_mailbox", "trusted_peer",
	}
	if got := policy.Reasons(); !slices.Equal(got, want) {
		t.Fatalf("Reasons() = %v, want %v", got, want)
	}
	for _, r := range want {
		if got, wantKept := r.Kept(), r == "own_mailbox" || r == "trusted_peer"; got != wantKept {
			t.Errorf("%s.Kept() = %t, want %t", r, got, wantKept)
		}
	}
	for _, r := range skipPinMatrix() {
		d := policy.SkipPin(r.in)
		if !slices.Contains(want, d.Reason) {
			t.Errorf("%v: reason %q not in the fixed set", r, d.Reason)
		}
		if d.Keep != d.Reason.Kept() {
			t.Errorf("%v: Keep=%t but reason %q", r, d.Keep, d.Reason)
		}
	}
}

// TestHopKeepsSkipPin: a kept skip-pin travels only over TLS to a
// voicemail server, checked for every branch (pool member, failover,
// redirect).
func TestHopKeepsSkipPin(t *testing.T) {
	for _, tc := range []struct {
		transport string
		voicemail bool
		want      policy.Reason
	}{
		{"tls", true, ""},
		{"TLS", true, ""},
		{"tcp", true, policy.ReasonHopNotTLS},
		{"udp", true, policy.ReasonHopNotTLS},
		{"tls", false, policy.ReasonNotVoicemail},
		{"tcp", false, policy.ReasonNotVoicemail},
	} {
		if got := policy.HopKeepsSkipPin(tc.transport, tc.voicemail); got != tc.want {
			t.Errorf("HopKeepsSkipPin(%q, %v) = %q, want %q", tc.transport, tc.voicemail, got, tc.want)
		}
	}
}
