package policy_test

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/internal/aor"
	"github.com/sipproxy/sipproxy/proxy/policy"
)

// The example INVITEs of [MS-OCEXUM] section 4 as printed (including 4.2's
// "<sip: exchange...>" Contact, which sipgo accepts and keeps as written),
// with a plausible SDP body. 4.2's Request-URI, wrapped in the document, is
// joined onto one line, and 4.2 gets the Via the document leaves out.
const (
	sdp = "v=0\r\n" +
		"o=- 0 0 IN IP4 10.56.65.37\r\n" +
		"s=session\r\n" +
		"c=IN IP4 10.56.65.37\r\n" +
		"t=0 0\r\n" +
		"m=audio 49152 RTP/AVP 0 101\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n"

	spec41 = "INVITE sip:alice@contoso.com;opaque=app:voicemail SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS 10.56.65.37:33876\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@contoso.com>;tag=01742a55e6;epid=6b5d10e663\r\n" +
		"To: <sip:alice@contoso.com;opaque=app:voicemail>\r\n" +
		"Call-ID: f7c2efff9240413cb6e5125fdca4b63a\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:alice@contoso.com;opaque=user:epid:ihclvAI6-FmKSGLKr_2rtAAA;gruu>\r\n" +
		"Ms-Exchange-Command: skip-pin\r\n" +
		"Content-Type: application/sdp\r\n" +
		"Content-Length: 159\r\n" +
		"\r\n" + sdp

	spec42 = "INVITE sip:172.19.58.98:2280;transport=tls;ms-opaque=ce5f21cc9d;ms-received-cid=DOA300 SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS 10.0.0.5:5066;branch=z9hG4bK-um-1\r\n" +
		"Max-Forwards: 68\r\n" +
		"Content-Length: 159\r\n" +
		"From: <sip:alice@contoso.com>;epid=1944B98832;tag=7534fa434\r\n" +
		"To: <sip:alice@contoso.com>;epid=d793aff63a\r\n" +
		"CSeq: 5 INVITE\r\n" +
		"Call-ID: 7a7378c9-7b3c-4cec-b6da-ec27d752e904\r\n" +
		"Contact: <sip: exchange.contoso.com:5066;transport=Tls;ms-opaque=a752506cbee22182>;automata\r\n" +
		"User-Agent: RTCC/3.0.0.0\r\n" +
		"Content-Type: application/sdp\r\n" +
		"Allow: UPDATE\r\n" +
		"Ms-Sensitivity: private-no-diversion\r\n" +
		"Allow: Ack, Cancel, Bye, Invite, Message, Info, Service, Options, BeNotify\r\n" +
		"\r\n" + sdp
)

func parseRequest(t *testing.T, raw string) *sip.Request {
	t.Helper()
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		t.Fatalf("parsed %T, want *sip.Request", msg)
	}
	return req
}

// headerValues is how the pipeline collects the raw values of a header.
func headerValues(req *sip.Request, name string) []string {
	var vs []string
	for _, h := range req.GetHeaders(name) {
		vs = append(vs, h.Value())
	}
	return vs
}

// TestSpecExamples runs the two example INVITEs of spec section 4 through
// sipgo's parser and the policy, as the pipeline will.
func TestSpecExamples(t *testing.T) {
	req41 := parseRequest(t, spec41)
	in := policy.SkipPinInput{
		Method:      string(req41.Method),
		Transport:   "TLS", // as sipgo's Request.Transport reports a TLS listener
		Values:      headerValues(req41, policy.HeaderExchangeCommand),
		FromAOR:     aor.Of(req41.From().Address),
		MailboxAOR:  aor.Of(req41.Recipient),
		ToVoicemail: true, // opaque=app:voicemail
	}
	tests := []struct {
		name     string
		identity string
		want     policy.SkipPinDecision
	}{
		{"alice to her own mailbox", "alice@contoso.com", policy.SkipPinDecision{Present: true, Keep: true, Reason: policy.ReasonOwnMailbox}},
		{"bob to alice's mailbox", "bob@contoso.com", policy.SkipPinDecision{Present: true, Reason: policy.ReasonIdentityMismatch}},
		{"nobody", "", policy.SkipPinDecision{Present: true, Reason: policy.ReasonUnauthenticated}},
	}
	for _, tt := range tests {
		t.Run("4.1/"+tt.name, func(t *testing.T) {
			in := in
			in.Identity = tt.identity
			if got := policy.SkipPin(in); got != tt.want {
				t.Errorf("SkipPin(%+v) = %+v, want %+v", in, got, tt.want)
			}
		})
	}
	if policy.NoDiversion(headerValues(req41, policy.HeaderSensitivity)) {
		t.Error("4.1: NoDiversion = true without Ms-Sensitivity")
	}

	req42 := parseRequest(t, spec42)
	if !policy.NoDiversion(headerValues(req42, policy.HeaderSensitivity)) {
		t.Error("4.2: NoDiversion = false for Ms-Sensitivity: private-no-diversion")
	}
	d := policy.SkipPin(policy.SkipPinInput{
		Method: string(req42.Method), Transport: "TLS", PeerTrustsSkipPin: true,
		Values:  headerValues(req42, policy.HeaderExchangeCommand),
		FromAOR: aor.Of(req42.From().Address), MailboxAOR: aor.Of(req42.Recipient),
	})
	if d.Present {
		t.Errorf("4.2: SkipPin = %+v for a request without Ms-Exchange-Command", d)
	}
}

// TestSipgoHeaderNames pins the sipgo v1.7.3 behaviour the pipeline relies
// on (see the package comment): GetHeaders is case-insensitive and gives one
// header per line with commas left in the value; RemoveHeader matches the
// name exactly and removes one header per call.
func TestSipgoHeaderNames(t *testing.T) {
	raw := strings.Replace(spec41, "Ms-Exchange-Command: skip-pin\r\n",
		"Ms-Exchange-Command: skip-pin\r\n"+
			"ms-exchange-command: skip-pin, skip-pin\r\n"+
			"MS-EXCHANGE-COMMAND:  SKIP-PIN \r\n"+
			"ms-sensitivity: foo, Private-No-Diversion\r\n", 1)

	req := parseRequest(t, raw)
	got := headerValues(req, policy.HeaderExchangeCommand)
	want := []string{"skip-pin", "skip-pin, skip-pin", "SKIP-PIN"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("GetHeaders(%q) values = %q, want %q", policy.HeaderExchangeCommand, got, want)
	}
	if d := policy.SkipPin(policy.SkipPinInput{Method: "INVITE", Values: got}); d.Reason != policy.ReasonBadValue {
		t.Errorf("three Ms-Exchange-Command lines: reason %q, want bad_value", d.Reason)
	}
	if !policy.NoDiversion(headerValues(req, policy.HeaderSensitivity)) {
		t.Error("lower-case ms-sensitivity with a list: NoDiversion = false")
	}

	// RemoveHeader by the canonical name leaves the other spellings.
	clone := req.Clone()
	clone.RemoveHeader(policy.HeaderExchangeCommand)
	if n := len(clone.GetHeaders(policy.HeaderExchangeCommand)); n != 2 {
		t.Fatalf("after RemoveHeader(%q): %d headers left, want 2 (sipgo matches names exactly)", policy.HeaderExchangeCommand, n)
	}

	// Removing by each header's own name removes them all.
	for _, h := range req.GetHeaders(policy.HeaderExchangeCommand) {
		req.RemoveHeader(h.Name())
	}
	if hs := req.GetHeaders(policy.HeaderExchangeCommand); len(hs) != 0 {
		t.Fatalf("after removing by each name: %d headers left", len(hs))
	}
	if req.GetHeader(policy.HeaderSensitivity) == nil {
		t.Error("removing Ms-Exchange-Command removed Ms-Sensitivity too")
	}
}
