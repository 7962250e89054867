package proxy

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// dialogs remembers, by Call-ID, the calls set up through us with our
// Record-Route, from the first provisional response with a To tag until
// their BYE has passed. It serves two purposes:
//
//   - A drain waits for the confirmed ones: their BYE needs the proxy up.
//   - In-dialog requests from senders we cannot identify are relayed only
//     between the parties of such a dialog: a request coming from one side
//     may go only to a remote target (Contact) or a Record-Route hop of the
//     other side. A Record-Route token proves that a dialog passed through
//     us, but a caller holds the tokens of their own calls; without this a
//     caller of any mailbox could replay them with a Request-URI of their
//     choosing and make us relay anywhere.
//
// A side is recognised by the IP address its messages come from: the
// caller's requests, the callee's responses. Over UDP a source address can
// be forged (the usual limit of UDP).
//
// Unconfirmed (early) dialogs end when their INVITE fails; a confirmed one
// older than maxAge is forgotten (a BYE that never came must not hold a
// drain or memory forever).
type dialogs struct {
	mu     sync.Mutex
	m      map[string]*dialog
	maxAge time.Duration
	gauge  interface{ Set(float64) }
	nconf  int // confirmed entries, for the gauge and the drain
}

type dialog struct {
	confirmed []string // callee To tags of the 2xx relayed (forks may answer twice); none while early
	since     time.Time
	caller    party // sent the INVITE
	callee    party // answered it (every fork that answered)
}

// party is one side of a dialog: where its messages come from, and where
// requests towards it may go.
type party struct {
	addrs []netip.Addr
	hops  []hop // its Contacts (remote targets) and Record-Route entries
}

// headed is a request or a response.
type headed interface{ GetHeader(name string) sip.Header }

// Bounds on what one dialog remembers: forks, target refreshes.
const (
	maxPartyAddrs = 8
	maxPartyHops  = 16
	earlyMaxAge   = 10 * time.Minute // beyond any INVITE transaction (Timer C is at most 1 h, but a call that long is confirmed)
)

func newDialogs(maxAge time.Duration, gauge interface{ Set(float64) }) *dialogs {
	return &dialogs{m: make(map[string]*dialog), maxAge: maxAge, gauge: gauge}
}

// answered records a provisional (early) or 2xx response with a To tag to
// a record-routed INVITE: the caller sent inv from callerAddr, the callee
// answered res. ours reports whether a Record-Route URI names this proxy:
// the entries above ours in the response are the callee's side. With inv
// nil (a 2xx of a fork that answered after its call ended) only a dialog
// already known learns of it.
func (d *dialogs) answered(callID string, callerAddr netip.Addr, inv *sip.Request, res *sip.Response, ours func(sip.Uri) bool) {
	if callID == "" || res.To() == nil {
		return
	}
	tag, _ := res.To().Params.Get("tag")
	if tag == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.m[callID]
	if e == nil {
		if inv == nil {
			return
		}
		e = &dialog{since: time.Now()}
		d.m[callID] = e
		e.caller.learnAddr(callerAddr)
		e.caller.learnContact(inv)
		for _, h := range inv.GetHeaders("Record-Route") {
			if rr, ok := h.(*sip.RecordRouteHeader); ok {
				e.caller.learnHop(rr.Address)
			}
		}
	}
	if addr, ok := addrOf(res.Source()); ok {
		e.callee.learnAddr(addr)
	}
	e.callee.learnContact(res)
	for _, h := range res.GetHeaders("Record-Route") {
		rr, ok := h.(*sip.RecordRouteHeader)
		if !ok {
			continue
		}
		if ours(rr.Address) {
			break
		}
		e.callee.learnHop(rr.Address)
	}
	if res.IsSuccess() && !slices.Contains(e.confirmed, tag) && len(e.confirmed) < maxPartyAddrs {
		if len(e.confirmed) == 0 {
			d.nconf++
			e.since = time.Now()
		}
		e.confirmed = append(e.confirmed, tag)
		d.gauge.Set(float64(d.nconf))
	}
}

// failed ends an early dialog whose INVITE got no 2xx.
func (d *dialogs) failed(callID string) {
	d.mu.Lock()
	if e, ok := d.m[callID]; ok && len(e.confirmed) == 0 {
		delete(d.m, callID)
	}
	d.mu.Unlock()
}

// refreshed records a target refresh that passed (a re-INVITE or UPDATE,
// or its 2xx): the Contact of m becomes a target of the side it came from.
func (d *dialogs) refreshed(callID string, from netip.Addr, m headed) {
	if m.GetHeader("Contact") == nil {
		return
	}
	d.mu.Lock()
	if e, ok := d.m[callID]; ok {
		if e.caller.has(from) {
			e.caller.learnContact(m)
		}
		if e.callee.has(from) {
			e.callee.learnContact(m)
		}
	}
	d.mu.Unlock()
}

// closed ends the dialog a BYE ended (when its final response passed):
// the callee's tag is the BYE's To tag or its From tag, by direction. The
// call is over when no answered fork is left.
func (d *dialogs) closed(callID string, bye *sip.Request) {
	var tags [2]string
	if bye.To() != nil {
		tags[0], _ = bye.To().Params.Get("tag")
	}
	if bye.From() != nil {
		tags[1], _ = bye.From().Params.Get("tag")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.m[callID]
	if !ok || len(e.confirmed) == 0 {
		return
	}
	e.confirmed = slices.DeleteFunc(e.confirmed, func(t string) bool { return t == tags[0] || t == tags[1] })
	if len(e.confirmed) == 0 {
		delete(d.m, callID)
		d.nconf--
		d.gauge.Set(float64(d.nconf))
	}
}

// allows reports whether an in-dialog request of callID, arriving from
// addr, may go to next (its next hop: the topmost Route left after ours,
// or the Request-URI): next must belong to the other side of the dialog.
func (d *dialogs) allows(callID string, from netip.Addr, next sip.Uri) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.m[callID]
	if !ok {
		return false
	}
	// On one host (or behind one NAT) both sides share an address; then
	// either side's hops will do.
	return (e.caller.has(from) && e.callee.reaches(next)) || (e.callee.has(from) && e.caller.reaches(next))
}

// active is the number of confirmed calls, after forgetting stale entries.
func (d *dialogs) active() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	for id, e := range d.m {
		age := now.Sub(e.since)
		if confirmed := len(e.confirmed) > 0; (confirmed && age > d.maxAge) || (!confirmed && age > earlyMaxAge) {
			delete(d.m, id)
			if confirmed {
				d.nconf--
			}
		}
	}
	d.gauge.Set(float64(d.nconf))
	return d.nconf
}

// sweep forgets stale calls every interval until ctx ends, so a call whose
// BYE took another path does not stay in memory (or in the gauge) until a
// drain happens to look.
func (d *dialogs) sweep(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.active()
		}
	}
}

func (p *party) has(a netip.Addr) bool {
	for _, x := range p.addrs {
		if x == a {
			return true
		}
	}
	return false
}

func (p *party) learnAddr(a netip.Addr) {
	if a.IsValid() && !p.has(a) && len(p.addrs) < maxPartyAddrs {
		p.addrs = append(p.addrs, a)
	}
}

func (p *party) learnContact(m headed) {
	if h, ok := m.GetHeader("Contact").(*sip.ContactHeader); ok {
		p.learnHop(h.Address)
	}
}

func (p *party) learnHop(u sip.Uri) {
	if u.Host == "" || p.reaches(u) || len(p.hops) >= maxPartyHops {
		return
	}
	p.hops = append(p.hops, hopOf(u))
}

func (p *party) reaches(u sip.Uri) bool {
	h := hopOf(u)
	for _, x := range p.hops {
		if x == h {
			return true
		}
	}
	return false
}

// hop is what identifies a next hop: user, host and port (the default
// port of its transport when absent). Scheme and parameters do not count:
// a sips Contact is reached through a sip Route with transport=tls alike,
// and keeping only these fields does not hold the sender's bytes for the
// life of the call.
type hop struct {
	user, host string
	port       int
}

func hopOf(u sip.Uri) hop {
	port := u.Port
	if port == 0 {
		port = 5060
		if strings.EqualFold(u.Scheme, "sips") || strings.EqualFold(transportParam(u), "tls") {
			port = 5061
		}
	}
	return hop{user: u.User, host: strings.ToLower(strings.Trim(u.Host, "[]")), port: port}
}

// addrOf is the IP address of a message source "ip:port".
func addrOf(src string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(src)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}
