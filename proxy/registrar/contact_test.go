package registrar

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func TestContactKey(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"sip:alice@pc.contoso.com", "sip:alice@PC.Contoso.COM", true},
		{"sip:alice@pc.contoso.com;transport=tcp", "sip:alice@pc.contoso.com;transport=TCP", true},
		{"sip:alice@pc.contoso.com;transport=tcp", "sip:alice@pc.contoso.com;ob;transport=tcp;lr", true},
		{"SIP:alice@pc.contoso.com", "sip:alice@pc.contoso.com", true},
		{"sip:alice@192.0.2.10:5060", "sip:alice@192.0.2.10:5060", true},
		{"sip:alice@pc.contoso.com", "sip:Alice@pc.contoso.com", false},
		{"sip:alice@pc.contoso.com", "sips:alice@pc.contoso.com", false},
		{"sip:alice@pc.contoso.com", "sip:alice@pc.contoso.com:5060", false},
		{"sip:alice@pc.contoso.com:5060", "sip:alice@pc.contoso.com:5062", false},
		{"sip:alice@pc.contoso.com", "sip:alice@pc.contoso.com;transport=udp", false},
		{"sip:alice@pc.contoso.com;transport=udp", "sip:alice@pc.contoso.com;transport=tcp", false},
		{"sip:pc.contoso.com", "sip:alice@pc.contoso.com", false},
	}
	for _, tc := range tests {
		var a, b sip.Uri
		if err := sip.ParseUri(tc.a, &a); err != nil {
			t.Fatalf("ParseUri(%q): %v", tc.a, err)
		}
		if err := sip.ParseUri(tc.b, &b); err != nil {
			t.Fatalf("ParseUri(%q): %v", tc.b, err)
		}
		ka, kb := contactKey(a), contactKey(b)
		if (ka == kb) != tc.same {
			t.Errorf("%q vs %q: keys %q and %q, same=%v, want %v", tc.a, tc.b, ka, kb, ka == kb, tc.same)
		}
	}
}

func TestParseDeltaSeconds(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "0", want: 0},
		{in: "3600", want: time.Hour},
		{in: " 60 ", want: time.Minute},
		{in: "007", want: 7 * time.Second},
		{in: "4294967295", want: maxDeltaSeconds * time.Second},
		{in: "4294967296", want: maxDeltaSeconds * time.Second},
		{in: "999999999999999999999999", want: maxDeltaSeconds * time.Second},
		{in: "", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "+1", wantErr: true},
		{in: "1.5", wantErr: true},
		{in: "1h", wantErr: true},
		{in: "0x10", wantErr: true},
	}
	for _, tc := range tests {
		got, err := parseDeltaSeconds(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseDeltaSeconds(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestCanonicalAOR(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice@contoso.com", "alice@contoso.com"},
		{"alice@Contoso.COM", "alice@contoso.com"},
		{" Alice@contoso.com ", "Alice@contoso.com"},
		{"sip:alice@Contoso.com:5060;transport=tcp", "alice@contoso.com"},
		{"SIPS:alice@contoso.com", "alice@contoso.com"},
		{"contoso.com", "contoso.com"},
		{"", ""},
		{"@contoso.com", ""},
		{"alice@", ""},
		{"sip:", ""},
	}
	for _, tc := range tests {
		if got := canonicalAOR(tc.in); got != tc.want {
			t.Errorf("canonicalAOR(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStateStoreSchemaValid(t *testing.T) {
	if err := stateStoreSchema().Validate(); err != nil {
		t.Fatal(err)
	}
}

// FuzzRegister feeds arbitrary REGISTERs to the registrar: it must answer
// every one with a final response, change nothing unless the answer is 200,
// and never store a binding that Lookup then misses.
func FuzzRegister(f *testing.F) {
	seeds := []string{
		"Contact: <sip:alice@192.0.2.10:5060>",
		"Contact: <sip:alice@192.0.2.10:5060>;expires=0",
		"Contact: *\r\nExpires: 0",
		"Contact: *\r\nExpires: 60",
		"Contact: <sip:a@h>;q=0.5, <sip:b@h>;expires=30",
		"Contact: <sip:a@h>;q=2",
		"Expires: abc",
		"Contact: <tel:+1555>",
		"Contact: \"x, y\" <sip:a@h;transport=TCP>;Expires=120\r\nExpires: 99999999999",
		"",
	}
	for _, s := range seeds {
		f.Add(s, uint32(1))
	}
	f.Fuzz(func(t *testing.T, headers string, cseq uint32) {
		raw := "REGISTER sip:contoso.com SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-fuzz\r\n" +
			"From: <sip:alice@contoso.com>;tag=1\r\n" +
			"To: <sip:alice@contoso.com>\r\n" +
			"Call-ID: fuzz\r\n" +
			"CSeq: " + strconv.FormatUint(uint64(cseq), 10) + " REGISTER\r\n" +
			headers + "\r\nContent-Length: 0\r\n\r\n"
		msg, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		r, clock, gauge := newTestRegistrar(t, Options{})
		r.Register(register(t, "existing", 1, "Contact: <sip:alice@203.0.113.5>"), alice, udpFlow)
		before := r.Lookup(alice)

		res := r.Register(req, alice, udpFlow)
		if res == nil || res.StatusCode < 200 || res.StatusCode > 699 {
			t.Fatalf("no final response: %v", res)
		}
		after := r.Lookup(alice)
		if res.StatusCode != 200 && !slices.Equal(relative(before, clock.Now()), relative(after, clock.Now())) {
			t.Fatalf("%d changed the bindings: %v -> %v", res.StatusCode, before, after)
		}
		if res.StatusCode == 200 && len(res.GetHeaders("Contact")) != len(after) {
			t.Fatalf("200 lists %d contacts, Lookup %d", len(res.GetHeaders("Contact")), len(after))
		}
		if gauge.Value() != float64(r.Count()) {
			t.Fatalf("gauge %v, Count %d", gauge.Value(), r.Count())
		}
	})
}
