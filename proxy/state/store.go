package state

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Store holds bindings and dialogs. Reads are served from memory in this
// process and never block on the backend; writes return once the backend
// (the file, Redis) holds them, and an error when it could not take them,
// in which case the local state is unchanged too. All methods are safe for
// concurrent use; writes of different AORs (or Call-IDs) proceed together
// (the file backend commits them in one fsync), while writes of the same
// one must be ordered by the caller (the registrar locks per AOR).
type Store interface {
	// WriteBindings applies one REGISTER's change to an address of record
	// as a whole.
	WriteBindings(ctx context.Context, c BindingChange) error
	// ListBindings returns the live bindings of an AOR, in no particular
	// order. It is local: no network, no disk.
	ListBindings(aor string) []Binding

	// PutDialog writes a dialog record (replacing one of the same Call-ID).
	PutDialog(ctx context.Context, d Dialog) error
	// DeleteDialog removes the record of a dialog.
	DeleteDialog(ctx context.Context, callID string) error
	// Dialog returns the live record of a Call-ID. Local, like ListBindings.
	Dialog(callID string) (Dialog, bool)

	// Load returns every live record: what an owner starting up loads.
	Load() Snapshot
	// Sweep removes the records expired at now, from memory and from the
	// backend where the backend does not expire them itself, and returns
	// how many it removed from memory.
	Sweep(ctx context.Context, now time.Time) (int, error)

	// Subscribe registers fn for the changes this store learns of from
	// other instances (the redis backend; the others have none). Events
	// are delivered one at a time, in the backend's order; fn must not
	// block for long. The returned function unsubscribes.
	Subscribe(fn func(Event)) (cancel func())

	// Shared reports whether other instances write this store too (redis):
	// then records carry the instance that wrote them.
	Shared() bool
	// Up reports whether the backend takes writes: false while Redis is
	// unreachable, or when a state file could not be opened and the store
	// runs on memory alone.
	Up() bool
	// Close releases the backend; the store must not be used afterwards.
	Close() error
}

// Options are what every backend needs besides its own settings.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time // nil: time.Now
	// Instance names this proxy instance in the records it writes.
	Instance string
	// Timeout bounds one backend operation (default 1s): a slow backend
	// fails the write rather than hold the request.
	Timeout time.Duration
	// Up, if set, is kept at 1 while the backend takes writes and 0 when
	// not (sipproxy_state_backend_up).
	Up interface{ Set(float64) }
}

// DefaultTimeout bounds one backend operation when Options.Timeout is 0.
const DefaultTimeout = time.Second

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return o
}

// PutBinding writes one binding.
func PutBinding(ctx context.Context, s Store, b Binding) error {
	return s.WriteBindings(ctx, BindingChange{AOR: b.AOR, Put: []Binding{b}})
}

// DeleteBinding removes one binding of an AOR.
func DeleteBinding(ctx context.Context, s Store, aor, key string) error {
	return s.WriteBindings(ctx, BindingChange{AOR: aor, Delete: []string{key}})
}

// feed fans events out to subscribers.
type feed struct {
	mu   sync.Mutex
	next int
	subs map[int]func(Event)
}

func (f *feed) subscribe(fn func(Event)) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = make(map[int]func(Event))
	}
	id := f.next
	f.next++
	f.subs[id] = fn
	return func() {
		f.mu.Lock()
		delete(f.subs, id)
		f.mu.Unlock()
	}
}

func (f *feed) publish(e Event) {
	f.mu.Lock()
	subs := make([]func(Event), 0, len(f.subs))
	for _, fn := range f.subs {
		subs = append(subs, fn)
	}
	f.mu.Unlock()
	for _, fn := range subs {
		fn(e)
	}
}

// setUp sets an optional gauge to 1 or 0.
func setUp(g interface{ Set(float64) }, up bool) {
	if g == nil {
		return
	}
	if up {
		g.Set(1)
	} else {
		g.Set(0)
	}
}
