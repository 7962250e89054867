package aor

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, aor string
		ok      bool
	}{
		{"sip:alice@contoso.com", "alice@contoso.com", true},
		{"sip:Alice@CONTOSO.com;transport=tls", "Alice@contoso.com", true},
		{" sips:bob@contoso.com:5061 ", "bob@contoso.com", true},
		{"sip:carol@contoso.com;opaque=app:voicemail", "carol@contoso.com", true},
		{"sip:um.contoso.com:5066;transport=tls", "um.contoso.com", true},
		{"sip:alice@[::1]:5060", "alice@[::1]", true},
		{"alice@contoso.com", "", false},
		{"tel:+15551234", "", false},
		{"http://contoso.com", "", false},
		{"sip:", "", false},
		{"", "", false},
		{"sip:a b@contoso.com", "", false},
		{"sip:alice@conto so.com", "", false},
		{"sip:alice@-contoso.com", "", false},
		{"sip:alice@contoso.com>", "", false},
	} {
		_, got, err := Parse(tc.in)
		if (err == nil) != tc.ok || got != tc.aor {
			t.Errorf("Parse(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.aor, tc.ok)
		}
	}
}

func TestIsMailbox(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"sip:carol@contoso.com;opaque=app:voicemail", true},
		{"sip:carol@contoso.com;OPAQUE=APP:VoiceMail", true},
		{"sip:carol@contoso.com;transport=tls;Opaque=app:voicemail;x=1", true},
		{"sip:carol@contoso.com", false},
		{"sip:carol@contoso.com;opaque=app:conf", false},
		{"sip:carol@contoso.com;opaque", false},
		{"sip:carol@contoso.com;x-opaque=app:voicemail", false},
		{"sip:carol@contoso.com?opaque=app:voicemail", false},
	} {
		u, _, err := Parse(tc.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.in, err)
		}
		if got := IsMailbox(u); got != tc.want {
			t.Errorf("IsMailbox(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestEqual(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		eq   bool
	}{
		{"alice@contoso.com", "alice@contoso.com", true},
		{"alice@contoso.com", "alice@CONTOSO.com", true},
		{"alice@contoso.com", "Alice@contoso.com", false}, // user part is case-sensitive
		{"alice@contoso.com", "alice@contoso.co", false},
		{"alice@contoso.com", "alice", false},
		{"contoso.com", "CONTOSO.COM", true}, // bare hosts
		{"contoso.com", "@contoso.com", false},
		{"a@b@contoso.com", "a@b@contoso.com", true}, // host after the last '@'
		{"a@b@contoso.com", "a@B@contoso.com", false},
		{"alice@contoſo.com", "alice@contoso.com", false}, // no Unicode folding (U+017F)
		{"alice@kontoso.com", "alice@Kontoso.com", true},
		{"alice@\u212aontoso.com", "alice@kontoso.com", false}, // Kelvin sign is not K
	} {
		if got := Equal(tc.a, tc.b); got != tc.eq {
			t.Errorf("Equal(%q, %q) = %v", tc.a, tc.b, got)
		}
		if got := Equal(tc.b, tc.a); got != tc.eq {
			t.Errorf("Equal(%q, %q) = %v (not symmetric)", tc.b, tc.a, got)
		}
	}
}
