package state

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/go-memdb"
)

// Memory is the in-memory store: the memory backend itself, and the local
// cache of the file and redis backends. Its writes cannot fail.
type Memory struct {
	opts Options
	db   *memdb.MemDB
	feed feed
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory(o Options) *Memory {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		// The schema is a constant; its test covers it.
		panic(fmt.Sprintf("state: schema: %v", err))
	}
	o = o.withDefaults()
	setUp(o.Up, true)
	return &Memory{opts: o, db: db}
}

// WriteBindings applies c in one transaction.
func (m *Memory) WriteBindings(_ context.Context, c BindingChange) error {
	txn := m.db.Txn(true)
	defer txn.Abort()
	if err := applyChange(txn, c); err != nil {
		return err
	}
	txn.Commit()
	return nil
}

func applyChange(txn *memdb.Txn, c BindingChange) error {
	for _, key := range c.Delete {
		if _, err := txn.DeleteAll(tableBindings, indexID, c.AOR, key); err != nil {
			return fmt.Errorf("state: delete binding %s %s: %w", c.AOR, key, err)
		}
	}
	for _, b := range c.Put {
		b.AOR = c.AOR
		if err := txn.Insert(tableBindings, &bindingRow{Binding: b, ExpiresAt: b.Expires.UnixNano()}); err != nil {
			return fmt.Errorf("state: insert binding %s %s: %w", b.AOR, b.Key, err)
		}
	}
	return nil
}

// ListBindings returns the live bindings of aor.
func (m *Memory) ListBindings(aor string) []Binding {
	it, err := m.db.Txn(false).Get(tableBindings, indexAOR, aor)
	if err != nil {
		panic(fmt.Sprintf("state: bindings of %q: %v", aor, err))
	}
	now := m.opts.Now().UnixNano()
	var out []Binding
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if r := raw.(*bindingRow); r.ExpiresAt > now {
			out = append(out, r.Binding)
		}
	}
	return out
}

// PutDialog stores d.
func (m *Memory) PutDialog(_ context.Context, d Dialog) error {
	txn := m.db.Txn(true)
	defer txn.Abort()
	if err := putDialog(txn, d); err != nil {
		return err
	}
	txn.Commit()
	return nil
}

func putDialog(txn *memdb.Txn, d Dialog) error {
	if err := txn.Insert(tableDialogs, &dialogRow{Dialog: d.clone(), ExpiresAt: d.Expires.UnixNano()}); err != nil {
		return fmt.Errorf("state: insert dialog %s: %w", d.CallID, err)
	}
	return nil
}

// DeleteDialog removes the dialog callID.
func (m *Memory) DeleteDialog(_ context.Context, callID string) error {
	txn := m.db.Txn(true)
	defer txn.Abort()
	if _, err := txn.DeleteAll(tableDialogs, indexID, callID); err != nil {
		return fmt.Errorf("state: delete dialog %s: %w", callID, err)
	}
	txn.Commit()
	return nil
}

// Dialog returns the live record of callID.
func (m *Memory) Dialog(callID string) (Dialog, bool) {
	raw, err := m.db.Txn(false).First(tableDialogs, indexID, callID)
	if err != nil {
		panic(fmt.Sprintf("state: dialog %q: %v", callID, err))
	}
	r, _ := raw.(*dialogRow)
	if r == nil || r.ExpiresAt <= m.opts.Now().UnixNano() {
		return Dialog{}, false
	}
	return r.Dialog.clone(), true
}

// Load returns every live record.
func (m *Memory) Load() Snapshot {
	txn := m.db.Txn(false)
	now := m.opts.Now().UnixNano()
	var s Snapshot
	for raw := range rowsFrom(txn, tableBindings, now) {
		s.Bindings = append(s.Bindings, raw.(*bindingRow).Binding)
	}
	for raw := range rowsFrom(txn, tableDialogs, now) {
		s.Dialogs = append(s.Dialogs, raw.(*dialogRow).Dialog.clone())
	}
	return s
}

// rowsFrom iterates the rows of table expiring after now, in expiry order.
func rowsFrom(txn *memdb.Txn, table string, now int64) func(func(any) bool) {
	return func(yield func(any) bool) {
		it, err := txn.LowerBound(table, indexExpires, now+1)
		if err != nil {
			panic(fmt.Sprintf("state: %s by expiry: %v", table, err))
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if !yield(raw) {
				return
			}
		}
	}
}

// expired is what one sweep removed.
type expired struct {
	bindings []BindingChange // one per AOR, deletes only
	dialogs  []string
}

func (e expired) count() int {
	n := len(e.dialogs)
	for _, c := range e.bindings {
		n += len(c.Delete)
	}
	return n
}

// Sweep removes records expired at now.
func (m *Memory) Sweep(_ context.Context, now time.Time) (int, error) {
	return m.sweep(now).count(), nil
}

func (m *Memory) sweep(now time.Time) expired {
	nowNano := now.UnixNano()
	txn := m.db.Txn(true)
	defer txn.Abort()
	var out expired
	byAOR := map[string]int{}
	for raw := range expiredRows(txn, tableBindings, nowNano) {
		r := raw.(*bindingRow)
		if err := txn.Delete(tableBindings, r); err != nil {
			panic(fmt.Sprintf("state: sweep binding: %v", err))
		}
		i, ok := byAOR[r.AOR]
		if !ok {
			i = len(out.bindings)
			byAOR[r.AOR] = i
			out.bindings = append(out.bindings, BindingChange{AOR: r.AOR})
		}
		out.bindings[i].Delete = append(out.bindings[i].Delete, r.Key)
	}
	for raw := range expiredRows(txn, tableDialogs, nowNano) {
		r := raw.(*dialogRow)
		if err := txn.Delete(tableDialogs, r); err != nil {
			panic(fmt.Sprintf("state: sweep dialog: %v", err))
		}
		out.dialogs = append(out.dialogs, r.CallID)
	}
	if out.count() > 0 {
		txn.Commit()
	}
	return out
}

// expiredRows iterates the rows of table expired at now. The iterator is
// a snapshot, so the caller may delete while iterating.
func expiredRows(txn *memdb.Txn, table string, now int64) func(func(any) bool) {
	return func(yield func(any) bool) {
		it, err := txn.LowerBound(table, indexExpires, int64(math.MinInt64))
		if err != nil {
			panic(fmt.Sprintf("state: %s by expiry: %v", table, err))
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			var at int64
			switch r := raw.(type) {
			case *bindingRow:
				at = r.ExpiresAt
			case *dialogRow:
				at = r.ExpiresAt
			}
			if at > now || !yield(raw) {
				return
			}
		}
	}
}

// replace swaps the whole content for s (a reload from the backend).
func (m *Memory) replace(s Snapshot) error {
	txn := m.db.Txn(true)
	defer txn.Abort()
	for _, table := range []string{tableBindings, tableDialogs} {
		for raw := range expiredRows(txn, table, math.MaxInt64) {
			if err := txn.Delete(table, raw); err != nil {
				return fmt.Errorf("state: clear %s: %w", table, err)
			}
		}
	}
	for _, b := range s.Bindings {
		if err := txn.Insert(tableBindings, &bindingRow{Binding: b, ExpiresAt: b.Expires.UnixNano()}); err != nil {
			return fmt.Errorf("state: insert binding %s %s: %w", b.AOR, b.Key, err)
		}
	}
	for _, d := range s.Dialogs {
		if err := putDialog(txn, d); err != nil {
			return err
		}
	}
	txn.Commit()
	return nil
}

// Subscribe: an in-memory store learns nothing from outside.
func (m *Memory) Subscribe(fn func(Event)) func() { return m.feed.subscribe(fn) }

// Shared: nobody else writes it.
func (m *Memory) Shared() bool { return false }

// Up is always true.
func (m *Memory) Up() bool { return true }

// Close does nothing.
func (m *Memory) Close() error { return nil }
