package resolve

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// errNoSuchName is a negative answer: NXDOMAIN, or the name exists without
// records of the type asked.
var errNoSuchName = errors.New("no such name")

// answer is what one question (name and type) got, as the cache keeps it.
type answer struct {
	srv      []srvRecord  // SRV questions
	addrs    []netip.Addr // A and AAAA questions
	negative bool         // NXDOMAIN or no data
	rcode    string       // "NXDOMAIN" or "NOERROR" for a negative answer, for errors
	ttl      time.Duration
}

// exchange asks the servers in turn until one answers, over UDP, and over
// TCP again when the UDP answer was truncated. A server that fails
// (timeout, SERVFAIL, REFUSED) makes it try the next one.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (answer, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	// 1232 bytes: the EDNS buffer size DNS Flag Day 2020 settled on, so
	// that answers come unfragmented or truncated (and then over TCP).
	q.SetEdns0(1232, false)
	var errs []error
	for _, server := range r.servers {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		m, err := r.ask(ctx, q, server)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", server, err))
			continue
		}
		switch m.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			return parse(m, qtype), nil
		default:
			errs = append(errs, fmt.Errorf("%s answered %s", server, dns.RcodeToString[m.Rcode]))
		}
	}
	return answer{}, errors.Join(errs...)
}

// ask sends one question to one server.
func (r *Resolver) ask(ctx context.Context, q *dns.Msg, server string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	m, _, err := r.udp.ExchangeContext(ctx, q, server)
	if err == nil && m.Truncated {
		m, _, err = r.tcp.ExchangeContext(ctx, q, server)
	}
	return m, err
}

// parse reads the records of type qtype in an answer (a recursive server
// puts any CNAME chain before them) and how long they may be kept: the
// smallest TTL of the records used, or for a negative answer the SOA's
// negative TTL (RFC 2308 5), bounded by maxNegativeTTL.
func parse(m *dns.Msg, qtype uint16) answer {
	var a answer
	ttl := uint32(maxTTL / time.Second)
	for _, rr := range m.Answer {
		h := rr.Header()
		switch rec := rr.(type) {
		case *dns.CNAME:
		case *dns.SRV:
			if qtype != dns.TypeSRV {
				continue
			}
			a.srv = append(a.srv, srvRecord{Priority: rec.Priority, Weight: rec.Weight, Port: rec.Port,
				Target: strings.TrimSuffix(strings.ToLower(rec.Target), ".")})
		case *dns.A:
			if qtype != dns.TypeA {
				continue
			}
			if ip, ok := netip.AddrFromSlice(rec.A.To4()); ok {
				a.addrs = append(a.addrs, ip)
			}
		case *dns.AAAA:
			if qtype != dns.TypeAAAA {
				continue
			}
			if ip, ok := netip.AddrFromSlice(rec.AAAA); ok {
				a.addrs = append(a.addrs, ip)
			}
		default:
			continue
		}
		ttl = min(ttl, h.Ttl)
	}
	if len(a.srv) > 0 || len(a.addrs) > 0 {
		a.ttl = time.Duration(ttl) * time.Second
		return a
	}
	a.negative = true
	a.rcode = dns.RcodeToString[m.Rcode]
	a.ttl = defaultNegativeTTL
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			a.ttl = time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
		}
	}
	a.ttl = min(a.ttl, maxNegativeTTL)
	return a
}
