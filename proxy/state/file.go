package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of the state file.
const (
	bucketBindings = "bindings" // AOR NUL key -> JSON Binding
	bucketDialogs  = "dialogs"  // Call-ID -> JSON Dialog
)

// File is the file backend: the in-memory store written through to a bbolt
// file. A write returns once bbolt has committed (and synced) it.
type File struct {
	opts  Options
	path  string
	cache *Memory

	// mu: writes share it, Sweep and Close take it alone (a sweep's
	// deletes must not cross a refresh of the same binding).
	mu sync.RWMutex
	db *bolt.DB // nil when the file could not be opened: memory only
	up atomic.Bool
}

var _ Store = (*File)(nil)

// OpenFile opens (or creates) the state file at path and loads its live
// records; expired ones are dropped from the file. It always returns a
// usable store. The error, when not nil, is a warning for the operator's
// eyes (log it loudly):
//
//   - the file was unreadable or corrupt: it was renamed aside to
//     <path>.corrupt-<timestamp> and the store starts empty;
//   - records that could not be decoded were dropped;
//   - no file could be used at all (a directory that cannot be written, a
//     file held by another process): the store keeps state in memory only
//     and Up reports false.
func OpenFile(path string, o Options) (*File, error) {
	o = o.withDefaults()
	f := &File{opts: o, path: path, cache: NewMemory(Options{Now: o.Now})}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return f.memoryOnly(fmt.Errorf("state file %s: %w", path, err))
	}
	db, snap, dropped, err := openBolt(path, o.Now())
	switch {
	case err == nil:
	case errors.Is(err, bolt.ErrTimeout):
		return f.memoryOnly(fmt.Errorf("state file %s is locked by another process: %w", path, err))
	default:
		aside := path + ".corrupt-" + o.Now().UTC().Format("20060102T150405.000Z")
		if rerr := os.Rename(path, aside); rerr != nil {
			return f.memoryOnly(&CorruptError{Path: path, Err: fmt.Errorf("%w; renaming it aside failed: %w", err, rerr)})
		}
		warn := &CorruptError{Path: path, Aside: aside, Err: err}
		db, _, _, err = openBolt(path, o.Now())
		if err != nil {
			return f.memoryOnly(fmt.Errorf("%w; a new file cannot be created either: %w", warn, err))
		}
		db.MaxBatchDelay = 2 * time.Millisecond
		f.db = db
		f.setUp(true)
		return f, warn
	}
	f.db = db
	// Concurrent REGISTERs share a commit; a lone one waits this long for
	// company (bbolt's default is 10 ms).
	db.MaxBatchDelay = 2 * time.Millisecond
	if err := f.cache.replace(snap); err != nil {
		db.Close()
		f.db = nil
		return f.memoryOnly(err)
	}
	f.setUp(true)
	if dropped > 0 {
		return f, fmt.Errorf("state file %s: %d unreadable records dropped", path, dropped)
	}
	return f, nil
}

// CorruptError is OpenFile's warning for a state file it could not read:
// the proxy starts with empty state.
type CorruptError struct {
	Path  string
	Aside string // where the file was moved; "" if it could not be moved
	Err   error
}

func (e *CorruptError) Error() string {
	if e.Aside == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%v; renamed to %s, starting with empty state", e.Err, e.Aside)
}

func (e *CorruptError) Unwrap() error { return e.Err }

func (f *File) setUp(up bool) {
	setUp(f.opts.Up, up) // the gauge first: whoever sees Up change sees the gauge agree
	f.up.Store(up)
}

func (f *File) memoryOnly(warn error) (*File, error) {
	f.setUp(false)
	return f, fmt.Errorf("%w; state is kept in memory only and is lost when the proxy stops", warn)
}

// openBolt opens the bbolt file and reads its live records, deleting the
// expired and the undecodable ones. A corrupt file can make bbolt panic
// while reading its pages: that is reported as an error like any other.
func openBolt(path string, now time.Time) (db *bolt.DB, snap Snapshot, dropped int, err error) {
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				db.Close()
			}
			db, snap, dropped = nil, Snapshot{}, 0
			err = fmt.Errorf("state file %s is corrupt: %v", path, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, Snapshot{}, 0, err
		}
		return nil, Snapshot{}, 0, fmt.Errorf("state file %s cannot be opened: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		bs, nb, err := loadLive[Binding](tx, bucketBindings, now)
		if err != nil {
			return err
		}
		ds, nd, err := loadLive[Dialog](tx, bucketDialogs, now)
		if err != nil {
			return err
		}
		snap.Bindings, snap.Dialogs, dropped = bs, ds, dropped+nb+nd
		return nil
	})
	if err != nil {
		db.Close()
		return nil, Snapshot{}, 0, fmt.Errorf("state file %s cannot be read: %w", path, err)
	}
	return db, snap, dropped, nil
}

func bindingKey(aor, key string) []byte { return []byte(aor + "\x00" + key) }

// WriteBindings commits c to the file, then to memory. Concurrent calls
// are committed together (bbolt's Batch: one fsync for many REGISTERs).
func (f *File) WriteBindings(ctx context.Context, c BindingChange) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	err := f.batch(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketBindings))
		for _, key := range c.Delete {
			if err := b.Delete(bindingKey(c.AOR, key)); err != nil {
				return err
			}
		}
		for _, x := range c.Put {
			x.AOR = c.AOR
			v, err := json.Marshal(x)
			if err != nil {
				return err
			}
			if err := b.Put(bindingKey(c.AOR, x.Key), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state file: write bindings of %s: %w", c.AOR, err)
	}
	return f.cache.WriteBindings(ctx, c)
}

// PutDialog commits d to the file, then to memory.
func (f *File) PutDialog(ctx context.Context, d Dialog) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("state file: encode dialog %s: %w", d.CallID, err)
	}
	if err := f.update(func(tx *bolt.Tx) error { return tx.Bucket([]byte(bucketDialogs)).Put([]byte(d.CallID), v) }); err != nil {
		return fmt.Errorf("state file: write dialog %s: %w", d.CallID, err)
	}
	return f.cache.PutDialog(ctx, d)
}

// WriteDialogs writes several dialog records and removals in one
// transaction, so one fsync serves them all: the proxy's dialog writer
// hands its queue over this way when calls are set up faster than a disk
// syncs. A Call-ID appears in at most one of the two lists.
func (f *File) WriteDialogs(ctx context.Context, puts []Dialog, dels []string) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	vals := make([][]byte, len(puts))
	for i, d := range puts {
		v, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("state file: encode dialog %s: %w", d.CallID, err)
		}
		vals[i] = v
	}
	err := f.update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketDialogs))
		for _, id := range dels {
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		for i, d := range puts {
			if err := b.Put([]byte(d.CallID), vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state file: write %d dialogs: %w", len(puts)+len(dels), err)
	}
	for _, id := range dels {
		_ = f.cache.DeleteDialog(ctx, id)
	}
	for _, d := range puts {
		_ = f.cache.PutDialog(ctx, d)
	}
	return nil
}

// DeleteDialog removes the dialog from the file, then from memory.
func (f *File) DeleteDialog(ctx context.Context, callID string) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if err := f.update(func(tx *bolt.Tx) error { return tx.Bucket([]byte(bucketDialogs)).Delete([]byte(callID)) }); err != nil {
		return fmt.Errorf("state file: delete dialog %s: %w", callID, err)
	}
	return f.cache.DeleteDialog(ctx, callID)
}

// update runs fn in a bbolt write transaction; without a file it does
// nothing (the memory-only fallback: the caller still gets its writes).
func (f *File) update(fn func(*bolt.Tx) error) error {
	if f.db == nil {
		return nil
	}
	return f.result(f.db.Update(fn))
}

// batch is update through bbolt's Batch: fn may run more than once, so it
// must only put and delete.
func (f *File) batch(fn func(*bolt.Tx) error) error {
	if f.db == nil {
		return nil
	}
	return f.result(f.db.Batch(fn))
}

// result keeps Up in step with the last write's outcome.
func (f *File) result(err error) error {
	if ok := err == nil; ok != f.up.Load() {
		f.setUp(ok)
	}
	return err
}

// ListBindings reads memory.
func (f *File) ListBindings(aor string) []Binding { return f.cache.ListBindings(aor) }

// Dialog reads memory.
func (f *File) Dialog(callID string) (Dialog, bool) { return f.cache.Dialog(callID) }

// Load reads memory.
func (f *File) Load() Snapshot { return f.cache.Load() }

// Sweep removes expired records from memory and from the file.
func (f *File) Sweep(_ context.Context, now time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	gone := f.cache.sweep(now)
	if gone.count() == 0 {
		return 0, nil
	}
	err := f.update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketBindings))
		for _, c := range gone.bindings {
			for _, key := range c.Delete {
				if err := b.Delete(bindingKey(c.AOR, key)); err != nil {
					return err
				}
			}
		}
		d := tx.Bucket([]byte(bucketDialogs))
		for _, id := range gone.dialogs {
			if err := d.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// They are expired: the next load drops them anyway.
		return gone.count(), fmt.Errorf("state file: delete expired records: %w", err)
	}
	return gone.count(), nil
}

// Subscribe: nobody else writes the file.
func (f *File) Subscribe(fn func(Event)) func() { return f.cache.Subscribe(fn) }

// Shared: one process holds the file (bbolt locks it).
func (f *File) Shared() bool { return false }

// Up reports whether the file is in use and its last write succeeded.
func (f *File) Up() bool { return f.up.Load() }

// Close closes the file.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	err := f.db.Close()
	f.db = nil
	f.up.Store(false)
	if err != nil {
		return fmt.Errorf("state file %s: close: %w", f.path, err)
	}
	return nil
}

// loadLive reads every record of a bucket, keeps the live ones and deletes
// the rest (expired, or unreadable: counted in dropped).
func loadLive[T any, P interface {
	*T
	Live(time.Time) bool
}](tx *bolt.Tx, bucket string, now time.Time) (live []T, dropped int, err error) {
	b, err := tx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return nil, 0, err
	}
	var stale [][]byte
	err = b.ForEach(func(k, v []byte) error {
		var rec T
		switch err := json.Unmarshal(v, &rec); {
		case err != nil:
			dropped++
		case P(&rec).Live(now):
			live = append(live, rec)
			return nil
		}
		stale = append(stale, k)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return nil, 0, err
		}
	}
	return live, dropped, nil
}
