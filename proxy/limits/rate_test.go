package limits

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRateLimiterAllow(t *testing.T) {
	type step struct {
		advance time.Duration // before the step
		src     string
		times   int // 0 means once
		ok      bool
		retry   time.Duration
	}
	const ms = time.Millisecond
	tests := []struct {
		name  string
		cfg   RateConfig
		steps []step
	}{
		{
			name: "burst, then the steady rate",
			cfg:  RateConfig{Rate: 10, Burst: 3},
			steps: []step{
				{src: "192.0.2.1", times: 3, ok: true},
				{src: "192.0.2.1", ok: false, retry: 100 * ms},
				{advance: 100 * ms, src: "192.0.2.1", ok: true},
				{src: "192.0.2.1", ok: false, retry: 100 * ms},
				{advance: 40 * ms, src: "192.0.2.1", ok: false, retry: 60 * ms},
				{advance: 60 * ms, src: "192.0.2.1", ok: true},
				{advance: 100 * ms, src: "192.0.2.1", ok: true},
				{advance: 100 * ms, src: "192.0.2.1", ok: true},
				{src: "192.0.2.1", ok: false, retry: 100 * ms},
			},
		},
		{
			name: "refill over time, capped at the burst",
			cfg:  RateConfig{Rate: 10, Burst: 3},
			steps: []step{
				{src: "192.0.2.1", times: 3, ok: true},
				{advance: 200 * ms, src: "192.0.2.1", times: 2, ok: true},
				{src: "192.0.2.1", ok: false, retry: 100 * ms},
				{advance: time.Hour, src: "192.0.2.1", times: 3, ok: true},
				{src: "192.0.2.1", ok: false, retry: 100 * ms},
			},
		},
		{
			name: "denials do not deepen the debt of a flooding source",
			cfg:  RateConfig{Rate: 10, Burst: 3},
			steps: []step{
				{src: "192.0.2.1", times: 3, ok: true},
				{src: "192.0.2.1", times: 1000, ok: false, retry: 100 * ms},
				{advance: 100 * ms, src: "192.0.2.1", ok: true},
			},
		},
		{
			name: "sources are limited apart",
			cfg:  RateConfig{Rate: 10, Burst: 3},
			steps: []step{
				{src: "192.0.2.1", times: 3, ok: true},
				{src: "192.0.2.1", ok: false, retry: 100 * ms},
				{src: "192.0.2.2", times: 3, ok: true},
				{src: "192.0.2.2", ok: false, retry: 100 * ms},
				{src: "2001:db8::1", times: 3, ok: true},
				{advance: 50 * ms, src: "192.0.2.1", ok: false, retry: 50 * ms},
			},
		},
		{
			name: "exempt prefixes are not limited",
			cfg:  RateConfig{Rate: 1, Burst: 1, Exempt: prefixes(t, "10.0.0.0/8", "::ffff:192.0.2.0/120")},
			steps: []step{
				{src: "10.1.2.3", times: 1000, ok: true},
				{src: "::ffff:10.1.2.3", times: 1000, ok: true},
				{src: "192.0.2.7", times: 1000, ok: true},
				{src: "198.51.100.1", ok: true},
				{src: "198.51.100.1", ok: false, retry: time.Second},
			},
		},
		{
			name: "an IPv6 /64 is one source",
			cfg:  RateConfig{Rate: 1, Burst: 3},
			steps: []step{
				{src: "2001:db8::1", times: 2, ok: true},
				{src: "2001:db8::ffff:1", ok: true},
				{src: "2001:db8::2", ok: false, retry: time.Second},
				{src: "2001:db8:0:1::1", ok: true},
			},
		},
		{
			name: "an IPv4-mapped address is the IPv4 address",
			cfg:  RateConfig{Rate: 1, Burst: 2},
			steps: []step{
				{src: "192.0.2.1", times: 2, ok: true},
				{src: "::ffff:192.0.2.1", ok: false, retry: time.Second},
			},
		},
		{
			name: "a rate below one per second",
			cfg:  RateConfig{Rate: 0.5, Burst: 1},
			steps: []step{
				{src: "192.0.2.1", ok: true},
				{src: "192.0.2.1", ok: false, retry: 2 * time.Second},
				{advance: 1500 * ms, src: "192.0.2.1", ok: false, retry: 500 * ms},
				{advance: 500 * ms, src: "192.0.2.1", ok: true},
			},
		},
		{
			name: "the default burst is five seconds of rate",
			cfg:  RateConfig{Rate: 2},
			steps: []step{
				{src: "192.0.2.1", times: 10, ok: true},
				{src: "192.0.2.1", ok: false, retry: 500 * ms},
			},
		},
		{
			name: "the defaults",
			cfg:  RateConfig{},
			steps: []step{
				{src: "192.0.2.1", times: DefaultBurst, ok: true},
				{src: "192.0.2.1", ok: false, retry: time.Second / DefaultRate},
				{advance: time.Second, src: "192.0.2.1", times: DefaultRate, ok: true},
				{src: "192.0.2.1", ok: false, retry: time.Second / DefaultRate},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			tt.cfg.Now = clock.Now
			l, err := NewRateLimiter(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				clock.Advance(s.advance)
				src := netip.MustParseAddr(s.src)
				for n := range max(1, s.times) {
					ok, retry := l.Allow(src)
					if ok != s.ok || retry != s.retry {
						t.Fatalf("step %d (%s), call %d: Allow = %v, %v; want %v, %v", i, s.src, n+1, ok, retry, s.ok, s.retry)
					}
				}
			}
		})
	}
}

func TestNewRateLimiterRejects(t *testing.T) {
	tests := []struct {
		cfg  RateConfig
		want string
	}{
		{RateConfig{Rate: -1}, "rate -1"},
		{RateConfig{Rate: 2e9}, "rate 2e+09"},
		{RateConfig{Rate: 1e-12, Burst: 1 << 20}, "century"},
		{RateConfig{Burst: -1}, "burst -1"},
		{RateConfig{MaxSources: -5}, "max sources -5"},
		{RateConfig{MaxSources: 1 << 25}, "max sources 33554432"},
	}
	for _, tt := range tests {
		_, err := NewRateLimiter(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewRateLimiter(%+v) = %v, want an error with %q", tt.cfg, err, tt.want)
		}
	}
}

func TestRateLimiterNil(t *testing.T) {
	var l *RateLimiter
	if ok, _ := l.Allow(netip.MustParseAddr("192.0.2.1")); !ok || l.Len() != 0 {
		t.Error("a nil limiter limits")
	}
}

// TestRateLimiterSpoofedFlood sends a million requests (a tenth with -short)
// from distinct spoofed sources, one a microsecond, while an attacker floods
// from one source and ten good sources send at half the rate. The table must
// stay within MaxSources, the attacker must not be forgiven by the churn, and
// the good sources must never be refused.
func TestRateLimiterSpoofedFlood(t *testing.T) {
	t.Parallel()
	const (
		maxSources = 50_000
		rate       = 10
		burst      = 20
	)
	spoofed := 1_000_000
	if testing.Short() {
		spoofed = 100_000
	}
	clock := newFakeClock()
	l, err := NewRateLimiter(RateConfig{Rate: rate, Burst: burst, MaxSources: maxSources, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	attacker := netip.MustParseAddr("198.51.100.1")
	var good []netip.Addr
	for i := range 10 {
		good = append(good, netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}))
	}
	attackerAllowed := 0
	for i := range spoofed {
		clock.Advance(time.Microsecond)
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if ok, _ := l.Allow(src); !ok {
			t.Fatalf("spoofed source %v, first request: refused", src)
		}
		if i%1000 == 0 { // every millisecond
			if ok, _ := l.Allow(attacker); ok {
				attackerAllowed++
			}
		}
		if i%200_000 == 0 { // every 200ms, half the rate
			for _, g := range good {
				if ok, retry := l.Allow(g); !ok {
					t.Fatalf("after %d spoofed sources: good source %v refused (retry %v)", i, g, retry)
				}
			}
		}
		if i%100_000 == 0 {
			if n := l.Len(); n > maxSources {
				t.Fatalf("after %d spoofed sources: %d tracked, more than %d", i, n, maxSources)
			}
		}
	}
	if n := l.Len(); n > maxSources || n < maxSources*9/10 {
		t.Errorf("%d sources tracked, want at most %d (and the table nearly full)", n, maxSources)
	}
	// The attacker may have had its burst and the rate over the time that
	// passed (one microsecond a spoofed source), no more.
	elapsed := time.Duration(spoofed) * time.Microsecond
	if limit := burst + int(rate*elapsed.Seconds()) + 1; attackerAllowed > limit {
		t.Errorf("attacker allowed %d times in %v, more than %d: the churn forgave it", attackerAllowed, elapsed, limit)
	}
}

// TestRateLimiterConcurrent hammers a few sources from many goroutines with
// the clock stopped: each source must get exactly its burst.
func TestRateLimiterConcurrent(t *testing.T) {
	const burst = 50
	clock := newFakeClock()
	l, err := NewRateLimiter(RateConfig{Rate: 1, Burst: burst, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	srcs := []netip.Addr{
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:1::1"),
	}
	allowed := make([]int, len(srcs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			mine := make([]int, len(srcs))
			for range 100 {
				for i, src := range srcs {
					if ok, _ := l.Allow(src); ok {
						mine[i]++
					}
				}
			}
			mu.Lock()
			for i := range mine {
				allowed[i] += mine[i]
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for i, n := range allowed {
		if n != burst {
			t.Errorf("%v: allowed %d times, want %d", srcs[i], n, burst)
		}
	}
}

func TestRateLimiterAllowDoesNotAllocate(t *testing.T) {
	l, err := NewRateLimiter(RateConfig{Rate: 1e6, Burst: 1e6, Exempt: prefixes(t, "10.0.0.0/8")})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"192.0.2.1", "2001:db8::1", "10.0.0.1"} {
		src := netip.MustParseAddr(s)
		l.Allow(src)
		if n := testing.AllocsPerRun(1000, func() { l.Allow(src) }); n != 0 {
			t.Errorf("Allow(%s): %v allocations, want 0", s, n)
		}
	}
}
