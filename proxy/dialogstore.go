package proxy

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipproxy/sipproxy/proxy/state"
)

// Dialog records in the state store: a confirmed call is written when it
// is answered, when a target refresh passes and when a fork of it ends,
// and removed when it is over; at start the records are loaded back, so
// that a restarted instance still relays the BYE of a caller it cannot
// identify (a digest-only phone). An in-dialog request whose Call-ID is
// not in memory is also checked against the store (a record another
// instance of a pool wrote, read from the local cache).
//
// Writes go through one goroutine in the order the table changed, so the
// SIP path never waits for the backend; a full queue drops the write
// (logged): the call still works on this instance.

// dialogQueue bounds the writes waiting for the backend.
const dialogQueue = 4096

// dialogOp is one write: a record to put, or a Call-ID to delete.
type dialogOp struct {
	put *state.Dialog
	del string
}

// dialogWriter writes dialog records to the store in order.
type dialogWriter struct {
	store state.Store
	log   *slog.Logger
	ops   chan dialogOp
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	// Records dropped because the queue was full, and when that was last
	// logged: one line per dropWarnEvery, not one per call under load.
	dropped  atomic.Int64
	lastWarn atomic.Int64 // unix nanoseconds
}

const dropWarnEvery = 10 * time.Second

// attach loads the store's dialog records (all of them, or this
// instance's for a store shared by a pool) and starts writing changes to
// the store. Called once, before the proxy serves.
func (d *dialogs) attach(st state.Store, instance string, log *slog.Logger) {
	now := time.Now()
	d.mu.Lock()
	for _, rec := range st.Load().Dialogs {
		if st.Shared() && rec.Instance != instance {
			continue
		}
		if _, ok := d.m[rec.CallID]; ok || len(rec.Confirmed) == 0 || !rec.Live(now) {
			continue
		}
		d.m[rec.CallID] = dialogFromRecord(rec)
		d.nconf++
	}
	d.gauge.Set(float64(d.nconf))
	d.store, d.instance = st, instance
	d.writer = &dialogWriter{store: st, log: log, ops: make(chan dialogOp, dialogQueue), stop: make(chan struct{}), done: make(chan struct{})}
	d.unsubscribe = st.Subscribe(d.onEvent) // onEvent waits for d.mu
	d.mu.Unlock()
	go d.writer.run()
}

// save queues the record of a confirmed dialog; d.mu is held.
func (d *dialogs) save(callID string, e *dialog) {
	if d.writer == nil || len(e.confirmed) == 0 {
		return
	}
	rec := e.record(callID, d.maxAge, d.instance)
	d.writer.enqueue(dialogOp{put: &rec})
}

// forget queues the removal of a record; d.mu is held.
func (d *dialogs) forget(callID string) {
	if d.writer != nil {
		d.writer.enqueue(dialogOp{del: callID})
	}
}

// stored returns the store's record of a dialog this table does not hold.
func (d *dialogs) stored(callID string) (*dialog, bool) {
	if d.store == nil {
		return nil, false
	}
	rec, ok := d.store.Dialog(callID)
	if !ok || len(rec.Confirmed) == 0 {
		return nil, false
	}
	return dialogFromRecord(rec), true
}

// closedStored ends, in the store, a call this table does not hold whose
// BYE passed here (a call set up through another instance of the pool):
// its record goes, and the instance holding the call forgets it when the
// store tells it (onEvent). d.mu is held.
func (d *dialogs) closedStored(callID string, tags [2]string) {
	e, ok := d.stored(callID)
	if !ok || d.writer == nil {
		return
	}
	rec, _ := d.store.Dialog(callID)
	rec.Confirmed = slices.DeleteFunc(e.confirmed, func(t string) bool { return t == tags[0] || t == tags[1] })
	if len(rec.Confirmed) == 0 {
		d.writer.enqueue(dialogOp{del: callID})
		return
	}
	d.writer.enqueue(dialogOp{put: &rec})
}

// onEvent applies another instance's change to a dialog this table holds:
// a call whose last BYE passed through another instance is over here too.
func (d *dialogs) onEvent(ev state.Event) {
	if ev.Kind != state.DialogDeleted {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.m[ev.CallID]
	if !ok || len(e.confirmed) == 0 {
		return
	}
	e.confirmed = nil
	if e.pending <= 0 {
		delete(d.m, ev.CallID)
	}
	d.nconf--
	d.gauge.Set(float64(d.nconf))
}

// closeStore writes what is queued and stops the writer.
func (d *dialogs) closeStore() {
	d.mu.Lock()
	w, unsubscribe := d.writer, d.unsubscribe
	d.mu.Unlock()
	if unsubscribe != nil {
		unsubscribe()
	}
	if w != nil {
		w.close()
	}
}

func (w *dialogWriter) enqueue(op dialogOp) {
	select {
	case w.ops <- op:
	default:
		n := w.dropped.Add(1)
		now := time.Now().UnixNano()
		if last := w.lastWarn.Load(); now-last >= int64(dropWarnEvery) && w.lastWarn.CompareAndSwap(last, now) {
			w.log.Warn("state: dialog write queue full; records not written", "dropped_total", n, "call_id", op.callID())
		}
	}
}

func (op dialogOp) callID() string {
	if op.put != nil {
		return op.put.CallID
	}
	return op.del
}

// dialogBatcher is a store that takes many dialog changes at once (the
// file backend: one fsync for the lot).
type dialogBatcher interface {
	WriteDialogs(ctx context.Context, puts []state.Dialog, dels []string) error
}

// maxDialogBatch bounds what one batch takes from the queue.
const maxDialogBatch = 512

func (w *dialogWriter) run() {
	defer close(w.done)
	batcher, _ := w.store.(dialogBatcher)
	for {
		select {
		case op := <-w.ops:
			if batcher == nil {
				w.write(op)
				continue
			}
			w.writeBatch(batcher, op)
		case <-w.stop:
			for range dialogQueue { // what was queued before the stop
				select {
				case op := <-w.ops:
					w.write(op)
				default:
					return
				}
			}
			return
		}
	}
}

func (w *dialogWriter) write(op dialogOp) {
	ctx := context.Background()
	var err error
	if op.put != nil {
		err = w.store.PutDialog(ctx, *op.put)
	} else {
		err = w.store.DeleteDialog(ctx, op.del)
	}
	if err != nil {
		// The store keeps what it could not share (and Redis gets it when
		// back); this instance's table is unaffected.
		w.log.Debug("state: dialog record not written", "call_id", op.callID(), "error", err)
	}
}

// writeBatch writes op and whatever else is queued (up to maxDialogBatch)
// in one call; of several changes to one Call-ID the last one counts.
func (w *dialogWriter) writeBatch(b dialogBatcher, first dialogOp) {
	last := map[string]dialogOp{first.callID(): first}
	order := []string{first.callID()}
drain:
	for len(order) < maxDialogBatch {
		select {
		case op := <-w.ops:
			id := op.callID()
			if _, seen := last[id]; !seen {
				order = append(order, id)
			}
			last[id] = op
		default:
			break drain
		}
	}
	var puts []state.Dialog
	var dels []string
	for _, id := range order {
		if op := last[id]; op.put != nil {
			puts = append(puts, *op.put)
		} else {
			dels = append(dels, id)
		}
	}
	if err := b.WriteDialogs(context.Background(), puts, dels); err != nil {
		w.log.Debug("state: dialog records not written", "count", len(order), "error", err)
	}
}

func (w *dialogWriter) close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

// record is the stored form of a dialog; d.mu is held.
func (e *dialog) record(callID string, maxAge time.Duration, instance string) state.Dialog {
	return state.Dialog{
		CallID:    callID,
		CallerTag: e.callerTag,
		Confirmed: append([]string(nil), e.confirmed...),
		Caller:    e.caller.record(),
		Callee:    e.callee.record(),
		Since:     e.since,
		Expires:   e.since.Add(maxAge),
		Instance:  instance,
	}
}

func (p *party) record() state.Party {
	out := state.Party{Tags: append([]string(nil), p.tags...)}
	for _, a := range p.addrs {
		out.Addrs = append(out.Addrs, a.String())
	}
	for _, h := range p.hops {
		out.Hops = append(out.Hops, state.Hop{User: h.user, Host: h.host, Port: h.port})
	}
	return out
}

// dialogFromRecord rebuilds a confirmed dialog from its record; addresses
// that do not parse are left out (they match nobody).
func dialogFromRecord(rec state.Dialog) *dialog {
	return &dialog{
		confirmed: append([]string(nil), rec.Confirmed...),
		since:     rec.Since,
		callerTag: rec.CallerTag,
		caller:    partyFromRecord(rec.Caller),
		callee:    partyFromRecord(rec.Callee),
	}
}

func partyFromRecord(r state.Party) party {
	var p party
	for _, s := range r.Addrs {
		if a, err := netip.ParseAddr(s); err == nil && len(p.addrs) < maxPartyAddrs {
			p.addrs = append(p.addrs, a)
		}
	}
	for _, t := range r.Tags {
		if len(p.tags) < maxPartyAddrs {
			p.tags = append(p.tags, t)
		}
	}
	for _, h := range r.Hops {
		if len(p.hops) < maxPartyHops {
			p.hops = append(p.hops, hop{user: h.User, host: h.Host, port: h.Port})
		}
	}
	return p
}
