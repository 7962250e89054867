// Package registrar is the proxy's SIP registrar (RFC 3261 section 10.3):
// it applies REGISTER requests to the bindings of an address of record and
// answers who is reachable where.
//
// Bindings live in a go-memdb state store (schema.go). Every REGISTER is
// applied in one write transaction, committed whole or not at all; readers
// (Lookup, Count) never block writers. The caller (the proxy) has already
// authenticated the request and checked that the AOR's domain is ours
// (RFC 3261 10.3 steps 1-5); this package does steps 6-8.
//
// Responses:
//
//	200 OK                           every current binding as Contact: <uri>;...;expires=N, plus Date
//	400 Bad Request                  malformed Expires, expires or q; Contact * misused; non-SIP contact; no Call-ID/CSeq
//	423 Interval Too Brief           a non-zero expiry below MinExpires; carries Min-Expires
//	500 Out of Order                 same Call-ID as an existing binding and a CSeq not higher than the binding's (10.3 step 7)
//	500 Server Internal Error        the caller passed no address of record
//	503 Too Many Registered Contacts the request would leave more than MaxBindingsPerAOR bindings;
//	                                 carries Retry-After, the seconds until the AOR's first binding expires
//	503 Service Unavailable          the state store (Options.Store) did not take the change; Retry-After: 5
//
// Nothing is changed by a request answered with anything but 200.
//
// With a state store (store.go), every change is written through to it
// before the 200 is sent, the store's bindings are loaded by New, and the
// changes other instances make reach the memdb through the store's feed:
// Lookup never leaves the process.
package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/hashicorp/go-memdb"

	"github.com/sipproxy/sipproxy/internal/aor"
	"github.com/sipproxy/sipproxy/proxy/state"
)

// Flow is where a REGISTER came from, so that requests for the binding can
// be delivered over the same connection (the idea of RFC 5626).
type Flow struct {
	Transport string // "udp", "tcp" or "tls" (lower case)
	Source    string // remote "ip:port" of the connection or packet
}

// Binding is one contact address registered for an address of record.
type Binding struct {
	AOR     string  // normalised "user@domain" (aor.Of)
	Contact sip.Uri // contact URI as registered, URI parameters kept
	// ContactRaw is the Contact header value of this contact as sipgo
	// re-serialises it (display name, URI and header parameters such as q
	// or +sip.instance) without the "expires" parameter, which the
	// registrar decides.
	ContactRaw string
	Expires    time.Time
	Q          float64 // 0..1; 1.0 when the Contact has no q parameter
	CallID     string
	CSeq       uint32
	Flow       Flow
	Updated    time.Time // when the binding was last written
	// Instance is the proxy instance the REGISTER came through (it holds
	// the flow), InstanceAddr its advertised address on the flow's
	// transport; empty without a state store.
	Instance     string
	InstanceAddr string
}

// Options configure a Registrar. Zero values take the defaults.
type Options struct {
	Now            func() time.Time // nil = time.Now
	MinExpires     time.Duration    // default 60s: a non-zero expiry below it gets 423 with Min-Expires
	MaxExpires     time.Duration    // default 3600s: longer expiries are shortened to it
	DefaultExpires time.Duration    // default 3600s: when neither the expires param nor Expires header is present
	// MaxBindingsPerAOR (default 10) limits the bindings of one AOR. A
	// REGISTER that would leave more gets 503 Too Many Registered Contacts
	// (as Kamailio answers) with Retry-After. The limit applies to the
	// outcome, so refreshing bindings, or removing one and adding another
	// in the same request, is never refused.
	MaxBindingsPerAOR int
	// Active, if set, is kept at the number of stored bindings
	// (sipproxy_registrations_active). It counts a binding until it is
	// removed: expired bindings drop out at the next Sweep, or when their
	// AOR next registers.
	Active interface{ Set(float64) }

	// Store, if set, is where bindings outlive the process and are shared
	// with other instances (see store.go). nil: memory only.
	Store state.Store
	// Instance names this proxy instance in the bindings it writes, and
	// Advertise gives its advertised "host:port" on a transport; both are
	// stored with each binding for the instances that share the store.
	Instance  string
	Advertise func(transport string) string
	Logger    *slog.Logger // nil: slog.Default()
}

// Defaults for Options.
const (
	DefaultMinExpires        = 60 * time.Second
	DefaultMaxExpires        = 3600 * time.Second
	DefaultDefaultExpires    = 3600 * time.Second
	DefaultMaxBindingsPerAOR = 10

	// DefaultSweepInterval is used by Run when given a non-positive interval.
	DefaultSweepInterval = 30 * time.Second
)

// dateLayout is the SIP-date of RFC 3261 20.17 (the RFC 1123 form, in GMT).
const dateLayout = "Mon, 02 Jan 2006 15:04:05 GMT"

// Registrar holds the bindings of all addresses of record. It is safe for
// concurrent use.
type Registrar struct {
	opts Options
	db   *memdb.MemDB

	// rows is the number of stored bindings. memdb admits one write
	// transaction at a time, so rows is only read and written between
	// db.Txn(true) and Commit/Abort, which also orders the gauge updates.
	rows int

	unsubscribe func() // from the state store's feed; nil without one
	// aorLocks order the REGISTERs of one AOR while its change is written
	// to the state store, outside the memdb write transaction, so that
	// REGISTERs of different AORs reach the store together (store.go).
	aorLocks [aorLockStripes]sync.Mutex
}

// New returns an empty registrar. It fails on inconsistent options.
func New(o Options) (*Registrar, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	defaults := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"MinExpires", &o.MinExpires, DefaultMinExpires},
		{"MaxExpires", &o.MaxExpires, DefaultMaxExpires},
		{"DefaultExpires", &o.DefaultExpires, DefaultDefaultExpires},
	}
	for _, d := range defaults {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			return nil, fmt.Errorf("registrar: %s %v is negative", d.name, *d.v)
		case *d.v%time.Second != 0:
			return nil, fmt.Errorf("registrar: %s %v is not a whole number of seconds", d.name, *d.v)
		case *d.v > maxDeltaSeconds*time.Second:
			return nil, fmt.Errorf("registrar: %s %v exceeds 2^32-1 seconds", d.name, *d.v)
		}
	}
	if o.MinExpires > o.MaxExpires {
		return nil, fmt.Errorf("registrar: MinExpires %v exceeds MaxExpires %v", o.MinExpires, o.MaxExpires)
	}
	if o.DefaultExpires < o.MinExpires || o.DefaultExpires > o.MaxExpires {
		return nil, fmt.Errorf("registrar: DefaultExpires %v outside [MinExpires %v, MaxExpires %v]",
			o.DefaultExpires, o.MinExpires, o.MaxExpires)
	}
	switch {
	case o.MaxBindingsPerAOR == 0:
		o.MaxBindingsPerAOR = DefaultMaxBindingsPerAOR
	case o.MaxBindingsPerAOR < 0:
		return nil, fmt.Errorf("registrar: MaxBindingsPerAOR %d is negative", o.MaxBindingsPerAOR)
	}

	db, err := memdb.NewMemDB(stateStoreSchema())
	if err != nil {
		return nil, fmt.Errorf("registrar: state store: %w", err)
	}
	if o.Active != nil {
		o.Active.Set(0)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Registrar{opts: o, db: db}
	if o.Store != nil {
		r.attach()
	}
	return r, nil
}

// Register applies a REGISTER for the address of record aor (normally
// aor.Of of the To URI; it is normalised again here) received over flow,
// and returns the response to send. It never returns nil. The caller has
// authenticated the request and checked that aor's domain is ours.
func (r *Registrar) Register(req *sip.Request, aor string, flow Flow) *sip.Response {
	now := r.opts.Now()
	key := canonicalAOR(aor)
	if key == "" {
		return r.reject(req, &rejection{code: sip.StatusInternalServerError, reason: "Server Internal Error: no address of record"})
	}
	callID := req.CallID()
	if callID == nil || strings.TrimSpace(string(*callID)) == "" {
		return r.reject(req, badRequest("missing Call-ID"))
	}
	cseq := req.CSeq()
	if cseq == nil {
		return r.reject(req, badRequest("missing CSeq"))
	}
	contacts, rej := r.parseContacts(req)
	if rej != nil {
		return r.reject(req, rej)
	}
	if contacts == nil {
		// A REGISTER without Contact is a query (RFC 3261 10.3 step 6):
		// nothing changes.
		return r.ok(req, r.lookup(r.db.Txn(false), key, now, nil), now)
	}
	flow.Transport = strings.ToLower(flow.Transport)
	if r.opts.Store != nil {
		return r.registerThrough(req, key, contacts, string(*callID), cseq.SeqNo, flow, now)
	}

	txn := r.db.Txn(true)
	defer txn.Abort() // no-op once committed
	current, delta, err := r.apply(txn, key, contacts, string(*callID), cseq.SeqNo, flow, now, nil)
	if err != nil {
		return r.reject(req, asRejection(err))
	}
	r.commitCount(delta)
	txn.Commit()
	return r.ok(req, current, now)
}

func (rej *rejection) Error() string { return strconv.Itoa(rej.code) + " " + rej.reason }

// asRejection is the response to an error of apply: its rejection, or 500
// for a state store failure.
func asRejection(err error) *rejection {
	var rej *rejection
	if !errors.As(err, &rej) {
		rej = &rejection{code: sip.StatusInternalServerError, reason: "Server Internal Error"}
	}
	return rej
}

// apply performs RFC 3261 10.3 steps 6 and 7 for one REGISTER inside txn
// and returns the AOR's bindings as they will be once txn commits, and by
// how much the number of stored bindings changes; change, when not nil,
// collects the rows written and removed, for the state store. An error (a *rejection,
// or a state store failure) means txn must be aborted.
func (r *Registrar) apply(txn *memdb.Txn, key string, contacts *registerContacts, callID string, cseq uint32, flow Flow, now time.Time, change *state.BindingChange) ([]*bindingRow, int, error) {
	nowNano := now.UnixNano()
	existing, err := rowsOf(txn, key)
	if err != nil {
		return nil, 0, err
	}
	// Expired bindings no longer exist as far as RFC 3261 is concerned:
	// drop them first so they neither count nor take part in the Call-ID
	// and CSeq checks.
	removed := 0
	live := existing[:0]
	for _, b := range existing {
		if b.live(nowNano) {
			live = append(live, b)
			continue
		}
		if err := txn.Delete(tableBindings, b); err != nil {
			return nil, 0, fmt.Errorf("delete expired binding: %w", err)
		}
		if change != nil {
			change.Delete = append(change.Delete, b.Key)
		}
		removed++
	}
	added := 0

	if contacts.wildcard {
		// Step 6: "*" removes every binding, each subject to the step 7
		// Call-ID/CSeq check; one stale binding aborts the whole request.
		for _, b := range live {
			if b.CallID == callID && cseq <= b.CSeq {
				return nil, 0, outOfOrder(b.CSeq)
			}
			if err := txn.Delete(tableBindings, b); err != nil {
				return nil, 0, fmt.Errorf("delete binding: %w", err)
			}
			if change != nil {
				change.Delete = append(change.Delete, b.Key)
			}
			removed++
		}
		return nil, -removed, nil
	}

	// Step 7, for each contact in turn. A contact listed twice in the same
	// request is not compared with itself: the last occurrence wins.
	written := make(map[string]bool, len(contacts.updates))
	for _, c := range contacts.updates {
		raw, err := txn.First(tableBindings, indexID, key, c.key)
		if err != nil {
			return nil, 0, fmt.Errorf("look up binding: %w", err)
		}
		old, _ := raw.(*bindingRow)
		if old != nil && !written[c.key] && old.CallID == callID && cseq <= old.CSeq {
			return nil, 0, outOfOrder(old.CSeq)
		}
		written[c.key] = true
		if c.expires == 0 {
			if old != nil {
				if err := txn.Delete(tableBindings, old); err != nil {
					return nil, 0, fmt.Errorf("delete binding: %w", err)
				}
				removed++
			}
			continue
		}
		expires := now.Add(c.expires)
		row := &bindingRow{
			Binding: Binding{
				AOR:        key,
				Contact:    c.uri,
				ContactRaw: c.raw,
				Expires:    expires,
				Q:          c.q,
				CallID:     callID,
				CSeq:       cseq,
				Flow:       flow,
				Updated:    now,

				Instance:     r.opts.Instance,
				InstanceAddr: r.advertised(flow.Transport),
			},
			Key:       c.key,
			ExpiresAt: expires.UnixNano(),
			params:    c.params,
		}
		if err := txn.Insert(tableBindings, row); err != nil {
			return nil, 0, fmt.Errorf("insert binding: %w", err)
		}

		if old == nil {
			added++
		}
	}

	// What the store must hold of each contact named: its final row, or
	// nothing (a contact may be listed twice with different expiries).
	for ck := range written {
		if change == nil {
			break
		}
		raw, err := txn.First(tableBindings, indexID, key, ck)
		if err != nil {
			return nil, 0, fmt.Errorf("look up binding: %w", err)
		}
		if row, ok := raw.(*bindingRow); ok {
			change.Put = append(change.Put, row.toState())
		} else {
			change.Delete = append(change.Delete, ck)
		}
	}

	current, err := rowsOf(txn, key)
	if err != nil {
		return nil, 0, err
	}
	if len(current) > r.opts.MaxBindingsPerAOR {
		return nil, 0, tooManyBindings(live, now)
	}
	return current, added - removed, nil
}

// commitCount adjusts the stored-binding count and the gauge; it must be
// called inside the write transaction that made the change, just before
// its Commit (memdb commits cannot fail).
func (r *Registrar) commitCount(delta int) {
	if delta == 0 {
		return
	}
	r.rows += delta
	if r.opts.Active != nil {
		r.opts.Active.Set(float64(r.rows))
	}
}

func outOfOrder(stored uint32) *rejection {
	// RFC 3261 10.3 step 7 says the request "fails" without naming a code;
	// 500 is what deployed registrars send, and tells the UA it may retry
	// with a fresh CSeq.
	return &rejection{code: sip.StatusInternalServerError, reason: "Out of Order: CSeq not above " + strconv.FormatUint(uint64(stored), 10)}
}

// tooManyBindings answers 503 with Retry-After set to when the AOR's first
// live binding expires, the earliest moment a new one could fit. Without
// live bindings (the request alone lists too many contacts) nothing will
// make room, so there is no Retry-After.
func tooManyBindings(live []*bindingRow, now time.Time) *rejection {
	rej := &rejection{code: sip.StatusServiceUnavailable, reason: "Too Many Registered Contacts"}
	if len(live) == 0 {
		return rej
	}
	first := live[0].Expires
	for _, b := range live[1:] {
		if b.Expires.Before(first) {
			first = b.Expires
		}
	}
	rej.header = sip.NewHeader("Retry-After", strconv.FormatInt(remainingSeconds(first, now), 10))
	return rej
}

// rowsOf returns every stored row of one AOR, expired or not.
func rowsOf(txn *memdb.Txn, key string) ([]*bindingRow, error) {
	it, err := txn.Get(tableBindings, indexAOR, key)
	if err != nil {
		return nil, fmt.Errorf("bindings of %q: %w", key, err)
	}
	var out []*bindingRow
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*bindingRow))
	}
	return out, nil
}

// lookup appends the live rows of one AOR to dst and returns them in
// Lookup order.
func (r *Registrar) lookup(txn *memdb.Txn, key string, now time.Time, dst []*bindingRow) []*bindingRow {
	it, err := txn.Get(tableBindings, indexAOR, key)
	if err != nil {
		// Only a schema bug gets here; the tests cover the schema.
		panic(fmt.Sprintf("registrar: bindings of %q: %v", key, err))
	}
	nowNano := now.UnixNano()
	out := dst[:0]
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if b := raw.(*bindingRow); b.live(nowNano) {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, compareRows)
	return out
}

// compareRows orders bindings as forking wants them: highest q first, then
// the most recently updated, then by contact for a stable order.
func compareRows(a, b *bindingRow) int {
	switch {
	case a.Q != b.Q:
		if a.Q > b.Q {
			return -1
		}
		return 1
	case !a.Updated.Equal(b.Updated):
		return b.Updated.Compare(a.Updated)
	default:
		return strings.Compare(a.Key, b.Key)
	}
}

// Lookup returns the live bindings of an address of record (expired ones
// are never returned, swept or not), highest q first, then most recently
// updated first. The result is the caller's to modify.
func (r *Registrar) Lookup(aor string) []Binding {
	var buf [8]*bindingRow // typical AORs have a few bindings: no allocation for them
	rows := r.lookup(r.db.Txn(false), canonicalAOR(aor), r.opts.Now(), buf[:0])
	if len(rows) == 0 {
		return nil
	}
	out := make([]Binding, len(rows))
	for i, b := range rows {
		out[i] = b.binding()
	}
	return out
}

// Count returns the number of live bindings of all AORs.
func (r *Registrar) Count() int {
	txn := r.db.Txn(false)
	it, err := txn.LowerBound(tableBindings, indexExpires, r.opts.Now().UnixNano()+1)
	if err != nil {
		panic(fmt.Sprintf("registrar: count bindings: %v", err))
	}
	n := 0
	for raw := it.Next(); raw != nil; raw = it.Next() {
		n++
	}
	return n
}

// Sweep deletes every expired binding in one transaction, updates the
// gauge and returns how many it removed. The state store drops them too.
func (r *Registrar) Sweep() int {
	now := r.opts.Now()
	r.sweepStore(now)
	nowNano := now.UnixNano()
	txn := r.db.Txn(true)
	defer txn.Abort()
	it, err := txn.LowerBound(tableBindings, indexExpires, int64(math.MinInt64))
	if err != nil {
		panic(fmt.Sprintf("registrar: sweep: %v", err))
	}
	// The iterator is a snapshot taken before the deletes (memdb
	// ResultIterator), so deleting while iterating is safe.
	n := 0
	for raw := it.Next(); raw != nil; raw = it.Next() {
		b := raw.(*bindingRow)
		if b.live(nowNano) {
			break // the index is in expiry order: the rest are live
		}
		if err := txn.Delete(tableBindings, b); err != nil {
			panic(fmt.Sprintf("registrar: sweep: %v", err))
		}
		n++
	}
	if n == 0 {
		return 0
	}
	r.commitCount(-n)
	txn.Commit()
	return n
}

// Run sweeps expired bindings every interval (DefaultSweepInterval if
// every is not positive) until ctx is done.
func (r *Registrar) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultSweepInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Sweep()
		}
	}
}

// ok builds the 200 OK of RFC 3261 10.3 step 8: every current binding with
// its remaining lifetime, and a Date header.
func (r *Registrar) ok(req *sip.Request, current []*bindingRow, now time.Time) *sip.Response {
	slices.SortFunc(current, compareRows)
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	for _, b := range current {
		params := make(sip.HeaderParams, len(b.params), len(b.params)+1)
		copy(params, b.params)
		params.Add("expires", strconv.FormatInt(remainingSeconds(b.Expires, now), 10))
		res.AppendHeader(&sip.ContactHeader{Address: *b.Contact.Clone(), Params: params})
	}
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format(dateLayout)))
	return res
}

func (r *Registrar) reject(req *sip.Request, rej *rejection) *sip.Response {
	res := sip.NewResponseFromRequest(req, rej.code, rej.reason, nil)
	if rej.header != nil {
		res.AppendHeader(rej.header)
	}
	return res
}

// remainingSeconds is the lifetime left at now, rounded up so that a live
// binding is never reported with expires=0 (which would mean "removed").
func remainingSeconds(expires, now time.Time) int64 {
	d := expires.Sub(now)
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// canonicalAOR normalises an address of record like aor.Of: "user@host"
// with the host lower-cased. A "sip:" or "sips:" URI is accepted too. It
// returns "" for something that is not an AOR.
func canonicalAOR(s string) string {
	s = strings.TrimSpace(s)
	if lower := strings.ToLower(s); strings.HasPrefix(lower, "sip:") || strings.HasPrefix(lower, "sips:") {
		_, key, err := aor.Parse(s)
		if err != nil {
			return ""
		}
		return key
	}
	at := strings.LastIndexByte(s, '@')
	host := s[at+1:]
	if host == "" || at == 0 {
		return ""
	}
	if lower := strings.ToLower(host); lower != host {
		return s[:at+1] + lower
	}
	return s
}
