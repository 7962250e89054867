package limits

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand; it is safe for concurrent use.
type fakeClock struct {
	base time.Time
	ns   atomic.Int64 // since base
}

func newFakeClock() *fakeClock {
	return &fakeClock{base: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time { return c.base.Add(time.Duration(c.ns.Load())) }

func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func prefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func TestKeyOf(t *testing.T) {
	tests := []struct {
		name string
		a, b string // "" is the invalid Addr
		same bool
	}{
		{"same IPv4", "192.0.2.1", "192.0.2.1", true},
		{"different IPv4", "192.0.2.1", "192.0.2.2", false},
		{"IPv4-mapped is the IPv4 address", "::ffff:192.0.2.1", "192.0.2.1", true},
		{"one IPv6 /64", "2001:db8::1", "2001:db8::ffff:ffff:ffff:ffff", true},
		{"neighbouring IPv6 /64s", "2001:db8::1", "2001:db8:0:1::1", false},
		{"zones are ignored", "fe80::1%eth0", "fe80::2%eth1", true},
		{"IPv4 is not the IPv6 /64 holding its mapped form", "192.0.2.1", "::ffff:0:0", false},
		{"invalid is one source", "", "", true},
		{"invalid is not 0.0.0.0", "", "0.0.0.0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a, b netip.Addr
			if tt.a != "" {
				a = netip.MustParseAddr(tt.a)
			}
			if tt.b != "" {
				b = netip.MustParseAddr(tt.b)
			}
			if got := keyOf(a) == keyOf(b); got != tt.same {
				t.Errorf("keyOf(%v) == keyOf(%v) is %v, want %v", a, b, got, tt.same)
			}
		})
	}
}

func TestExemptSet(t *testing.T) {
	set := newExemptSet(prefixes(t, "10.0.0.0/8", "::ffff:192.0.2.0/120", "2001:db8::/32"))
	tests := []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true},
		{"::ffff:10.1.2.3", true},
		{"11.0.0.1", false},
		{"192.0.2.200", true}, // matched by the IPv4-mapped prefix
		{"192.0.3.1", false},
		{"2001:db8:1::1", true},
		{"2001:db8:1::1%eth0", true},
		{"2001:db9::1", false},
	}
	for _, tt := range tests {
		if got := set.contains(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("contains(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if set.contains(netip.Addr{}) {
		t.Error("the invalid Addr is exempt")
	}
	if exemptSet(nil).contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("an empty set exempts")
	}
}

// TestTableCapacity checks that the table never holds more than asked,
// nor much less.
func TestTableCapacity(t *testing.T) {
	for _, maxSources := range []int{1, 7, 8, 64, 511, 512, 1000, 8191, 50_000, 100_000, 1 << 20} {
		tab := newTable(maxSources, time.Now, rateRetain)
		if c := tab.capacity(); c > maxSources || c <= maxSources-len(tab.shards)*tab.ways {
			t.Errorf("MaxSources %d: %d shards of %d sets of %d hold %d", maxSources, len(tab.shards), tab.sets, tab.ways, c)
		}
		if len(tab.shards) > maxShards {
			t.Errorf("MaxSources %d: %d shards", maxSources, len(tab.shards))
		}
	}
}
