package registrar

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// contactUpdate is one Contact of a REGISTER, validated and with its
// expiration interval decided (RFC 3261 10.3 step 6).
type contactUpdate struct {
	uri     sip.Uri          // owned copy of the Contact URI
	key     string           // contactKey(uri)
	params  sip.HeaderParams // header params without "expires"
	raw     string           // Contact value without "expires"
	expires time.Duration    // 0 removes the binding; otherwise in [MinExpires, MaxExpires]
	q       float64
}

// rejection is a REGISTER that must fail with a final response; nothing is
// changed when one is returned.
type rejection struct {
	code   int
	reason string
	// header, when set, is added to the response (Min-Expires, Retry-After).
	header sip.Header
}

func badRequest(format string, args ...any) *rejection {
	return &rejection{code: sip.StatusBadRequest, reason: "Bad Request: " + fmt.Sprintf(format, args...)}
}

// registerContacts is the parsed Contact set of a REGISTER.
type registerContacts struct {
	// wildcard is "Contact: *" with "Expires: 0": remove every binding.
	wildcard bool
	updates  []contactUpdate
}

// parseContacts validates every Contact of req and decides its expiry:
// the "expires" Contact parameter, else the Expires header, else
// DefaultExpires; clamped to MaxExpires; a non-zero interval below
// MinExpires fails the whole request with 423 (RFC 3261 10.3 step 6). A
// malformed value anywhere fails it with 400 (RFC 3261 20.19 suggests
// reading it as 3600, but guessing a lifetime the UA did not ask for hides
// client bugs). A 400 takes precedence over a 423, so that a client that
// retries with the advertised Min-Expires does not then meet a 400.
//
// It returns nil contacts for a REGISTER without Contact (a query).
func (r *Registrar) parseContacts(req *sip.Request) (*registerContacts, *rejection) {
	headerExpires, hasHeaderExpires, err := expiresHeader(req)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	contacts, err := contactHeaders(req)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	if len(contacts) == 0 {
		return nil, nil
	}

	// RFC 3261 10.3 step 6: "*" is only valid alone and with Expires: 0.
	for _, c := range contacts {
		if !c.Address.Wildcard {
			continue
		}
		if len(contacts) != 1 {
			return nil, badRequest("Contact * must be the only contact")
		}
		if _, ok := headerParam(c.Params, "expires"); ok || !hasHeaderExpires || headerExpires != 0 {
			return nil, badRequest("Contact * requires Expires: 0")
		}
		return &registerContacts{wildcard: true}, nil
	}

	out := &registerContacts{updates: make([]contactUpdate, 0, len(contacts))}
	var tooBrief bool
	for _, c := range contacts {
		u, rej := r.contactUpdate(c, headerExpires, hasHeaderExpires)
		if rej != nil {
			return nil, rej
		}
		if u.expires != 0 && u.expires < r.opts.MinExpires {
			tooBrief = true
			continue
		}
		u.expires = min(u.expires, r.opts.MaxExpires)
		out.updates = append(out.updates, u)
	}
	if tooBrief {
		return nil, &rejection{
			code:   sip.StatusIntervalToBrief,
			reason: "Interval Too Brief",
			header: sip.NewHeader("Min-Expires", strconv.FormatInt(int64(r.opts.MinExpires/time.Second), 10)),
		}
	}
	return out, nil
}

// contactUpdate validates one Contact header and returns its requested
// (not yet clamped) expiration interval.
func (r *Registrar) contactUpdate(c *sip.ContactHeader, headerExpires time.Duration, hasHeaderExpires bool) (contactUpdate, *rejection) {
	uri := c.Address.Clone()
	scheme := strings.ToLower(uri.Scheme)
	if scheme != "sip" && scheme != "sips" {
		// The proxy forwards to bindings over SIP only; a tel: or mailto:
		// binding could never be reached.
		return contactUpdate{}, badRequest("unsupported Contact URI scheme %q", uri.Scheme)
	}
	if uri.Host == "" {
		return contactUpdate{}, badRequest("Contact URI without host")
	}

	expires := r.opts.DefaultExpires
	if hasHeaderExpires {
		expires = headerExpires
	}
	if v, ok := headerParam(c.Params, "expires"); ok {
		d, err := parseDeltaSeconds(v)
		if err != nil {
			return contactUpdate{}, badRequest("Contact expires: %v", err)
		}
		expires = d
	}

	q := 1.0
	if v, ok := headerParam(c.Params, "q"); ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || f < 0 || f > 1 {
			return contactUpdate{}, badRequest("Contact q must be between 0 and 1, got %q", v)
		}
		q = f
	}

	h := &sip.ContactHeader{DisplayName: c.DisplayName, Address: *uri, Params: withoutParam(c.Params, "expires")}
	return contactUpdate{
		uri:     *uri,
		key:     contactKey(*uri),
		params:  h.Params,
		raw:     h.Value(),
		expires: expires,
		q:       q,
	}, nil
}

// contactHeaders returns every Contact of req, one per address:
// sipgo's parser already splits "Contact: <a>, <b>" into two
// *sip.ContactHeader; a Contact added by code as a generic header is parsed
// here with sipgo's own header parser so that it is split the same way.
func contactHeaders(req *sip.Request) ([]*sip.ContactHeader, error) {
	hdrs := req.GetHeaders("Contact")
	out := make([]*sip.ContactHeader, 0, len(hdrs))
	for _, h := range hdrs {
		if c, ok := h.(*sip.ContactHeader); ok {
			out = append(out, c)
			continue
		}
		parsed, err := sip.HeadersParser(sip.DefaultHeadersParser()).ParseHeader(nil, []byte("Contact: "+h.Value()))
		if err != nil {
			return nil, fmt.Errorf("invalid Contact %q: %w", h.Value(), err)
		}
		for _, p := range parsed {
			c, ok := p.(*sip.ContactHeader)
			if !ok {
				return nil, fmt.Errorf("invalid Contact %q", h.Value())
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// expiresHeader returns the value of the request's Expires header, if any.
func expiresHeader(req *sip.Request) (time.Duration, bool, error) {
	h := req.GetHeader("Expires")
	if h == nil {
		return 0, false, nil
	}
	d, err := parseDeltaSeconds(h.Value())
	if err != nil {
		return 0, true, fmt.Errorf("Expires: %w", err)
	}
	return d, true, nil
}

// maxDeltaSeconds is the largest expiration interval RFC 3261 20.19 allows.
const maxDeltaSeconds = math.MaxUint32

// parseDeltaSeconds parses delta-seconds (1*DIGIT, RFC 3261 25.1). Values
// above 2**32-1 are read as 2**32-1; they are clamped to MaxExpires anyway.
func parseDeltaSeconds(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("invalid delta-seconds %q", s)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if errors.Is(err, strconv.ErrRange) {
		n = maxDeltaSeconds
	} else if err != nil {
		return 0, fmt.Errorf("invalid delta-seconds %q: %w", s, err)
	}
	return time.Duration(n) * time.Second, nil
}

// contactKey is the identity of a contact URI within one AOR, after
// RFC 3261 19.1.4, loosely: scheme, host and transport parameter compare
// case-insensitively, the user part case-sensitively, the port as written
// (an absent port differs from an explicit 5060, as 19.1.4 says). Other URI
// parameters do not take part.
func contactKey(u sip.Uri) string {
	scheme := strings.ToLower(u.Scheme)
	if scheme == "" {
		scheme = "sip"
	}
	transport, _ := headerParam(u.UriParams, "transport")
	var b strings.Builder
	b.Grow(len(scheme) + len(u.User) + len(u.Host) + len(transport) + 16)
	b.WriteString(scheme)
	b.WriteByte(':')
	b.WriteString(u.User)
	b.WriteByte('@')
	b.WriteString(strings.ToLower(u.Host))
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(u.Port))
	b.WriteString(";transport=")
	b.WriteString(strings.ToLower(transport))
	return b.String()
}

// headerParam returns a parameter by name; parameter names are
// case-insensitive (RFC 3261 7.3.1) and sipgo keeps them as written.
func headerParam(p sip.HeaderParams, name string) (string, bool) {
	for _, kv := range p {
		if strings.EqualFold(kv.K, name) {
			return kv.V, true
		}
	}
	return "", false
}

// withoutParam returns a copy of p without any parameter called name.
func withoutParam(p sip.HeaderParams, name string) sip.HeaderParams {
	var out sip.HeaderParams
	for _, kv := range p {
		if !strings.EqualFold(kv.K, name) {
			out = append(out, kv)
		}
	}
	return out
}
