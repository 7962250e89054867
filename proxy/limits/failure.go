package limits

import (
	"fmt"
	"math"
	"net/netip"
	"time"
)

// FailureConfig configures a FailureTracker. Zero fields take the defaults
// given.
type FailureConfig struct {
	// MaxFailures failures within Window block a source. Default
	// DefaultMaxFailures; at most 100.
	MaxFailures int
	// Window is the span failures are counted within. Default
	// DefaultFailureWindow; at most 30 days.
	Window time.Duration
	// BlockFor is how long a blocked source stays blocked. Default
	// DefaultBlockFor; at most 30 days.
	BlockFor time.Duration
	// MaxSources bounds how many sources are tracked at once, and so the
	// memory used (about 110 bytes a source at 5 failures). Default
	// DefaultFailureSources.
	MaxSources int
	// Exempt lists trusted prefixes (peers) that are never blocked, such as
	// a gateway that relays many users' credentials from one address.
	Exempt []netip.Prefix
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// maxSpan bounds Window and BlockFor, which keeps eviction ranks in range.
const maxSpan = 30 * 24 * time.Hour

// FailureTracker throttles digest brute force by source: a source with
// MaxFailures failed authentications within Window is blocked for BlockFor.
// It is safe for concurrent use and does not allocate on Blocked or Succeed.
// A nil *FailureTracker blocks nobody.
type FailureTracker struct {
	t        *table[failEntry]
	max      int   // MaxFailures
	window   int64 // nanoseconds
	blockFor int64 // nanoseconds
	exempt   exemptSet
}

// failEntry is one source's record.
type failEntry struct {
	until    int64   // blocked until then; not blocked when until <= now
	forgiven int64   // when Succeed last cleared failures; never: longAgo
	recent   []int64 // ring of the latest failure times, len MaxFailures-1
	head     int32   // oldest failure in recent
	n        int32   // failures in recent
}

// longAgo is a time before any window; now - longAgo cannot overflow.
const longAgo = math.MinInt64 / 4

// blockedRank puts blocked sources above all others for eviction.
const blockedRank = 1 << 61

// NewFailureTracker validates cfg, fills in defaults and returns a tracker.
func NewFailureTracker(cfg FailureConfig) (*FailureTracker, error) {
	if cfg.MaxFailures == 0 {
		cfg.MaxFailures = DefaultMaxFailures
	}
	if cfg.MaxFailures < 0 || cfg.MaxFailures > 100 {
		return nil, fmt.Errorf("limits: max failures %d: must be 1 to 100", cfg.MaxFailures)
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultFailureWindow
	}
	if cfg.Window < 0 || cfg.Window > maxSpan {
		return nil, fmt.Errorf("limits: failure window %v: must be above 0 and at most %v", cfg.Window, maxSpan)
	}
	if cfg.BlockFor == 0 {
		cfg.BlockFor = DefaultBlockFor
	}
	if cfg.BlockFor < 0 || cfg.BlockFor > maxSpan {
		return nil, fmt.Errorf("limits: block for %v: must be above 0 and at most %v", cfg.BlockFor, maxSpan)
	}
	if cfg.MaxSources == 0 {
		cfg.MaxSources = DefaultFailureSources
	}
	if cfg.MaxSources < 0 || cfg.MaxSources > maxMaxSources {
		return nil, fmt.Errorf("limits: max sources %d: must be 1 to %d", cfg.MaxSources, maxMaxSources)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	f := &FailureTracker{
		max:      cfg.MaxFailures,
		window:   int64(cfg.Window),
		blockFor: int64(cfg.BlockFor),
		exempt:   newExemptSet(cfg.Exempt),
	}
	f.t = newTable(cfg.MaxSources, cfg.Now, f.retain)
	return f, nil
}

// Blocked reports whether src is blocked and, if so, for how much longer.
// Ask before challenging or checking credentials: a blocked source gets no
// further guesses.
func (f *FailureTracker) Blocked(src netip.Addr) (bool, time.Duration) {
	if f == nil || f.exempt.contains(src) {
		return false, 0
	}
	k := keyOf(src)
	now := f.t.now()
	s, base := f.t.locate(k)
	s.mu.Lock()
	var left int64
	if e := f.t.get(s, base, k); e != nil {
		left = e.until - now
	}
	s.mu.Unlock()
	if left > 0 {
		return true, time.Duration(left)
	}
	return false, 0
}

// Fail records a failed authentication from src and reports whether src is
// blocked now, either by this failure (the MaxFailures-th within Window) or
// already. Failures while blocked do not extend the block.
func (f *FailureTracker) Fail(src netip.Addr) (nowBlocked bool) {
	if f == nil || f.exempt.contains(src) {
		return false
	}
	k := keyOf(src)
	now := f.t.now()
	s, base := f.t.locate(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, fresh := f.t.getOrAdd(s, base, k, now)
	if fresh {
		e.until, e.forgiven, e.head, e.n = 0, longAgo, 0, 0
		if stride := f.max - 1; len(e.recent) != stride {
			e.recent = make([]int64, stride) // once per slot: reused slots keep it
		}
	}
	if e.until > now {
		return true
	}
	// recent holds the previous MaxFailures-1 failures, oldest at head: if
	// it is full and the oldest is within Window, so are all of them.
	stride := int32(len(e.recent))
	if e.n == stride && (stride == 0 || now-e.recent[e.head] < f.window) {
		e.until = now + f.blockFor
		e.head, e.n = 0, 0
		return true
	}
	if e.n < stride {
		e.recent[(e.head+e.n)%stride] = now
		e.n++
	} else {
		e.recent[e.head] = now
		e.head = (e.head + 1) % stride
	}
	return false
}

// Succeed records a successful authentication from src: it clears src's
// failures, but only once per Window. Someone with one valid account could
// otherwise interleave their own successes with guesses at other accounts
// and never be blocked; with the limit they get at most 2*MaxFailures-1
// guesses per Window before the block. A success never lifts a block.
func (f *FailureTracker) Succeed(src netip.Addr) {
	if f == nil || f.exempt.contains(src) {
		return
	}
	k := keyOf(src)
	now := f.t.now()
	s, base := f.t.locate(k)
	s.mu.Lock()
	if e := f.t.get(s, base, k); e != nil && e.until <= now && f.live(e, now) > 0 && now-e.forgiven >= f.window {
		e.head, e.n = 0, 0
		e.forgiven = now
	}
	s.mu.Unlock()
}

// Len returns how many sources are tracked (at most MaxSources).
func (f *FailureTracker) Len() int {
	if f == nil {
		return 0
	}
	return f.t.len()
}

// live counts e's failures within Window of now.
func (f *FailureTracker) live(e *failEntry, now int64) int64 {
	var n int64
	for i := range e.n {
		if now-e.recent[(e.head+i)%int32(len(e.recent))] < f.window {
			n++
		}
	}
	return n
}

// retain ranks a record for eviction. One with no failures within Window,
// no block and no recent forgiveness says nothing and goes first. Blocked
// sources are kept above all others, so that a flood of spoofed failures
// cannot unblock an attacker by pushing it out; of two blocks, the longer
// one left is kept. Otherwise the source nearer to being blocked (more live
// failures, then the more recent last failure) is kept.
func (f *FailureTracker) retain(e *failEntry, now int64) int64 {
	if e.until > now {
		return blockedRank + (e.until - now)
	}
	live := f.live(e, now)
	if live == 0 {
		if now-e.forgiven < f.window {
			return 1 // keep the once-per-window limit on forgiveness if we can
		}
		return 0
	}
	newest := e.recent[(e.head+e.n-1)%int32(len(e.recent))]
	return 1 + live*(f.window+1) + (f.window - (now - newest))
}
