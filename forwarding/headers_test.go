package forwarding

import (
	"slices"
	"strings"
	"testing"

	"github.com/sipproxy/sipproxy/rules"
)

func TestHistoryInfoAndDiversion(t *testing.T) {
	alice, bob := tgt("sip:alice@contoso.com"), tgt("sip:bob@contoso.com")
	bobVM := tgt("sip:bob@contoso.com;opaque=app:voicemail")
	tests := []struct {
		name          string
		original      rules.Target
		hops          []Hop
		wantHistory   []string
		wantDiversion []string
	}{
		{name: "no diversion, no headers", original: alice},
		{
			name:     "immediate (RFC 7044 shape: index, cause on the new target, mp)",
			original: alice,
			hops:     []Hop{{From: alice, To: bob, Kind: Immediate, Cause: CauseUnconditional}},
			wantHistory: []string{
				"<sip:alice@contoso.com>;index=1",
				"<sip:bob@contoso.com;cause=302>;index=1.1;mp=1",
			},
			wantDiversion: []string{"<sip:alice@contoso.com>;reason=unconditional;counter=1"},
		},
		{
			name:     "immediate then no answer to the mailbox",
			original: alice,
			hops: []Hop{
				{From: alice, To: bob, Kind: Immediate, Cause: CauseUnconditional},
				{From: bob, To: bobVM, Kind: Unanswered, Cause: CauseNoAnswer},
			},
			wantHistory: []string{
				"<sip:alice@contoso.com>;index=1",
				"<sip:bob@contoso.com;cause=302>;index=1.1;mp=1",
				"<sip:bob@contoso.com;opaque=app:voicemail;cause=408>;index=1.1.1;mp=1.1",
			},
			wantDiversion: []string{
				"<sip:bob@contoso.com>;reason=no-answer;counter=1",
				"<sip:alice@contoso.com>;reason=unconditional;counter=1",
			},
		},
		{
			name:          "busy",
			original:      bob,
			hops:          []Hop{{From: bob, To: bobVM, Kind: Busy, Cause: CauseBusy}},
			wantHistory:   []string{"<sip:bob@contoso.com>;index=1", "<sip:bob@contoso.com;opaque=app:voicemail;cause=486>;index=1.1;mp=1"},
			wantDiversion: []string{"<sip:bob@contoso.com>;reason=user-busy;counter=1"},
		},
		{
			name:          "unavailable (no bindings)",
			original:      bob,
			hops:          []Hop{{From: bob, To: bobVM, Kind: Unanswered, Cause: CauseUnavailable}},
			wantHistory:   []string{"<sip:bob@contoso.com>;index=1", "<sip:bob@contoso.com;opaque=app:voicemail;cause=480>;index=1.1;mp=1"},
			wantDiversion: []string{"<sip:bob@contoso.com>;reason=unavailable;counter=1"},
		},
		{
			name:     "parameters kept, URI headers dropped, an existing cause replaced",
			original: tgt("sip:alice@contoso.com;user=phone?Subject=hi"),
			hops: []Hop{{From: tgt("sip:alice@contoso.com;user=phone?Subject=hi"),
				To: tgt("sips:bob@contoso.com:5061;transport=tls;cause=404?Priority=urgent"), Kind: Immediate, Cause: CauseUnconditional}},
			wantHistory: []string{
				"<sip:alice@contoso.com;user=phone>;index=1",
				"<sips:bob@contoso.com:5061;transport=tls;cause=302>;index=1.1;mp=1",
			},
			wantDiversion: []string{"<sip:alice@contoso.com;user=phone>;reason=unconditional;counter=1"},
		},
		{
			name:     "unparsed targets use the text as written",
			original: rules.Target{URI: "sip:alice@contoso.com"},
			hops:     []Hop{{From: rules.Target{URI: "sip:alice@contoso.com"}, To: rules.Target{URI: "sip:bob@contoso.com?X=1"}, Kind: Immediate, Cause: CauseUnconditional}},
			wantHistory: []string{
				"<sip:alice@contoso.com>;index=1",
				"<sip:bob@contoso.com;cause=302>;index=1.1;mp=1",
			},
			wantDiversion: []string{"<sip:alice@contoso.com>;reason=unconditional;counter=1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := HistoryInfo(tc.original, tc.hops); !slices.Equal(got, tc.wantHistory) {
				t.Errorf("HistoryInfo:\n got %s\nwant %s", strings.Join(got, ", "), strings.Join(tc.wantHistory, ", "))
			}
			if got := Diversion(tc.hops); !slices.Equal(got, tc.wantDiversion) {
				t.Errorf("Diversion:\n got %s\nwant %s", strings.Join(got, ", "), strings.Join(tc.wantDiversion, ", "))
			}
		})
	}
}

// TestHeadersFromPlans builds the headers of whole calls from Decide and
// Follow, the way the proxy does on each retarget.
func TestHeadersFromPlans(t *testing.T) {
	in := Input{Target: tgt("sip:kim@contoso.com"), Rules: testRules(), HasBindings: allRegistered, MaxDiversions: 5}
	p := Decide(in) // kim -> alice -> bob, ringing bob
	p = Decide(p.Follow(p.RetargetOn(486)))
	wantHistory := []string{
		"<sip:kim@contoso.com>;index=1",
		"<sip:alice@contoso.com;cause=302>;index=1.1;mp=1",
		"<sip:bob@contoso.com;cause=302>;index=1.1.1;mp=1.1",
		"<sip:bob@contoso.com;opaque=app:voicemail;cause=486>;index=1.1.1.1;mp=1.1.1",
	}
	wantDiversion := []string{
		"<sip:bob@contoso.com>;reason=user-busy;counter=1",
		"<sip:alice@contoso.com>;reason=unconditional;counter=1",
		"<sip:kim@contoso.com>;reason=unconditional;counter=1",
	}
	if got := HistoryInfo(p.Original(), p.History); !slices.Equal(got, wantHistory) {
		t.Errorf("HistoryInfo:\n got %q\nwant %q", got, wantHistory)
	}
	if got := Diversion(p.History); !slices.Equal(got, wantDiversion) {
		t.Errorf("Diversion:\n got %q\nwant %q", got, wantDiversion)
	}
}

func TestDiversionReason(t *testing.T) {
	for cause, want := range map[Cause]string{
		CauseUnconditional: "unconditional", CauseNoAnswer: "no-answer", CauseBusy: "user-busy",
		CauseUnavailable: "unavailable", 500: "unknown",
	} {
		if got := cause.DiversionReason(); got != want {
			t.Errorf("Cause(%d).DiversionReason() = %q, want %q", cause, got, want)
		}
	}
}
