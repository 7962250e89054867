package registrar

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/hashicorp/go-memdb"

	"github.com/sipproxy/sipproxy/proxy/state"
)

// storeRetryAfter is the Retry-After of a 503 for a REGISTER the state
// store did not take.
const storeRetryAfter = "5"

// aorLockStripes is how many locks the AORs share (by hash).
const aorLockStripes = 256

// registerThrough is Register with a state store. Under the AOR's lock,
// the REGISTER is worked out in a memdb write transaction that is then
// aborted (memdb admits one writer: it must not be held across the
// store's write), the change goes to the store, and only once the store
// holds it is it applied to the memdb. A store that refuses it leaves
// everything as it was: 503 with Retry-After.
func (r *Registrar) registerThrough(req *sip.Request, key string, contacts *registerContacts, callID string, cseq uint32, flow Flow, now time.Time) *sip.Response {
	mu := &r.aorLocks[fnv32(key)%aorLockStripes]
	mu.Lock()
	defer mu.Unlock()
	change := &state.BindingChange{AOR: key}
	txn := r.db.Txn(true)
	current, _, err := r.apply(txn, key, contacts, callID, cseq, flow, now, change)
	txn.Abort()
	if err != nil {
		return r.reject(req, asRejection(err))
	}
	if rej := r.writeThrough(change); rej != nil {
		return r.reject(req, rej)
	}
	r.applyChange(*change)
	return r.ok(req, current, now)
}

// fnv32 is FNV-1a of s.
func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// attach loads the store's bindings into the memdb (the store returns
// live ones only) and follows the changes other instances make.
func (r *Registrar) attach() {
	r.replace(r.opts.Store.Load().Bindings)
	r.unsubscribe = r.opts.Store.Subscribe(r.onEvent)
}

// Close stops following the state store; it does not close the store.
func (r *Registrar) Close() {
	if r.unsubscribe != nil {
		r.unsubscribe()
	}
}

// writeThrough hands a REGISTER's change to the store; a store that does
// not take it fails the request with 503 and Retry-After, and the caller
// aborts the memdb transaction, so nothing changes anywhere.
func (r *Registrar) writeThrough(c *state.BindingChange) *rejection {
	if r.opts.Store == nil || len(c.Put)+len(c.Delete) == 0 {
		return nil
	}
	if err := r.opts.Store.WriteBindings(context.Background(), *c); err != nil {
		r.opts.Logger.Warn("registrar: state store refused a REGISTER; answering 503", "aor", c.AOR, "error", err)
		return &rejection{
			code:   sip.StatusServiceUnavailable,
			reason: "Service Unavailable",
			header: sip.NewHeader("Retry-After", storeRetryAfter),
		}
	}
	return nil
}

// sweepStore removes expired records from the store (the file backend
// deletes them from disk; Redis expires its keys itself).
func (r *Registrar) sweepStore(now time.Time) {
	if r.opts.Store == nil {
		return
	}
	if _, err := r.opts.Store.Sweep(context.Background(), now); err != nil {
		r.opts.Logger.Warn("registrar: state store sweep", "error", err)
	}
}

// onEvent applies what another instance did to the memdb.
func (r *Registrar) onEvent(e state.Event) {
	switch e.Kind {
	case state.BindingsChanged:
		r.applyRemote(e.Change)
	case state.Resynced:
		r.replace(e.Snapshot.Bindings)
	}
}

// applyRemote applies a change made at another instance.
func (r *Registrar) applyRemote(c state.BindingChange) { r.applyChange(c) }

// applyChange applies a change the store holds (made here or at another
// instance) to the memdb in one transaction, keeping the count.
func (r *Registrar) applyChange(c state.BindingChange) {
	txn := r.db.Txn(true)
	defer txn.Abort()
	delta := 0
	for _, k := range c.Delete {
		n, err := txn.DeleteAll(tableBindings, indexID, c.AOR, k)
		if err != nil {
			r.opts.Logger.Error("registrar: apply a remote change", "aor", c.AOR, "error", err)
			return
		}
		delta -= n
	}
	for _, sb := range c.Put {
		sb.AOR = c.AOR
		row, err := rowFromState(sb)
		if err != nil {
			r.opts.Logger.Warn("registrar: unusable binding from the state store", "aor", c.AOR, "error", err)
			continue
		}
		old, err := txn.First(tableBindings, indexID, row.AOR, row.Key)
		if err == nil && old == nil {
			delta++
		}
		if err == nil {
			err = txn.Insert(tableBindings, row)
		}
		if err != nil {
			r.opts.Logger.Error("registrar: apply a remote change", "aor", c.AOR, "error", err)
			return
		}
	}
	r.commitCount(delta)
	txn.Commit()
}

// replace swaps every binding for bs (a load or reload of the store),
// dropping the expired ones.
func (r *Registrar) replace(bs []state.Binding) {
	nowNano := r.opts.Now().UnixNano()
	txn := r.db.Txn(true)
	defer txn.Abort()
	if err := deleteAllRows(txn); err != nil {
		r.opts.Logger.Error("registrar: reload from the state store", "error", err)
		return
	}
	n := 0
	for _, sb := range bs {
		row, err := rowFromState(sb)
		if err != nil {
			r.opts.Logger.Warn("registrar: unusable binding from the state store", "aor", sb.AOR, "error", err)
			continue
		}
		if !row.live(nowNano) {
			continue
		}
		if err := txn.Insert(tableBindings, row); err != nil {
			r.opts.Logger.Error("registrar: reload from the state store", "error", err)
			return
		}
		n++
	}
	r.commitCount(n - r.rows)
	txn.Commit()
}

func deleteAllRows(txn *memdb.Txn) error {
	it, err := txn.LowerBound(tableBindings, indexExpires, int64(math.MinInt64))
	if err != nil {
		return err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if err := txn.Delete(tableBindings, raw); err != nil {
			return err
		}
	}
	return nil
}

// advertised is this instance's address on a transport, for the store.
func (r *Registrar) advertised(transport string) string {
	if r.opts.Advertise == nil {
		return ""
	}
	return r.opts.Advertise(transport)
}

// toState is the stored form of a row.
func (b *bindingRow) toState() state.Binding {
	return state.Binding{
		AOR:          b.AOR,
		Key:          b.Key,
		Contact:      b.Contact.String(),
		ContactRaw:   b.ContactRaw,
		Expires:      b.Expires,
		Q:            b.Q,
		CallID:       b.CallID,
		CSeq:         b.CSeq,
		Flow:         state.Flow{Transport: b.Flow.Transport, Source: b.Flow.Source},
		Updated:      b.Updated,
		Instance:     b.Instance,
		InstanceAddr: b.InstanceAddr,
	}
}

// rowFromState rebuilds a row from its stored form: the Contact header
// value (URI and parameters) is parsed again, the way a REGISTER's is.
func rowFromState(sb state.Binding) (*bindingRow, error) {
	if canonicalAOR(sb.AOR) != sb.AOR || sb.AOR == "" {
		return nil, fmt.Errorf("address of record %q is not canonical", sb.AOR)
	}
	parsed, err := sip.HeadersParser(sip.DefaultHeadersParser()).ParseHeader(nil, []byte("Contact: "+sb.ContactRaw))
	if err != nil {
		return nil, fmt.Errorf("contact %q: %w", sb.ContactRaw, err)
	}
	if len(parsed) != 1 {
		return nil, fmt.Errorf("contact %q: %d values", sb.ContactRaw, len(parsed))
	}
	h, ok := parsed[0].(*sip.ContactHeader)
	if !ok || h.Address.Wildcard || h.Address.Host == "" {
		return nil, errors.New("contact " + sb.ContactRaw + " is not a contact address")
	}
	key := contactKey(h.Address)
	if sb.Key != "" && sb.Key != key {
		return nil, fmt.Errorf("contact %q: key %q, stored as %q", sb.ContactRaw, key, sb.Key)
	}
	return &bindingRow{
		Binding: Binding{
			AOR:          sb.AOR,
			Contact:      h.Address,
			ContactRaw:   sb.ContactRaw,
			Expires:      sb.Expires,
			Q:            sb.Q,
			CallID:       sb.CallID,
			CSeq:         sb.CSeq,
			Flow:         Flow{Transport: sb.Flow.Transport, Source: sb.Flow.Source},
			Updated:      sb.Updated,
			Instance:     sb.Instance,
			InstanceAddr: sb.InstanceAddr,
		},
		Key:       key,
		ExpiresAt: sb.Expires.UnixNano(),
		params:    h.Params,
	}, nil
}
