package limits

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"sync"
	"time"
)

const (
	// maxShards bounds lock striping: 64 mutexes keep a many-core box from
	// queueing on one lock, and an attacker hammering one source holds up
	// only the 1/64 of other sources that share its shard.
	maxShards = 64
	// minPerShard keeps small tables in few shards.
	minPerShard = 256
	// maxMaxSources bounds MaxSources (about 600 MB of rate buckets), which
	// keeps set numbers within the 32 bits of the hash that pick them.
	maxMaxSources = 1 << 24
	// ways is how many entries share a set: a source can only live in the
	// 8 slots of the set its hash picks, and evicting means choosing among
	// those 8.
	ways = 8
)

// table is a bounded map from source to E: a set-associative cache, as CPU
// caches are built. Its slots are allocated once, split into shards (one
// lock each) and, within a shard, into sets of 8; a source's hash picks its
// shard and set. Looking up a source scans the 8 keys of its set, so lookups
// cost the same however full the table is and whatever churn an attacker
// causes, nothing is allocated after the first use of a shard, and memory is
// fixed by MaxSources.
//
// A source new to a full set takes the slot of the entry whose loss matters
// least, as ranked by retain. Entries are never removed otherwise: an idle
// entry costs nothing until its slot is wanted. The seeds of the hash are
// random per table, so nobody outside can aim at one set.
type table[E any] struct {
	shards []shard[E]
	shift  uint // hash >> shift picks the shard
	sets   uint64
	ways   int // at most the constant ways; fewer for a tiny table
	seed0  uint64
	seed1  uint64
	// retain ranks an entry at now for eviction: 0 or less means it holds
	// nothing worth keeping; otherwise the lowest ranked in the set goes.
	retain func(e *E, now int64) int64
	clock  func() time.Time
	epoch  time.Time // times are kept as nanoseconds since epoch
}

type shard[E any] struct {
	mu    sync.Mutex
	slots []slot[E] // sets*ways, set i at [i*ways, (i+1)*ways); nil until used
	used  int
	// Keep the next shard's mutex off the cache lines this one's users write.
	_ [64]byte
}

type slot[E any] struct {
	key  sourceKey
	used bool
	val  E
}

func newTable[E any](maxSources int, clock func() time.Time, retain func(*E, int64) int64) *table[E] {
	n := 1
	for n < maxShards && n*2*minPerShard <= maxSources {
		n *= 2
	}
	w := min(ways, maxSources)
	return &table[E]{
		shards: make([]shard[E], n),
		shift:  uint(64 - bits.TrailingZeros(uint(n))),
		sets:   uint64(max(1, maxSources/n/w)),
		ways:   w,
		seed0:  rand.Uint64(),
		seed1:  rand.Uint64(),
		retain: retain,
		clock:  clock,
		epoch:  clock(),
	}
}

// capacity is how many sources the table can hold: at most MaxSources.
func (t *table[E]) capacity() int {
	return len(t.shards) * int(t.sets) * t.ways
}

// now reads the clock as nanoseconds since the table was made. Durations
// from time.Time.Sub use the monotonic clock when both readings carry it.
func (t *table[E]) now() int64 {
	return int64(t.clock().Sub(t.epoch))
}

// locate returns k's shard and the first slot of its set in that shard. The
// top bits of the hash pick the shard (x>>64 is 0 with one shard), the low
// 32 the set.
func (t *table[E]) locate(k sourceKey) (*shard[E], int) {
	h := k.hash(t.seed0, t.seed1)
	set := (h & 0xffffffff) * t.sets >> 32
	return &t.shards[h>>t.shift], int(set) * t.ways
}

// len counts the sources held.
func (t *table[E]) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += s.used
		s.mu.Unlock()
	}
	return n
}

// get returns k's entry in the set at base, or nil. The caller holds s.mu.
func (t *table[E]) get(s *shard[E], base int, k sourceKey) *E {
	if s.slots == nil {
		return nil
	}
	set := s.slots[base : base+t.ways]
	for i := range set {
		if set[i].used && set[i].key == k {
			return &set[i].val
		}
	}
	return nil
}

// getOrAdd returns k's entry in the set at base, adding it when absent
// (fresh is then true). A fresh entry is a reused slot: the caller must set
// every field, and may keep buffers the previous owner left. The caller
// holds s.mu.
func (t *table[E]) getOrAdd(s *shard[E], base int, k sourceKey, now int64) (e *E, fresh bool) {
	if s.slots == nil {
		s.slots = make([]slot[E], int(t.sets)*t.ways)
	}
	set := s.slots[base : base+t.ways]
	for i := range set {
		if set[i].used && set[i].key == k {
			return &set[i].val, false
		}
	}
	i := t.vacancy(set, now)
	if !set[i].used {
		set[i].used = true
		s.used++
	}
	set[i].key = k
	return &set[i].val, true
}

// vacancy returns the slot of set a new source takes: a free one, or one
// whose entry holds nothing, or else the lowest ranked.
func (t *table[E]) vacancy(set []slot[E], now int64) int {
	victim, lowest := 0, int64(math.MaxInt64)
	for i := range set {
		if !set[i].used {
			return i
		}
		r := t.retain(&set[i].val, now)
		if r <= 0 {
			return i
		}
		if r < lowest {
			victim, lowest = i, r
		}
	}
	return victim
}
