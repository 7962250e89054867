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
