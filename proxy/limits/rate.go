package limits

import (
	"fmt"
	"math"
	"net/netip"
	"time"
)

// RateConfig configures a RateLimiter. Zero fields take the defaults given.
type RateConfig struct {
	// Rate is the sustained requests per second one source may send.
	// Default DefaultRate.
	Rate float64
	// Burst is how many requests a source that has been quiet may send at
	// once. Default: five seconds' worth of Rate (DefaultBurst at DefaultRate).
	Burst int
	// MaxSources bounds how many sources are tracked at once, and so the
	// memory used (about 36 bytes a source). Default DefaultMaxSources.
	MaxSources int
	// Exempt lists trusted prefixes (peers) that are never limited.
	// IPv4-mapped IPv6 prefixes match IPv4 addresses.
	Exempt []netip.Prefix
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// RateLimiter is a per-source token bucket: each source may send Burst
// requests at once and Rate requests per second after that. It is safe for
// concurrent use; Allow takes one of 64 shard locks and does not allocate
// for a source it already tracks. A nil *RateLimiter allows everything.
type RateLimiter struct {
	t        *table[rateEntry]
	interval int64 // nanoseconds between requests at Rate
	window   int64 // Burst * interval: how far ahead a source may borrow
	exempt   exemptSet
}

// rateEntry is a bucket in GCRA form (the generic cell rate algorithm, the
// token bucket kept as one number): tat is the theoretical arrival time, when
// the bucket will be full again. tat - now is the debt; a source may send
// while its debt stays within window.
type rateEntry struct {
	tat int64
}

// NewRateLimiter validates cfg, fills in defaults and returns a limiter.
func NewRateLimiter(cfg RateConfig) (*RateLimiter, error) {
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if math.IsNaN(cfg.Rate) || cfg.Rate < 0 || cfg.Rate > 1e9 {
		return nil, fmt.Errorf("limits: rate %v: must be above 0 and at most 1e9 per second", cfg.Rate)
	}
	if cfg.Burst == 0 {
		cfg.Burst = max(1, int(math.Ceil(5*cfg.Rate)))
	}
	if cfg.Burst < 0 {
		return nil, fmt.Errorf("limits: burst %d: must be at least 1", cfg.Burst)
	}
	if cfg.MaxSources == 0 {
		cfg.MaxSources = DefaultMaxSources
	}
	if cfg.MaxSources < 0 || cfg.MaxSources > maxMaxSources {
		return nil, fmt.Errorf("limits: max sources %d: must be 1 to %d", cfg.MaxSources, maxMaxSources)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	interval := max(1, math.Round(float64(time.Second)/cfg.Rate))
	if interval*float64(cfg.Burst) > 1<<62 {
		return nil, fmt.Errorf("limits: rate %v with burst %d: the burst spans more than a century", cfg.Rate, cfg.Burst)
	}
	return &RateLimiter{
		t:        newTable(cfg.MaxSources, cfg.Now, rateRetain),
		interval: int64(interval),
		window:   int64(interval) * int64(cfg.Burst),
		exempt:   newExemptSet(cfg.Exempt),
	}, nil
}

// Allow reports whether src may send a request now, and takes one token if
// so. When it may not, retryAfter is how long until it may; SIP's
// Retry-After header wants that rounded up to whole seconds.
func (l *RateLimiter) Allow(src netip.Addr) (ok bool, retryAfter time.Duration) {
	if l == nil || l.exempt.contains(src) {
		return true, 0
	}
	k := keyOf(src)
	now := l.t.now()
	s, base := l.t.locate(k)
	s.mu.Lock()
	e, fresh := l.t.getOrAdd(s, base, k, now)
	if fresh || e.tat < now {
		e.tat = now // a full bucket
	}
	next := e.tat + l.interval
	if wait := next - l.window - now; wait > 0 {
		s.mu.Unlock()
		return false, time.Duration(wait)
	}
	e.tat = next
	s.mu.Unlock()
	return true, 0
}

// Len returns how many sources are tracked (at most MaxSources).
func (l *RateLimiter) Len() int {
	if l == nil {
		return 0
	}
	return l.t.len()
}

// rateRetain ranks a bucket for eviction by its debt. A full bucket (no
// debt) is the same as no bucket, so forgetting it loses nothing; among
// buckets in debt the smallest debt is forgiven first, which keeps the
// deep debt of a source that floods.
func rateRetain(e *rateEntry, now int64) int64 {
	return e.tat - now
}
