package registrar

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/proxy/state"
)

const alice = "alice@contoso.com"

func epoch() time.Time { return time.Date(2026, time.January, 2, 3, 4, 5, 0, time.UTC) }

// fakeClock is the injected Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeGauge records the last value set, like a Prometheus gauge.
type fakeGauge struct {
	mu  sync.Mutex
	v   float64
	set bool
}

func (g *fakeGauge) Set(v float64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.v, g.set = v, true
}

func (g *fakeGauge) Value() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.v
}

func newTestRegistrar(t testing.TB, o Options) (*Registrar, *fakeClock, *fakeGauge) {
	t.Helper()
	clock := &fakeClock{t: epoch()}
	gauge := &fakeGauge{}
	o.Now = clock.Now
	o.Active = gauge
	r, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r, clock, gauge
}

// parseRequest parses raw SIP text (lines joined with CRLF) into a request.
func parseRequest(t testing.TB, lines ...string) *sip.Request {
	t.Helper()
	raw := strings.Join(lines, "\r\n") + "\r\n\r\n"
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("ParseMessage: %v\n%s", err, raw)
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		t.Fatalf("parsed %T, want *sip.Request", msg)
	}
	return req
}

// register builds a REGISTER for alice@contoso.com as a softphone sends
// it, with the given Call-ID, CSeq and extra header lines (Contact, Expires).
func register(t testing.TB, callID string, cseq int, headers ...string) *sip.Request {
	t.Helper()
	lines := []string{
		"REGISTER sip:contoso.com SIP/2.0",
		"Via: SIP/2.0/TCP 192.0.2.10:50612;branch=z9hG4bK-" + callID + "-" + strconv.Itoa(cseq) + ";rport",
		"Max-Forwards: 70",
		`From: "Alice" <sip:alice@contoso.com>;tag=8d2c1b0e`,
		`To: "Alice" <sip:alice@contoso.com>`,
		"Call-ID: " + callID,
		"CSeq: " + strconv.Itoa(cseq) + " REGISTER",
	}
	lines = append(lines, headers...)
	lines = append(lines, "User-Agent: Linphone/5.2.0", "Content-Length: 0")
	return parseRequest(t, lines...)
}

var (
	udpFlow = Flow{Transport: "udp", Source: "192.0.2.10:5060"}
	tcpFlow = Flow{Transport: "tcp", Source: "192.0.2.10:50612"}
)

// step is one REGISTER of a scenario and what must come back.
type step struct {
	advance time.Duration // clock moves before the request
	callID  string        // default "call-1"
	cseq    int
	headers []string
	flow    Flow // default udpFlow

	wantCode     int
	wantHeaders  map[string]string // e.g. Min-Expires
	wantContacts []string          // Contact values of a 200, in order
}

// got is a Binding with times relative to the clock, comparable with ==.
type got struct {
	Contact   string
	Raw       string
	ExpiresIn time.Duration
	Q         float64
	CallID    string
	CSeq      uint32
	Flow      Flow
	UpdatedAt time.Duration // since epoch()
}

func relative(bs []Binding, now time.Time) []got {
	out := make([]got, 0, len(bs))
	for _, b := range bs {
		out = append(out, got{
			Contact:   b.Contact.String(),
			Raw:       b.ContactRaw,
			ExpiresIn: b.Expires.Sub(now),
			Q:         b.Q,
			CallID:    b.CallID,
			CSeq:      b.CSeq,
			Flow:      b.Flow,
			UpdatedAt: b.Updated.Sub(epoch()),
		})
	}
	return out
}

func TestRegister(t *testing.T) {
	const (
		pcTCP  = "<sip:alice@192.0.2.10:50612;transport=tcp>"
		pcUDP  = "<sip:alice@192.0.2.10:5060>"
		mobile = "<sip:alice@198.51.100.7:5061;transport=tls>"
		desk   = "<sip:alice@203.0.113.5>"
	)
	tests := []struct {
		name  string
		opts  Options
		steps []step
		want  []got // Lookup(alice) after the last step
	}{
		{
			name: "single contact takes the default expiry",
			steps: []step{{cseq: 1, headers: []string{"Contact: " + pcUDP}, wantCode: 200,
				wantContacts: []string{pcUDP + ";expires=3600"}}},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 1, Flow: udpFlow}},
		},
		{
			name: "configured default expiry",
			opts: Options{DefaultExpires: 600 * time.Second},
			steps: []step{{cseq: 1, headers: []string{"Contact: " + pcUDP}, wantCode: 200,
				wantContacts: []string{pcUDP + ";expires=600"}}},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: 600 * time.Second, Q: 1, CallID: "call-1", CSeq: 1, Flow: udpFlow}},
		},
		{
			name: "several Contact headers: expires param per contact, Expires header for the rest",
			steps: []step{{cseq: 1, headers: []string{
				"Contact: " + pcTCP + ";expires=600",
				"Contact: " + mobile,
				"Expires: 1800",
			}, flow: tcpFlow, wantCode: 200, wantContacts: []string{
				// same q, same update time: ordered by contact
				pcTCP + ";expires=600",
				mobile + ";expires=1800",
			}}},
			want: []got{
				{Contact: "sip:alice@192.0.2.10:50612;transport=tcp", Raw: pcTCP, ExpiresIn: 600 * time.Second, Q: 1, CallID: "call-1", CSeq: 1, Flow: tcpFlow},
				{Contact: "sip:alice@198.51.100.7:5061;transport=tls", Raw: mobile, ExpiresIn: 1800 * time.Second, Q: 1, CallID: "call-1", CSeq: 1, Flow: tcpFlow},
			},
		},
		{
			name: "comma-separated contacts, compact form, ordered by q",
			steps: []step{{cseq: 1, headers: []string{
				"m: " + pcUDP + ";q=0.5, " + `"Alice, mobile" ` + mobile + ";q=0.9;expires=120",
			}, wantCode: 200, wantContacts: []string{
				mobile + ";q=0.9;expires=120",
				pcUDP + ";q=0.5;expires=3600",
			}}},
			want: []got{
				{Contact: "sip:alice@198.51.100.7:5061;transport=tls", Raw: `"Alice, mobile" ` + mobile + ";q=0.9", ExpiresIn: 120 * time.Second, Q: 0.9, CallID: "call-1", CSeq: 1, Flow: udpFlow},
				{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP + ";q=0.5", ExpiresIn: time.Hour, Q: 0.5, CallID: "call-1", CSeq: 1, Flow: udpFlow},
			},
		},
		{
			name: "expires param wins over Expires header, parameter name case-insensitive",
			steps: []step{{cseq: 1, headers: []string{"Contact: " + pcUDP + ";Expires=120", "Expires: 300"},
				wantCode: 200, wantContacts: []string{pcUDP + ";expires=120"}}},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: 120 * time.Second, Q: 1, CallID: "call-1", CSeq: 1, Flow: udpFlow}},
		},
		{
			name: "Expires header above the maximum is clamped",
			steps: []step{{cseq: 1, headers: []string{"Contact: " + pcUDP, "Expires: 86400"},
				wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}}},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 1, Flow: udpFlow}},
		},
		{
			name: "expires beyond 2^32-1 is clamped, not rejected",
			opts: Options{MaxExpires: 7200 * time.Second},
			steps: []step{{cseq: 1, headers: []string{"Contact: " + pcUDP + ";expires=99999999999"},
				wantCode: 200, wantContacts: []string{pcUDP + ";expires=7200"}}},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: 2 * time.Hour, Q: 1, CallID: "call-1", CSeq: 1, Flow: udpFlow}},
		},
		{
			name: "expiry below the minimum gets 423 with Min-Expires and changes nothing",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}},
				{cseq: 2, headers: []string{"Contact: " + desk, "Contact: " + pcUDP + ";expires=30"},
					wantCode: 423, wantHeaders: map[string]string{"Min-Expires": "60"}},
			},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 1, Flow: udpFlow}},
		},
		{
			name: "configured minimum is advertised",
			opts: Options{MinExpires: 300 * time.Second},
			steps: []step{{cseq: 1, headers: []string{"Contact: " + pcUDP, "Expires: 299"},
				wantCode: 423, wantHeaders: map[string]string{"Min-Expires": "300"}}},
		},
		{
			name: "a malformed value wins over a too brief one",
			steps: []step{{cseq: 1, headers: []string{"Contact: " + pcUDP + ";expires=30, " + desk + ";expires=soon"},
				wantCode: 400}},
		},
		{
			name: "Contact * with Expires 0 removes every binding",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP + ", " + desk}, wantCode: 200,
					wantContacts: []string{pcUDP + ";expires=3600", desk + ";expires=3600"}},
				{cseq: 2, headers: []string{"Contact: *", "Expires: 0"}, wantCode: 200},
				{cseq: 3, wantCode: 200}, // query: nothing left
			},
		},
		{
			name: "Contact * also removes bindings of other Call-IDs",
			steps: []step{
				{callID: "phone", cseq: 7, headers: []string{"Contact: " + pcUDP}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}},
				{callID: "admin", cseq: 1, headers: []string{"Contact: *", "Expires: 0"}, wantCode: 200},
			},
		},
		{
			name: "Contact * with a stale CSeq of the same Call-ID fails whole",
			steps: []step{
				{callID: "phone", cseq: 7, headers: []string{"Contact: " + pcUDP}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}},
				{callID: "phone", cseq: 7, headers: []string{"Contact: *", "Expires: 0"}, wantCode: 500},
			},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: time.Hour, Q: 1, CallID: "phone", CSeq: 7, Flow: udpFlow}},
		},
		{
			name: "Contact * with a non-zero Expires is 400",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}},
				{cseq: 2, headers: []string{"Contact: *", "Expires: 3600"}, wantCode: 400},
			},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 1, Flow: udpFlow}},
		},
		{
			name: "Contact * without Expires is 400",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}},
				{cseq: 2, headers: []string{"Contact: *"}, wantCode: 400},
			},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 1, Flow: udpFlow}},
		},
		{
			name: "Contact * beside another contact is 400",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}},
				{cseq: 2, headers: []string{"Contact: *", "Contact: " + desk + ";expires=0", "Expires: 0"}, wantCode: 400},
			},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 1, Flow: udpFlow}},
		},
		{
			name: "expires=0 removes one binding",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP + ", " + desk}, wantCode: 200,
					wantContacts: []string{pcUDP + ";expires=3600", desk + ";expires=3600"}},
				{advance: 10 * time.Second, cseq: 2, headers: []string{"Contact: " + pcUDP + ";expires=0"}, wantCode: 200,
					wantContacts: []string{desk + ";expires=3590"}},
			},
			want: []got{{Contact: "sip:alice@203.0.113.5", Raw: desk, ExpiresIn: 3590 * time.Second, Q: 1, CallID: "call-1", CSeq: 1, Flow: udpFlow}},
		},
		{
			name: "Expires: 0 removes every listed contact; an unknown one is no error",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}},
				{cseq: 2, headers: []string{"Contact: " + pcUDP + ", " + mobile, "Expires: 0"}, wantCode: 200},
			},
		},
		{
			name: "REGISTER without Contact queries the bindings",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP + ";q=0.7", "Contact: " + desk + ";expires=600"}, wantCode: 200,
					wantContacts: []string{desk + ";expires=600", pcUDP + ";q=0.7;expires=3600"}},
				{advance: 100 * time.Second, cseq: 2, wantCode: 200,
					wantContacts: []string{desk + ";expires=500", pcUDP + ";q=0.7;expires=3500"}},
			},
			want: []got{
				{Contact: "sip:alice@203.0.113.5", Raw: desk, ExpiresIn: 500 * time.Second, Q: 1, CallID: "call-1", CSeq: 1, Flow: udpFlow},
				{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP + ";q=0.7", ExpiresIn: 3500 * time.Second, Q: 0.7, CallID: "call-1", CSeq: 1, Flow: udpFlow},
			},
		},
		{
			name: "remaining seconds round up so a live binding never shows expires=0",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP + ";expires=60"}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=60"}},
				{advance: 59*time.Second + 500*time.Millisecond, cseq: 2, wantCode: 200, wantContacts: []string{pcUDP + ";expires=1"}},
			},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: 500 * time.Millisecond, Q: 1, CallID: "call-1", CSeq: 1, Flow: udpFlow}},
		},
		{
			name: "same q: the most recently updated first",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}},
				{advance: 10 * time.Second, cseq: 2, headers: []string{"Contact: " + desk}, wantCode: 200,
					wantContacts: []string{desk + ";expires=3600", pcUDP + ";expires=3590"}},
			},
			want: []got{
				{Contact: "sip:alice@203.0.113.5", Raw: desk, ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 2, Flow: udpFlow, UpdatedAt: 10 * time.Second},
				{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: 3590 * time.Second, Q: 1, CallID: "call-1", CSeq: 1, Flow: udpFlow},
			},
		},
		{
			name: "same Call-ID with a CSeq not higher is out of order",
			steps: []step{
				{cseq: 5, headers: []string{"Contact: " + pcUDP}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}},
				{advance: time.Minute, cseq: 5, headers: []string{"Contact: " + pcUDP + ";expires=0"}, wantCode: 500},
				{cseq: 4, headers: []string{"Contact: " + pcUDP, "Expires: 600"}, wantCode: 500},
			},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: 59 * time.Minute, Q: 1, CallID: "call-1", CSeq: 5, Flow: udpFlow}},
		},
		{
			name: "same Call-ID with a higher CSeq refreshes",
			steps: []step{
				{cseq: 5, headers: []string{"Contact: " + pcUDP}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}},
				{advance: time.Minute, cseq: 6, headers: []string{"Contact: " + pcUDP + ";q=0.2", "Expires: 900"}, wantCode: 200,
					wantContacts: []string{pcUDP + ";q=0.2;expires=900"}},
			},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP + ";q=0.2", ExpiresIn: 900 * time.Second, Q: 0.2, CallID: "call-1", CSeq: 6, Flow: udpFlow, UpdatedAt: time.Minute}},
		},
		{
			name: "a different Call-ID updates whatever its CSeq",
			steps: []step{
				{callID: "old-boot", cseq: 100, headers: []string{"Contact: " + pcUDP}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}},
				{callID: "new-boot", cseq: 1, headers: []string{"Contact: " + pcUDP, "Expires: 1200"}, wantCode: 200,
					wantContacts: []string{pcUDP + ";expires=1200"}},
			},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: 1200 * time.Second, Q: 1, CallID: "new-boot", CSeq: 1, Flow: udpFlow}},
		},
		{
			name: "a different Call-ID removes",
			steps: []step{
				{callID: "old-boot", cseq: 100, headers: []string{"Contact: " + pcUDP}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}},
				{callID: "new-boot", cseq: 1, headers: []string{"Contact: " + pcUDP + ";expires=0"}, wantCode: 200},
			},
		},
		{
			name: "an expired binding no longer takes part in the CSeq check",
			steps: []step{
				{cseq: 5, headers: []string{"Contact: " + pcUDP + ";expires=60"}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=60"}},
				{advance: 61 * time.Second, cseq: 5, headers: []string{"Contact: " + desk}, wantCode: 200, wantContacts: []string{desk + ";expires=3600"}},
			},
			want: []got{{Contact: "sip:alice@203.0.113.5", Raw: desk, ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 5, Flow: udpFlow, UpdatedAt: 61 * time.Second}},
		},
		{
			name: "a contact listed twice in one request: the last one wins",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP + ";expires=600, " + pcUDP + ";expires=0"}, wantCode: 200},
			},
		},
		{
			name: "atomic: one malformed contact changes nothing",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}},
				{cseq: 2, headers: []string{"Contact: " + desk, "Contact: " + pcUDP + ";expires=0", "Contact: " + mobile + ";q=1.5"}, wantCode: 400},
			},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 1, Flow: udpFlow}},
		},
		{
			name: "atomic: a stale contact after a tentative insert aborts the transaction",
			steps: []step{
				{cseq: 3, headers: []string{"Contact: " + pcUDP}, wantCode: 200, wantContacts: []string{pcUDP + ";expires=3600"}},
				// desk is inserted first, then pcUDP fails the CSeq check.
				{cseq: 2, headers: []string{"Contact: " + desk + ", " + pcUDP}, wantCode: 500},
			},
			want: []got{{Contact: "sip:alice@192.0.2.10:5060", Raw: pcUDP, ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 3, Flow: udpFlow}},
		},
		{
			name: "re-registration from a new flow updates the flow",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcTCP}, flow: tcpFlow, wantCode: 200, wantContacts: []string{pcTCP + ";expires=3600"}},
				{advance: 30 * time.Second, cseq: 2, headers: []string{"Contact: " + pcTCP}, flow: Flow{Transport: "TCP", Source: "192.0.2.10:50999"},
					wantCode: 200, wantContacts: []string{pcTCP + ";expires=3600"}},
			},
			want: []got{{Contact: "sip:alice@192.0.2.10:50612;transport=tcp", Raw: pcTCP, ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 2,
				Flow: Flow{Transport: "tcp", Source: "192.0.2.10:50999"}, UpdatedAt: 30 * time.Second}},
		},
		{
			name: "binding identity: host and transport case-insensitive, other URI params ignored, port significant",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: <sip:alice@PC.Contoso.COM:5060;transport=TCP>"}, wantCode: 200,
					wantContacts: []string{"<sip:alice@PC.Contoso.COM:5060;transport=TCP>;expires=3600"}},
				{cseq: 2, headers: []string{"Contact: <sip:alice@pc.contoso.com:5060;transport=tcp;ob>"}, wantCode: 200,
					wantContacts: []string{"<sip:alice@pc.contoso.com:5060;transport=tcp;ob>;expires=3600"}},
				{cseq: 3, headers: []string{"Contact: <sip:alice@pc.contoso.com;transport=tcp>"}, wantCode: 200,
					wantContacts: []string{"<sip:alice@pc.contoso.com;transport=tcp>;expires=3600", "<sip:alice@pc.contoso.com:5060;transport=tcp;ob>;expires=3600"}},
				{cseq: 4, headers: []string{"Contact: <sip:Alice@pc.contoso.com;transport=tcp>"}, wantCode: 200,
					wantContacts: []string{"<sip:Alice@pc.contoso.com;transport=tcp>;expires=3600", "<sip:alice@pc.contoso.com;transport=tcp>;expires=3600", "<sip:alice@pc.contoso.com:5060;transport=tcp;ob>;expires=3600"}},
			},
			want: []got{
				{Contact: "sip:Alice@pc.contoso.com;transport=tcp", Raw: "<sip:Alice@pc.contoso.com;transport=tcp>", ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 4, Flow: udpFlow},
				{Contact: "sip:alice@pc.contoso.com;transport=tcp", Raw: "<sip:alice@pc.contoso.com;transport=tcp>", ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 3, Flow: udpFlow},
				{Contact: "sip:alice@pc.contoso.com:5060;transport=tcp;ob", Raw: "<sip:alice@pc.contoso.com:5060;transport=tcp;ob>", ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 2, Flow: udpFlow},
			},
		},
		{
			name: "instance params are kept and echoed",
			steps: []step{{cseq: 1, headers: []string{"Contact: " + pcTCP + `;reg-id=1;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"`},
				flow: tcpFlow, wantCode: 200,
				wantContacts: []string{pcTCP + `;reg-id=1;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000a95a0e128>";expires=3600`}}},
			want: []got{{Contact: "sip:alice@192.0.2.10:50612;transport=tcp", Raw: pcTCP + `;reg-id=1;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"`,
				ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 1, Flow: tcpFlow}},
		},
		{
			name: "too many bindings: 503 with Retry-After, refresh and swap still allowed",
			opts: Options{MaxBindingsPerAOR: 2},
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP + ";expires=600", "Contact: " + desk}, wantCode: 200,
					wantContacts: []string{pcUDP + ";expires=600", desk + ";expires=3600"}},
				{advance: 100 * time.Second, cseq: 2, headers: []string{"Contact: " + mobile}, wantCode: 503,
					wantHeaders: map[string]string{"Retry-After": "500"}},
				{cseq: 3, headers: []string{"Contact: " + pcUDP + ", " + desk}, wantCode: 200,
					wantContacts: []string{pcUDP + ";expires=3600", desk + ";expires=3600"}},
				{cseq: 4, headers: []string{"Contact: " + pcUDP + ";expires=0, " + mobile}, wantCode: 200,
					wantContacts: []string{mobile + ";expires=3600", desk + ";expires=3600"}},
			},
			want: []got{
				{Contact: "sip:alice@198.51.100.7:5061;transport=tls", Raw: mobile, ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 4, Flow: udpFlow, UpdatedAt: 100 * time.Second},
				{Contact: "sip:alice@203.0.113.5", Raw: desk, ExpiresIn: time.Hour, Q: 1, CallID: "call-1", CSeq: 3, Flow: udpFlow, UpdatedAt: 100 * time.Second},
			},
		},
		{
			name: "too many contacts in one request: 503 without Retry-After",
			opts: Options{MaxBindingsPerAOR: 1},
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP + ", " + desk}, wantCode: 503, wantHeaders: map[string]string{"Retry-After": ""}},
			},
		},
		{
			name: "malformed values are 400",
			steps: []step{
				{cseq: 1, headers: []string{"Contact: " + pcUDP, "Expires: soon"}, wantCode: 400},
				{cseq: 2, headers: []string{"Contact: " + pcUDP, "Expires: -1"}, wantCode: 400},
				{cseq: 3, headers: []string{"Contact: " + pcUDP + ";expires=+60"}, wantCode: 400},
				{cseq: 4, headers: []string{"Contact: " + pcUDP + ";expires"}, wantCode: 400},
				{cseq: 5, headers: []string{"Contact: " + pcUDP + ";q=high"}, wantCode: 400},
				{cseq: 6, headers: []string{"Contact: " + pcUDP + ";q=-0.1"}, wantCode: 400},
				{cseq: 7, headers: []string{"Contact: <tel:+15551234567>"}, wantCode: 400},
				{cseq: 8, headers: []string{"Contact: <mailto:alice@contoso.com>"}, wantCode: 400},
				// Malformed Expires fails even a query.
				{cseq: 9, headers: []string{"Expires: 1h"}, wantCode: 400},
			},
		},
	}
	// Every scenario runs twice: memory only, and written through a state
	// store (the path that works the change out, writes it, then applies it).
	for _, through := range []bool{false, true} {
		for _, tc := range tests {
			name := tc.name
			if through {
				name = "through a store/" + name
			}
			t.Run(name, func(t *testing.T) {
				o := tc.opts
				storeNow := epoch // the store reads the test's clock once it exists
				if through {
					o.Store = state.NewMemory(state.Options{Now: func() time.Time { return storeNow() }})
				}
				r, clock, gauge := newTestRegistrar(t, o)
				storeNow = clock.Now
				for i, s := range tc.steps {
					clock.Advance(s.advance)
					callID := s.callID
					if callID == "" {
						callID = "call-1"
					}
					flow := s.flow
					if flow == (Flow{}) {
						flow = udpFlow
					}
					req := register(t, callID, s.cseq, s.headers...)
					res := r.Register(req, alice, flow)
					if res.StatusCode != s.wantCode {
						t.Fatalf("step %d: got %d %q, want %d", i, res.StatusCode, res.Reason, s.wantCode)
					}
					for name, want := range s.wantHeaders {
						h := res.GetHeader(name)
						switch {
						case want == "" && h != nil:
							t.Errorf("step %d: unexpected %s: %s", i, name, h.Value())
						case want != "" && h == nil:
							t.Errorf("step %d: no %s header, want %q", i, name, want)
						case want != "" && h.Value() != want:
							t.Errorf("step %d: %s: %q, want %q", i, name, h.Value(), want)
						}
					}
					var contacts []string
					for _, h := range res.GetHeaders("Contact") {
						contacts = append(contacts, h.Value())
					}
					if !slices.Equal(contacts, s.wantContacts) {
						t.Errorf("step %d: response contacts\n got %q\nwant %q", i, contacts, s.wantContacts)
					}
					date := res.GetHeader("Date")
					if s.wantCode == 200 {
						if date == nil || date.Value() != clock.Now().Format(dateLayout) {
							t.Errorf("step %d: Date %v, want %q", i, date, clock.Now().Format(dateLayout))
						}
					} else if len(contacts) != 0 || date != nil {
						t.Errorf("step %d: a %d carries Contact %q / Date %v", i, s.wantCode, contacts, date)
					}
					if g, n := gauge.Value(), r.Count(); g != float64(n) {
						t.Errorf("step %d: gauge %v, Count %d", i, g, n)
					}
				}
				if gotB := relative(r.Lookup(alice), clock.Now()); !slices.Equal(gotB, tc.want) {
					t.Errorf("Lookup\n got %+v\nwant %+v", gotB, tc.want)
				}
				if o.Store != nil {
					if n, want := len(o.Store.ListBindings(canonicalAOR(alice))), len(tc.want); n != want {
						t.Errorf("the store holds %d bindings, Lookup %d", n, want)
					}
				}
			})
		}
	}
}

func TestRegisterResponseMirrorsRequest(t *testing.T) {
	r, _, _ := newTestRegistrar(t, Options{})
	req := register(t, "a84b4c76e66710", 1826, "Contact: <sip:alice@192.0.2.10:5060>")
	res := r.Register(req, alice, udpFlow)
	checks := []struct{ name, got, want string }{
		{"status", strconv.Itoa(res.StatusCode) + " " + res.Reason, "200 OK"},
		{"Call-ID", res.CallID().Value(), "a84b4c76e66710"},
		{"CSeq", res.CSeq().Value(), "1826 REGISTER"},
		{"Via branch", res.Via().Params.GetOr("branch", ""), "z9hG4bK-a84b4c76e66710-1826"},
		{"From tag", res.From().Params.GetOr("tag", ""), "8d2c1b0e"},
		{"To has a tag", strconv.FormatBool(res.To().Params.Has("tag")), "true"},
		{"Date", res.GetHeader("Date").Value(), "Fri, 02 Jan 2026 03:04:05 GMT"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestRegisterRequestsWithoutIdentity(t *testing.T) {
	tests := []struct {
		name     string
		lines    []string
		aor      string
		wantCode int
	}{
		{
			name: "no CSeq",
			lines: []string{
				"REGISTER sip:contoso.com SIP/2.0",
				"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-nocseq",
				"From: <sip:alice@contoso.com>;tag=1",
				"To: <sip:alice@contoso.com>",
				"Call-ID: nocseq",
				"Contact: <sip:alice@192.0.2.10:5060>",
				"Content-Length: 0",
			},
			aor:      alice,
			wantCode: 400,
		},
		{
			name: "no Call-ID",
			lines: []string{
				"REGISTER sip:contoso.com SIP/2.0",
				"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-nocallid",
				"From: <sip:alice@contoso.com>;tag=1",
				"To: <sip:alice@contoso.com>",
				"CSeq: 1 REGISTER",
				"Contact: <sip:alice@192.0.2.10:5060>",
				"Content-Length: 0",
			},
			aor:      alice,
			wantCode: 400,
		},
		{
			name: "no address of record from the caller",
			lines: []string{
				"REGISTER sip:contoso.com SIP/2.0",
				"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-noaor",
				"From: <sip:alice@contoso.com>;tag=1",
				"To: <sip:alice@contoso.com>",
				"Call-ID: noaor",
				"CSeq: 1 REGISTER",
				"Contact: <sip:alice@192.0.2.10:5060>",
				"Content-Length: 0",
			},
			aor:      " ",
			wantCode: 500,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _, _ := newTestRegistrar(t, Options{})
			res := r.Register(parseRequest(t, tc.lines...), tc.aor, udpFlow)
			if res.StatusCode != tc.wantCode {
				t.Fatalf("got %d %q, want %d", res.StatusCode, res.Reason, tc.wantCode)
			}
			if n := r.Count(); n != 0 {
				t.Errorf("Count %d after a rejected REGISTER", n)
			}
		})
	}
}

// A REGISTER built in code carries its Contact as a generic header; it must
// be split and parsed like one from the wire.
func TestRegisterContactBuiltInCode(t *testing.T) {
	r, _, _ := newTestRegistrar(t, Options{})
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "contoso.com"})
	req.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-code"))
	req.AppendHeader(sip.NewHeader("From", "<sip:alice@contoso.com>;tag=1"))
	req.AppendHeader(sip.NewHeader("To", "<sip:alice@contoso.com>"))
	callID := sip.CallIDHeader("built-in-code")
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.REGISTER})
	req.AppendHeader(sip.NewHeader("Contact", "<sip:alice@192.0.2.10:5060>;q=0.4, <sip:alice@203.0.113.5>;expires=600"))

	res := r.Register(req, alice, udpFlow)
	if res.StatusCode != 200 {
		t.Fatalf("got %d %q", res.StatusCode, res.Reason)
	}
	var got []string
	for _, b := range r.Lookup(alice) {
		got = append(got, fmt.Sprintf("%s q=%v in=%v", b.Contact.String(), b.Q, b.Expires.Sub(epoch())))
	}
	want := []string{"sip:alice@203.0.113.5 q=1 in=10m0s", "sip:alice@192.0.2.10:5060 q=0.4 in=1h0m0s"}
	if !slices.Equal(got, want) {
		t.Errorf("bindings %q, want %q", got, want)
	}

	bad := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "contoso.com"})
	bad.AppendHeader(&callID)
	bad.AppendHeader(&sip.CSeqHeader{SeqNo: 2, MethodName: sip.REGISTER})
	bad.AppendHeader(sip.NewHeader("Contact", "<sip:alice@192.0.2.10:5060"))
	if res := r.Register(bad, alice, udpFlow); res.StatusCode != 400 {
		t.Errorf("unparsable Contact: got %d, want 400", res.StatusCode)
	}
}

func TestLookupNormalisesAOR(t *testing.T) {
	r, _, _ := newTestRegistrar(t, Options{})
	if res := r.Register(register(t, "c", 1, "Contact: <sip:alice@192.0.2.10:5060>"), "alice@Contoso.COM", udpFlow); res.StatusCode != 200 {
		t.Fatalf("Register: %d", res.StatusCode)
	}
	tests := []struct {
		aor  string
		want int
	}{
		{"alice@contoso.com", 1},
		{"alice@CONTOSO.com", 1},
		{"sip:alice@contoso.com", 1},
		{"sips:alice@Contoso.com:5061;transport=tls", 1},
		{"Alice@contoso.com", 0}, // the user part is case-sensitive
		{"bob@contoso.com", 0},
		{"", 0},
		{"sip:", 0},
	}
	for _, tc := range tests {
		if got := len(r.Lookup(tc.aor)); got != tc.want {
			t.Errorf("Lookup(%q): %d bindings, want %d", tc.aor, got, tc.want)
		}
	}
	if b := r.Lookup(alice); len(b) == 1 && b[0].AOR != alice {
		t.Errorf("stored AOR %q, want %q", b[0].AOR, alice)
	}
}

// Callers get copies: editing a returned URI must not reach the store.
func TestLookupReturnsCopies(t *testing.T) {
	r, _, _ := newTestRegistrar(t, Options{})
	r.Register(register(t, "c", 1, "Contact: <sip:alice@192.0.2.10:5060;transport=udp;ob>"), alice, udpFlow)
	first := r.Lookup(alice)
	if len(first) != 1 {
		t.Fatalf("Lookup: %d bindings", len(first))
	}
	first[0].Contact.UriParams.Add("transport", "tcp")
	first[0].Contact.Host = "evil.example"
	if got := r.Lookup(alice)[0].Contact.String(); got != "sip:alice@192.0.2.10:5060;transport=udp;ob" {
		t.Errorf("stored contact changed to %q", got)
	}
}

func TestExpiry(t *testing.T) {
	r, clock, gauge := newTestRegistrar(t, Options{})
	setup := []struct {
		aor     string
		contact string
	}{
		{alice, "<sip:alice@192.0.2.10:5060>;expires=60"},
		{alice, "<sip:alice@203.0.113.5>;expires=3600"},
		{"bob@contoso.com", "<sip:bob@198.51.100.9>;expires=120"},
	}
	for i, s := range setup {
		if res := r.Register(register(t, "setup", i+1, "Contact: "+s.contact), s.aor, udpFlow); res.StatusCode != 200 {
			t.Fatalf("setup %d: %d %s", i, res.StatusCode, res.Reason)
		}
	}
	steps := []struct {
		advance     time.Duration
		wantAlice   int
		wantBob     int
		wantCount   int
		gaugeBefore float64 // the gauge lags until the sweep
		wantSwept   int
		gaugeAfter  float64
	}{
		{advance: 0, wantAlice: 2, wantBob: 1, wantCount: 3, gaugeBefore: 3, wantSwept: 0, gaugeAfter: 3},
		{advance: 59 * time.Second, wantAlice: 2, wantBob: 1, wantCount: 3, gaugeBefore: 3, wantSwept: 0, gaugeAfter: 3},
		{advance: time.Second, wantAlice: 1, wantBob: 1, wantCount: 2, gaugeBefore: 3, wantSwept: 1, gaugeAfter: 2},
		{advance: 0, wantAlice: 1, wantBob: 1, wantCount: 2, gaugeBefore: 2, wantSwept: 0, gaugeAfter: 2},
		{advance: time.Hour, wantAlice: 0, wantBob: 0, wantCount: 0, gaugeBefore: 2, wantSwept: 2, gaugeAfter: 0},
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		if got := len(r.Lookup(alice)); got != s.wantAlice {
			t.Errorf("step %d: alice has %d bindings, want %d", i, got, s.wantAlice)
		}
		if got := len(r.Lookup("bob@contoso.com")); got != s.wantBob {
			t.Errorf("step %d: bob has %d bindings, want %d", i, got, s.wantBob)
		}
		if got := r.Count(); got != s.wantCount {
			t.Errorf("step %d: Count %d, want %d", i, got, s.wantCount)
		}
		if got := gauge.Value(); got != s.gaugeBefore {
			t.Errorf("step %d: gauge before sweep %v, want %v", i, got, s.gaugeBefore)
		}
		if got := r.Sweep(); got != s.wantSwept {
			t.Errorf("step %d: Sweep removed %d, want %d", i, got, s.wantSwept)
		}
		if got := gauge.Value(); got != s.gaugeAfter {
			t.Errorf("step %d: gauge after sweep %v, want %v", i, got, s.gaugeAfter)
		}
	}
}

// A REGISTER purges its AOR's expired bindings, so the gauge drops without
// waiting for the sweep.
func TestRegisterPurgesExpiredBindingsOfItsAOR(t *testing.T) {
	r, clock, gauge := newTestRegistrar(t, Options{})
	r.Register(register(t, "c", 1, "Contact: <sip:alice@192.0.2.10:5060>;expires=60"), alice, udpFlow)
	clock.Advance(2 * time.Minute)
	if got := gauge.Value(); got != 1 {
		t.Fatalf("gauge %v before purge, want 1", got)
	}
	if res := r.Register(register(t, "c", 2), alice, udpFlow); res.StatusCode != 200 || len(res.GetHeaders("Contact")) != 0 {
		t.Fatalf("query: %d with %d contacts", res.StatusCode, len(res.GetHeaders("Contact")))
	}
	r.Register(register(t, "c", 3, "Contact: <sip:alice@203.0.113.5>"), alice, udpFlow)
	if got := gauge.Value(); got != 1 {
		t.Errorf("gauge %v after the new binding replaced the expired one, want 1", got)
	}
	if got := r.Sweep(); got != 0 {
		t.Errorf("Sweep removed %d, want 0 (already purged)", got)
	}
}

func TestRun(t *testing.T) {
	r, clock, gauge := newTestRegistrar(t, Options{})
	r.Register(register(t, "c", 1, "Contact: <sip:alice@192.0.2.10:5060>;expires=60"), alice, udpFlow)
	clock.Advance(time.Minute)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx, time.Millisecond)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for gauge.Value() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not sweep the expired binding")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
		check   func(*testing.T, Options)
	}{
		{
			name: "defaults",
			check: func(t *testing.T, o Options) {
				if o.MinExpires != time.Minute || o.MaxExpires != time.Hour || o.DefaultExpires != time.Hour || o.MaxBindingsPerAOR != 10 || o.Now == nil {
					t.Errorf("defaults: %+v", o)
				}
			},
		},
		{name: "negative minimum", opts: Options{MinExpires: -time.Second}, wantErr: "MinExpires"},
		{name: "fractional seconds", opts: Options{MaxExpires: 1500 * time.Millisecond}, wantErr: "whole number of seconds"},
		{name: "minimum above maximum", opts: Options{MinExpires: 2 * time.Hour}, wantErr: "exceeds MaxExpires"},
		{name: "default above maximum", opts: Options{MaxExpires: 600 * time.Second}, wantErr: "DefaultExpires"},
		{name: "default below minimum", opts: Options{DefaultExpires: 30 * time.Second}, wantErr: "DefaultExpires"},
		{name: "beyond 2^32-1 seconds", opts: Options{MaxExpires: 1 << 32 * time.Second}, wantErr: "2^32-1"},
		{name: "negative binding limit", opts: Options{MaxBindingsPerAOR: -1}, wantErr: "MaxBindingsPerAOR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New: error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			tc.check(t, r.opts)
		})
	}
}

func TestNewSetsGaugeToZero(t *testing.T) {
	g := &fakeGauge{v: 42}
	if _, err := New(Options{Active: g}); err != nil {
		t.Fatal(err)
	}
	if !g.set || g.Value() != 0 {
		t.Errorf("gauge %v (set=%v), want 0", g.Value(), g.set)
	}
}

// Parallel REGISTERs for shared and separate AORs with Lookups running;
// go test -race checks the memory model, the totals check atomicity.
func TestConcurrentRegisterLookup(t *testing.T) {
	r, _, gauge := newTestRegistrar(t, Options{MaxBindingsPerAOR: 1000})
	const workers, perWorker = 8, 25
	type job struct {
		req *sip.Request
		aor string
	}
	jobs := make([][]job, workers)
	for w := range workers {
		own := fmt.Sprintf("user%d@contoso.com", w)
		for i := range perWorker {
			contact := fmt.Sprintf("Contact: <sip:u%d@192.0.2.%d:%d>", w, w+1, 5000+i)
			for _, aor := range []string{alice, own} {
				jobs[w] = append(jobs[w], job{register(t, fmt.Sprintf("w%d-%s", w, aor), i+1, contact), aor})
			}
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for _, j := range jobs[w] {
				if res := r.Register(j.req, j.aor, udpFlow); res.StatusCode != 200 {
					t.Errorf("worker %d: %d %s", w, res.StatusCode, res.Reason)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range perWorker * 4 {
				bs := r.Lookup(alice)
				for i := 1; i < len(bs); i++ {
					if bs[i-1].Q < bs[i].Q {
						t.Errorf("Lookup out of order")
						return
					}
				}
				_ = r.Count()
			}
		}()
	}
	wg.Wait()
	if got, want := len(r.Lookup(alice)), workers*perWorker; got != want {
		t.Errorf("alice has %d bindings, want %d", got, want)
	}
	for w := range workers {
		if got := len(r.Lookup(fmt.Sprintf("user%d@contoso.com", w))); got != perWorker {
			t.Errorf("user%d has %d bindings, want %d", w, got, perWorker)
		}
	}
	if got, want := r.Count(), 2*workers*perWorker; got != want || gauge.Value() != float64(want) {
		t.Errorf("Count %d, gauge %v, want %d", got, gauge.Value(), want)
	}
}

func BenchmarkLookup(b *testing.B) {
	r, _, _ := newTestRegistrar(b, Options{})
	for u := range 1000 {
		aor := fmt.Sprintf("user%d@contoso.com", u)
		r.Register(register(b, "bench", 1, fmt.Sprintf("Contact: <sip:u%d@192.0.2.1:5060>", u)), aor, udpFlow)
	}
	r.Register(register(b, "bench", 1,
		"Contact: <sip:alice@192.0.2.10:5060;transport=udp>;q=0.5",
		"Contact: <sip:alice@192.0.2.10:50612;transport=tcp;ob>",
		"Contact: <sip:alice@198.51.100.7:5061;transport=tls>;q=0.9",
	), alice, udpFlow)
	b.ReportAllocs()
	for b.Loop() {
		if len(r.Lookup(alice)) != 3 {
			b.Fatal("lost bindings")
		}
	}
}
