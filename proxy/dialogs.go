package proxy

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/proxy/router"
	"github.com/sipproxy/sipproxy/proxy/state"
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
// idle for maxAge (no in-dialog request relayed) is forgotten: a BYE that
// never came must not hold a drain or memory forever.
type dialogs struct {
	mu     sync.Mutex
	m      map[string]*dialog
	maxAge time.Duration
	gauge  interface{ Set(float64) }
	nconf  int // confirmed entries, for the gauge and the drain

	// The state store, when attached (dialogstore.go): confirmed dialogs
	// are written there and loaded back at start.
	store       state.Store
	instance    string
	writer      *dialogWriter
	unsubscribe func()
}

type dialog struct {
	confirmed []string  // callee To tags of the 2xx relayed (forks may answer twice); none while early
	pending   int       // initial INVITE transactions of this Call-ID still running (forks upstream, spirals)
	since     time.Time // last sign of life: a provisional, the answer, an in-dialog request relayed
	callerTag string    // From tag of the initial INVITE
	caller    party     // sent the INVITE
	callee    party     // answered it (every fork that sent a 1xx or 2xx with a To tag)
}

// party is one side of a dialog: where its messages come from, its tags,
// and where requests towards it may go.
type party struct {
	addrs []netip.Addr
	tags  []string // callee side: the To tags of its 1xx/2xx
	hops  []hop    // its Contacts (remote targets) and Record-Route entries
}

// headed is a request or a response.
type headed interface{ GetHeader(name string) sip.Header }

// Bounds on what one dialog remembers: forks, target refreshes.
const (
	maxPartyAddrs = 8
	maxPartyHops  = 16
	earlyMaxAge   = 10 * time.Minute // without any provisional response for that long (Timer C restarts on each)
)

func newDialogs(maxAge time.Duration, gauge interface{ Set(float64) }) *dialogs {
	return &dialogs{m: make(map[string]*dialog), maxAge: maxAge, gauge: gauge}
}

// begin records a record-routed initial INVITE about to be relayed: the
// caller sent inv from callerAddr. Every begin is matched by one ended.
// Two transactions may share a Call-ID (a spiral, an upstream fork to two
// of our users): they share the entry, and each adds its caller.
func (d *dialogs) begin(callID string, callerAddr netip.Addr, inv *sip.Request) {
	if callID == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.m[callID]
	if e == nil {
		e = &dialog{since: time.Now()}
		if f := inv.From(); f != nil {
			e.callerTag, _ = f.Params.Get("tag")
		}
		d.m[callID] = e
	}
	e.pending++
	e.caller.learnAddr(callerAddr)
	e.caller.learnContact(inv)
	for _, h := range inv.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			e.caller.learnHop(rr.Address)
		}
	}
}

// answered records a provisional (early) or 2xx response with a To tag to
// an INVITE recorded by begin. ours reports whether a Record-Route URI
// names this proxy: the entries above ours in the response are the
// callee's side.
func (d *dialogs) answered(callID string, res *sip.Response, ours func(sip.Uri) bool) {
	if res.To() == nil {
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
		return
	}
	if addr, ok := addrOf(res.Source()); ok {
		e.callee.learnAddr(addr)
	}
	e.callee.learnTag(tag)
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
	e.since = time.Now()
	if res.IsSuccess() && !slices.Contains(e.confirmed, tag) && len(e.confirmed) < maxPartyAddrs {
		if len(e.confirmed) == 0 {
			d.nconf++
		}
		e.confirmed = append(e.confirmed, tag)
		d.gauge.Set(float64(d.nconf))
		d.save(callID, e)
	}
}

// ended: an INVITE transaction recorded by begin is over. A dialog that
// was never confirmed ends with the last of them.
func (d *dialogs) ended(callID string) {
	d.mu.Lock()
	if e, ok := d.m[callID]; ok {
		e.pending--
		if e.pending <= 0 && len(e.confirmed) == 0 {
			delete(d.m, callID)
		}
	}
	d.mu.Unlock()
}

// refreshed records a target refresh that passed (a re-INVITE or UPDATE,
// or its 2xx): the Contact of m, sent from addr, becomes a target of its
// sender's side. A sender we cannot identify is placed by its address
// only (it could write any tag). An identified one (a peer, a certificate,
// or the next hop answering our own request) is placed by tag, and its
// new address is learned too: a multi-homed server may refresh from
// another address than the one it answered from.
func (d *dialogs) refreshed(callID string, addr netip.Addr, m headed, identified bool, tag string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.m[callID]
	if !ok {
		return
	}
	e.since = time.Now()
	if identified && tag != "" {
		var p *party
		switch {
		case tag == e.callerTag:
			p = &e.caller
		case slices.Contains(e.callee.tags, tag):
			p = &e.callee
		default:
			return
		}
		p.learnAddr(addr)
		p.learnContact(m)
		d.save(callID, e)
		return
	}
	if e.caller.has(addr) {
		e.caller.learnContact(m)
	}
	if e.callee.has(addr) {
		e.callee.learnContact(m)
	}
	d.save(callID, e)
}

// touch notes that a dialog is in use (an identified sender's in-dialog
// request, which needs no allows).
func (d *dialogs) touch(callID string) {
	d.mu.Lock()
	if e, ok := d.m[callID]; ok {
		e.since = time.Now()
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
	if !ok {
		d.closedStored(callID, tags) // another instance's call, or none
		return
	}
	if len(e.confirmed) == 0 {
		return
	}
	e.confirmed = slices.DeleteFunc(e.confirmed, func(t string) bool { return t == tags[0] || t == tags[1] })
	if len(e.confirmed) == 0 {
		if e.pending <= 0 {
			delete(d.m, callID)
		}
		d.nconf--
		d.gauge.Set(float64(d.nconf))
		d.forget(callID)
	} else {
		d.save(callID, e)
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
		// A call this table does not hold: set up before a restart, or
		// through another instance of the pool.
		if e, ok = d.stored(callID); !ok {
			return false
		}
	}
	// On one host (or behind one NAT) both sides share an address; then
	// either side's hops will do.
	ok = (e.caller.has(from) && e.callee.reaches(next)) || (e.callee.has(from) && e.caller.reaches(next))
	if ok {
		e.since = time.Now() // a call in use is not stale, however long it lasts
	}
	return ok
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
				d.forget(id)
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

func (p *party) learnTag(tag string) {
	if !slices.Contains(p.tags, tag) && len(p.tags) < maxPartyAddrs {
		p.tags = append(p.tags, tag)
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
		if strings.EqualFold(u.Scheme, "sips") || strings.EqualFold(router.TransportParam(u), "tls") {
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
