package rules

import (
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-memdb"
)

// Store holds the rule set serving calls, in go-memdb: whole-set
// replacement in one write transaction, and readers that read a committed
// state in a read transaction (the Nomad and Consul state stores' shape).
// There is no second copy of the rules beside memdb.
type Store struct {
	db *memdb.MemDB

	mu      sync.Mutex               // serialises Replace: commit and publish in one order
	current atomic.Pointer[Snapshot] // the latest committed rule set
}

// Snapshot is one committed rule set: a memdb read transaction taken when
// the set was committed. Replace never changes a snapshot, so a call that
// took one keeps the rules it started with. The rules it returns are
// shared: callers must not modify them.
//
// One read transaction serves every goroutine holding the snapshot: a read
// transaction only reads memdb's immutable radix trees (each lookup makes
// its own radix transaction), which is what makes memdb's snapshots safe
// to share.
type Snapshot struct {
	txn   *memdb.Txn // read transaction of the committed state
	count int        // rules in the committed state, counted as they were inserted
}

// New returns an empty store.
func New() *Store {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		panic("rules: invalid memdb schema: " + err.Error()) // a programming error, caught by every test
	}
	s := &Store{db: db}
	s.current.Store(&Snapshot{txn: db.Txn(false)})
	return s
}

// Replace swaps the whole rule set for rules in one write transaction,
// committed as a whole or, on any error, aborted, leaving the old set
// serving. Rules must have distinct, non-empty User fields (Parse
// guarantees it). The store keeps its own copy of rules.
//
// The committed state is always "delete all, insert all"; how the
// transaction gets there depends on how much changed, which Replace learns
// by reading the serving set from memdb. When most rules are as before (an
// operator edited a few lines) it deletes the rules that went and inserts
// the ones that are new or changed, and unchanged rules keep their stored
// objects. When much changed it deletes the whole table with one radix
// subtree delete and inserts every rule, which is cheaper than deleting
// 100,000 rules one by one.
func (s *Store) Replace(rules []Rule) error {
	stored := make([]Rule, len(rules))
	copy(stored, rules)
	// The new set by AOR: to refuse duplicates and to compare with the
	// serving set. It lives for this call only.
	next := make(map[string]*Rule, len(stored))
	for i := range stored {
		r := &stored[i]
		if r.User == "" {
			return errors.New("rules: replace: a rule has no user")
		}
		if _, dup := next[r.User]; dup {
			return fmt.Errorf("rules: replace: user %s given twice", r.User)
		}
		next[r.User] = r
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.current.Load()
	var gone []*Rule
	for prev := range cur.All() {
		r, keep := next[prev.User]
		switch {
		case !keep:
			gone = append(gone, prev)
		case sameRule(prev, r):
			next[prev.User] = prev // unchanged: keep the stored object
		}
	}
	var writes []*Rule // new or changed
	for i := range stored {
		if r := &stored[i]; next[r.User] == r {
			writes = append(writes, r)
		}
	}
	if len(writes) == 0 && len(gone) == 0 {
		return nil // the same rules: the current snapshot stays
	}

	txn := s.db.Txn(true)
	defer txn.Abort() // no-op once committed
	if len(writes)+len(gone) > max(len(next), cur.count)/8 {
		if _, err := txn.DeletePrefix(tableRules, indexID+"_prefix", ""); err != nil {
			return fmt.Errorf("rules: replace: delete old rules: %w", err)
		}
		gone, writes = nil, writes[:0]
		for i := range stored {
			writes = append(writes, next[stored[i].User])
		}
	}
	for _, r := range gone {
		if err := txn.Delete(tableRules, r); err != nil {
			return fmt.Errorf("rules: replace: delete %s: %w", r.User, err)
		}
	}
	for _, r := range writes {
		if err := txn.Insert(tableRules, r); err != nil {
			return fmt.Errorf("rules: replace: insert %s: %w", r.User, err)
		}
	}
	txn.Commit()
	s.current.Store(&Snapshot{txn: s.db.Txn(false), count: len(next)})
	return nil
}

// sameRule reports whether two rules say the same thing, down to the line
// they were written on. Targets are equal when written the same, since
// their parsed forms and AORs derive from the text.
func sameRule(a, b *Rule) bool {
	return a.User == b.User && a.UserURI == b.UserURI && a.Line == b.Line &&
		sameTarget(a.Immediate, b.Immediate) && sameTarget(a.Busy, b.Busy) &&
		(a.Unanswered == nil) == (b.Unanswered == nil) &&
		(a.Unanswered == nil || a.Unanswered.After == b.Unanswered.After &&
			sameTarget(&a.Unanswered.Target, &b.Unanswered.Target))
}

func sameTarget(a, b *Target) bool {
	return a == b || a != nil && b != nil && a.URI == b.URI && a.AOR == b.AOR
}

// Snapshot returns the rule set serving now. It is cheap (one atomic load)
// and safe from any goroutine.
func (s *Store) Snapshot() *Snapshot {
	return s.current.Load()
}

// Lookup returns the rule of a normalised address of record ("user@host",
// as internal/aor makes it): an exact read of memdb's unique "id" index in
// the snapshot's read transaction. memdb allocates on every read (the boxed
// argument, the index key, the index path and a radix transaction): four
// small allocations, measured by BenchmarkLookup.
func (s *Snapshot) Lookup(aor string) (*Rule, bool) {
	obj, err := s.txn.First(tableRules, indexID, aor)
	if err != nil || obj == nil {
		return nil, false // err only on a schema mismatch, which tests rule out
	}
	return obj.(*Rule), true
}

// Count is the number of rules in the snapshot.
func (s *Snapshot) Count() int {
	return s.count
}

// All yields the snapshot's rules from go-memdb in AOR order.
func (s *Snapshot) All() iter.Seq[*Rule] {
	return func(yield func(*Rule) bool) {
		it, err := s.txn.Get(tableRules, indexID)
		if err != nil {
			return // only on a schema mismatch, which tests rule out
		}
		for obj := it.Next(); obj != nil; obj = it.Next() {
			if !yield(obj.(*Rule)) {
				return
			}
		}
	}
}
