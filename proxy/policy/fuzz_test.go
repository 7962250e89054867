package policy_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/sipproxy/sipproxy/proxy/policy"
)

// pick returns the first n%3 of a and b: no value, one, or two header lines.
func pick(a, b string, n uint8) []string {
	return []string{a, b}[:n%3]
}

// isASCII reports whether s has only 7-bit bytes.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// naiveHas splits on every comma, quotes or not, and compares each trimmed
// element to token in lower case. It is the oracle for NoDiversion: a match
// by NoDiversion is always a naive match, and without quotes the two agree.
func naiveHas(values []string, token string) bool {
	for _, v := range values {
		for _, e := range strings.Split(v, ",") {
			e = strings.Trim(e, " \t\r\n")
			if isASCII(e) && strings.ToLower(e) == token {
				return true
			}
		}
	}
	return false
}

func FuzzNoDiversion(f *testing.F) {
	// Spec section 4.2 and its variants.
	f.Add("private-no-diversion", "", uint8(1))
	f.Add("Private-No-Diversion", "", uint8(1))
	f.Add(" foo , private-no-diversion ,", "", uint8(1))
	f.Add("normal", "private-no-diversion", uint8(2))
	f.Add(`"a,private-no-diversion"`, "x", uint8(2))
	f.Add(`"a\",b", private-no-diversion`, "", uint8(1))
	f.Add("private", "", uint8(0))
	f.Fuzz(func(t *testing.T, a, b string, n uint8) {
		values := pick(a, b, n)
		got := policy.NoDiversion(values)
		naive := naiveHas(values, "private-no-diversion")
		if got && !naive {
			t.Fatalf("NoDiversion(%q) = true but no element is the token", values)
		}
		if !strings.Contains(a+b, `"`) && got != naive {
			t.Fatalf("NoDiversion(%q) = %t, unquoted oracle says %t", values, got, naive)
		}
	})
}

func FuzzSkipPin(f *testing.F) {
	// Spec section 4.1: alice reaches her own voicemail over TLS.
	f.Add("INVITE", "tls", "skip-pin", "", uint8(1), "alice@contoso.com", "alice@contoso.com", "alice@contoso.com", false, true)
	f.Add("INVITE", "TLS", " SKIP-PIN ", "", uint8(1), "alice@contoso.com", "alice@CONTOSO.com", "alice@contoso.com", false, true)
	// The same from bob, from nobody, over TCP, twice, from a peer.
	f.Add("INVITE", "tls", "skip-pin", "", uint8(1), "bob@contoso.com", "alice@contoso.com", "alice@contoso.com", false, true)
	f.Add("INVITE", "tls", "skip-pin", "", uint8(1), "", "alice@contoso.com", "alice@contoso.com", false, true)
	f.Add("INVITE", "tcp", "skip-pin", "", uint8(1), "alice@contoso.com", "alice@contoso.com", "alice@contoso.com", false, true)
	f.Add("INVITE", "tls", "skip-pin", "skip-pin", uint8(2), "alice@contoso.com", "alice@contoso.com", "alice@contoso.com", false, true)
	f.Add("INVITE", "tls", "skip-pin", "", uint8(1), "", "alice@contoso.com", "bob@contoso.com", true, true)
	// Spec section 4.2: UM's Play-On-Phone INVITE has no Ms-Exchange-Command.
	f.Add("INVITE", "tls", "", "", uint8(0), "", "alice@contoso.com", "172.19.58.98", true, false)
	f.Add("BYE", "udp", "skip-pin;x=1", "", uint8(1), "", "", "", false, false)
	f.Fuzz(func(t *testing.T, method, transport, v1, v2 string, n uint8, identity, from, mailbox string, peer, vm bool) {
		in := policy.SkipPinInput{
			Method: method, Transport: transport, Values: pick(v1, v2, n),
			Identity: identity, PeerTrustsSkipPin: peer,
			FromAOR: from, MailboxAOR: mailbox, ToVoicemail: vm,
		}
		d := policy.SkipPin(in)
		if d.Present != (len(in.Values) > 0) {
			t.Fatalf("%+v: Present=%t with %d values", in, d.Present, len(in.Values))
		}
		if !d.Present {
			if d != (policy.SkipPinDecision{}) {
				t.Fatalf("%+v: absent header but decision %+v", in, d)
			}
			return
		}
		if !slices.Contains(policy.Reasons(), d.Reason) || d.Keep != d.Reason.Kept() {
			t.Fatalf("%+v: inconsistent decision %+v", in, d)
		}
		if !d.Keep {
			return
		}
		if method != "INVITE" || !strings.EqualFold(transport, "tls") || !vm {
			t.Fatalf("%+v: kept off an INVITE over TLS to voicemail", in)
		}
		if len(in.Values) != 1 || strings.ToLower(strings.Trim(in.Values[0], " \t\r\n")) != "skip-pin" {
			t.Fatalf("%+v: kept a value that is not the token", in)
		}
		switch d.Reason {
		case policy.ReasonTrustedPeer:
			if !peer {
				t.Fatalf("%+v: trusted_peer without a trusted peer", in)
			}
		case policy.ReasonOwnMailbox:
			at := strings.LastIndex(identity, "@")
			if at <= 0 || at == len(identity)-1 ||
				!strings.HasPrefix(from, identity[:at+1]) || !strings.HasPrefix(mailbox, identity[:at+1]) ||
				!strings.EqualFold(identity, from) || !strings.EqualFold(identity, mailbox) {
				t.Fatalf("%+v: own_mailbox for an identity that is not From and mailbox", in)
			}
		}
	})
}
