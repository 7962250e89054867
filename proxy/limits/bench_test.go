package limits

import (
	"net/netip"
	"sync/atomic"
	"testing"
)

// benchSources are the distinct sources the parallel benchmarks cycle over:
// many more than shards, as at an edge proxy with many phones.
func benchSources(n int) []netip.Addr {
	srcs := make([]netip.Addr, n)
	for i := range srcs {
		if i%4 == 3 {
			srcs[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i), 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
		} else {
			srcs[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		}
	}
	return srcs
}

// BenchmarkRateLimiterAllow is the steady state: known sources, real clock.
func BenchmarkRateLimiterAllow(b *testing.B) {
	l, err := NewRateLimiter(RateConfig{Rate: 1e9, Burst: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	srcs := benchSources(4096)
	for _, s := range srcs {
		l.Allow(s)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l.Allow(srcs[i&4095])
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Uint32
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(997))
			for pb.Next() {
				l.Allow(srcs[i&4095])
				i++
			}
		})
	})
	b.Run("parallel-one-source", func(b *testing.B) {
		// Every goroutine on one source: one shard's lock, as when an
		// attacker floods from one address.
		b.ReportAllocs()
		src := srcs[0]
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow(src)
			}
		})
	})
}

// BenchmarkRateLimiterSpoofed is a flood from sources never seen before into
// a full table: every call evicts.
func BenchmarkRateLimiterSpoofed(b *testing.B) {
	l, err := NewRateLimiter(RateConfig{Rate: 10, Burst: 20, MaxSources: 100_000})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 200_000 {
		l.Allow(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	b.ReportAllocs()
	var next atomic.Uint32
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			l.Allow(netip.AddrFrom4([4]byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}))
		}
	})
}

// BenchmarkFailureTrackerBlocked is the question asked of every request
// bearing credentials: mostly about sources with no failures.
func BenchmarkFailureTrackerBlocked(b *testing.B) {
	f, err := NewFailureTracker(FailureConfig{})
	if err != nil {
		b.Fatal(err)
	}
	srcs := benchSources(4096)
	for _, s := range srcs[:64] {
		f.Fail(s)
	}
	b.ReportAllocs()
	var next atomic.Uint32
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(997))
		for pb.Next() {
			f.Blocked(srcs[i&4095])
			i++
		}
	})
}

// BenchmarkConnLimiterAcquireRelease is a connection's admission and end.
func BenchmarkConnLimiterAcquireRelease(b *testing.B) {
	l := NewConnLimiter(DefaultConnsPerSource)
	srcs := benchSources(4096)
	b.ReportAllocs()
	var next atomic.Uint32
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(997))
		for pb.Next() {
			src := srcs[i&4095]
			if l.Acquire(src) {
				l.Release(src)
			}
			i++
		}
	})
}
