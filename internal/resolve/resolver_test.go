package resolve

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
)

func uri(t *testing.T, s string) sip.Uri {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return u
}

func keys(eps []Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.Key()
	}
	return out
}

// testZone holds the names the table tests resolve.
func testZone(t *testing.T) *zone {
	z := &zone{}
	z.add(t,
		// A pool with SRV for TLS: two targets at priority 10, one spare at 20.
		"_sips._tcp.pool.test. 60 IN SRV 10 60 5061 a.test.",
		"_sips._tcp.pool.test. 60 IN SRV 10 40 5062 b.test.",
		"_sips._tcp.pool.test. 60 IN SRV 20 0 5063 c.test.",
		"pool.test. 60 IN A 10.0.9.9",
		"a.test. 60 IN A 10.0.0.1",
		"a.test. 60 IN AAAA 2001:db8::1",
		"b.test. 60 IN A 10.0.0.2",
		"b.test. 60 IN A 10.0.0.3",
		"c.test. 60 IN A 10.0.0.4",
		// Only TCP, only UDP.
		"_sip._tcp.tcponly.test. 60 IN SRV 0 0 5070 a.test.",
		"_sip._udp.udponly.test. 60 IN SRV 0 0 5080 b.test.",
		// No SRV at all.
		"plain.test. 60 IN A 10.0.1.1",
		"plain.test. 60 IN AAAA 2001:db8::11",
		// "." : decidedly not offered over TLS, offered over TCP.
		"_sips._tcp.dot.test. 60 IN SRV 0 0 0 .",
		"_sip._tcp.dot.test. 60 IN SRV 0 0 5090 c.test.",
		// One SRV target that does not resolve.
		"_sip._tcp.half.test. 60 IN SRV 10 0 5060 missing.test.",
		"_sip._tcp.half.test. 60 IN SRV 20 0 5060 c.test.",
		// SRV whose only target does not resolve.
		"_sip._tcp.broken.test. 60 IN SRV 10 0 5060 missing.test.",
	)
	return z
}

func TestResolve(t *testing.T) {
	z := testZone(t)
	r, err := New(Options{Server: startZone(t, z), Rand: rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		t.Fatal(err)
	}
	srvPool := []string{"_sips._tcp.pool.test."}
	// Priority 10 holds a.test and b.test in a weighted order, each with
	// its addresses together, A before AAAA; c.test (priority 20) is last.
	poolA := []string{"tls:10.0.0.1:5061", "tls:[2001:db8::1]:5061", "tls:10.0.0.2:5062", "tls:10.0.0.3:5062", "tls:10.0.0.4:5063"}
	poolB := []string{"tls:10.0.0.2:5062", "tls:10.0.0.3:5062", "tls:10.0.0.1:5061", "tls:[2001:db8::1]:5061", "tls:10.0.0.4:5063"}
	tests := []struct {
		name    string
		uri     string
		want    []string // keys
		or      []string // another acceptable order (a weighted draw)
		asked   []string // SRV questions that must have been asked
		notSRV  bool     // no SRV question at all
		wantErr error
	}{
		{name: "SRV, priorities and weights, A then AAAA per target", uri: "sips:pool.test",
			want: poolA, or: poolB, asked: srvPool},
		{name: "no transport: TLS SRV found first", uri: "sip:pool.test",
			want: poolA, or: poolB},
		{name: "no transport: only TCP SRV", uri: "sip:tcponly.test",
			want: []string{"tcp:10.0.0.1:5070", "tcp:[2001:db8::1]:5070"}},
		{name: "no transport: only UDP SRV", uri: "sip:udponly.test",
			want: []string{"udp:10.0.0.2:5080", "udp:10.0.0.3:5080"}},
		{name: "no SRV: UDP on the default port, A then AAAA", uri: "sip:plain.test",
			want:  []string{"udp:10.0.1.1:5060", "udp:[2001:db8::11]:5060"},
			asked: []string{"_sips._tcp.plain.test.", "_sip._tcp.plain.test.", "_sip._udp.plain.test."}},
		{name: "no SRV, sips: TLS on 5061", uri: "sips:plain.test",
			want: []string{"tls:10.0.1.1:5061", "tls:[2001:db8::11]:5061"}},
		{name: "transport parameter, no SRV", uri: "sip:plain.test;transport=tcp",
			want: []string{"tcp:10.0.1.1:5060", "tcp:[2001:db8::11]:5060"}},
		{name: "transport parameter picks its SRV", uri: "sip:tcponly.test;transport=TCP",
			want: []string{"tcp:10.0.0.1:5070", "tcp:[2001:db8::1]:5070"}},
		{name: "transport parameter without its SRV", uri: "sip:tcponly.test;transport=udp",
			wantErr: ErrNotFound},
		{name: "explicit port: A/AAAA only", uri: "sip:pool.test:5070;transport=tls",
			want: []string{"tls:10.0.9.9:5070"}, notSRV: true},
		{name: "explicit port, no transport: UDP", uri: "sip:plain.test:5090",
			want: []string{"udp:10.0.1.1:5090", "udp:[2001:db8::11]:5090"}, notSRV: true},
		{name: "sips with transport=tcp is TLS", uri: "sips:plain.test:5071;transport=tcp",
			want: []string{"tls:10.0.1.1:5071", "tls:[2001:db8::11]:5071"}},
		{name: "numeric IPv4", uri: "sip:10.1.2.3", want: []string{"udp:10.1.2.3:5060"}},
		{name: "numeric IPv4 with transport", uri: "sip:10.1.2.3;transport=tcp", want: []string{"tcp:10.1.2.3:5060"}},
		{name: "numeric IPv6 sips with port", uri: "sips:[2001:db8::5]:5071", want: []string{"tls:[2001:db8::5]:5071"}},
		{name: "SRV dot skips TLS in discovery", uri: "sip:dot.test", want: []string{"tcp:10.0.0.4:5090"}},
		{name: "SRV dot with TLS asked for", uri: "sips:dot.test", wantErr: ErrNotFound},
		{name: "an SRV target that does not resolve is left out", uri: "sip:half.test;transport=tcp",
			want: []string{"tcp:10.0.0.4:5060"}},
		{name: "no SRV target resolves", uri: "sip:broken.test;transport=tcp", wantErr: ErrNotFound},
		{name: "NXDOMAIN", uri: "sip:nx.test", wantErr: ErrNotFound},
		{name: "NXDOMAIN with port", uri: "sip:nx.test:5060", wantErr: ErrNotFound},
		{name: "sips over UDP", uri: "sips:plain.test;transport=udp", wantErr: errAny},
		{name: "unknown transport", uri: "sip:plain.test;transport=sctp", wantErr: errAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, srvBefore := z.total(), z.srvTotal()
			eps, err := r.Resolve(context.Background(), uri(t, tc.uri))
			if tc.wantErr != nil {
				if err == nil || tc.wantErr != errAny && !errors.Is(err, tc.wantErr) {
					t.Fatalf("Resolve = %v, %v; want error %v", keys(eps), err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.uri) {
					t.Errorf("error %q does not name the URI", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := keys(eps)
			if !slices.Equal(got, tc.want) && !slices.Equal(got, tc.or) {
				t.Errorf("Resolve(%s) = %q, want %q", tc.uri, got, tc.want)
			}
			for _, e := range eps {
				host := strings.TrimSuffix(strings.TrimPrefix(uri(t, tc.uri).Host, "["), "]")
				if e.Name != host {
					t.Errorf("%s: Name %q, want %q", e, e.Name, host)
				}
			}
			for _, q := range tc.asked {
				if z.count(q, dns.TypeSRV) == 0 {
					t.Errorf("SRV %s was not asked", q)
				}
			}
			if tc.notSRV && z.srvTotal() != srvBefore {
				t.Errorf("SRV asked although the URI has a port")
			}
			if strings.HasPrefix(tc.name, "numeric") && z.total() != before {
				t.Errorf("a numeric IP caused %d DNS questions", z.total()-before)
			}
		})
	}
}

// errAny stands for "some error" in tables.
var errAny = errors.New("any error")

// TestResolveOrderWithinTarget: each SRV target's addresses stay together,
// A before AAAA, whatever the weighted draw.
func TestResolveOrderWithinTarget(t *testing.T) {
	r, err := New(Options{Server: startZone(t, testZone(t))})
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		eps, err := r.Resolve(context.Background(), uri(t, "sips:pool.test"))
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(keys(eps), " ")
		if got != "tls:10.0.0.1:5061 tls:[2001:db8::1]:5061 tls:10.0.0.2:5062 tls:10.0.0.3:5062 tls:10.0.0.4:5063" &&
			got != "tls:10.0.0.2:5062 tls:10.0.0.3:5062 tls:10.0.0.1:5061 tls:[2001:db8::1]:5061 tls:10.0.0.4:5063" {
			t.Fatalf("order %s", got)
		}
	}
}

// TestSRVWeights draws the pool's order many times through the resolver:
// within priority 10, a.test (weight 60) comes first about 60% of the time
// and b.test (weight 40) about 40%; c.test (priority 20) always last.
func TestSRVWeights(t *testing.T) {
	z := testZone(t)
	r, err := New(Options{Server: startZone(t, z), Rand: rand.New(rand.NewPCG(7, 7))})
	if err != nil {
		t.Fatal(err)
	}
	const n = 4000
	first := map[string]int{}
	for range n {
		eps, err := r.Resolve(context.Background(), uri(t, "sips:pool.test"))
		if err != nil {
			t.Fatal(err)
		}
		first[eps[0].SRV]++
		if last := eps[len(eps)-1]; last.SRV != "c.test" {
			t.Fatalf("last endpoint %s from %s, want c.test (priority 20)", last, last.SRV)
		}
	}
	for target, want := range map[string]float64{"a.test": 0.6, "b.test": 0.4} {
		if got := float64(first[target]) / n; got < want-0.04 || got > want+0.04 {
			t.Errorf("%s first in %.3f of draws, want %.2f±0.04", target, got, want)
		}
	}
	if z.count("_sips._tcp.pool.test.", dns.TypeSRV) != 1 {
		t.Errorf("SRV asked %d times, want once (cached for its TTL)", z.count("_sips._tcp.pool.test.", dns.TypeSRV))
	}
}

func TestOrderSRV(t *testing.T) {
	recs := []srvRecord{
		{Priority: 20, Weight: 5, Target: "late"},
		{Priority: 10, Weight: 0, Target: "zero"},
		{Priority: 10, Weight: 3, Target: "three"},
		{Priority: 10, Weight: 1, Target: "one"},
	}
	tests := []struct {
		name  string
		draws []int // the numbers intN returns, in turn
		want  []string
	}{
		// Priority 10 is [zero(0) three(3) one(1)], total 4, draw in [0,4]:
		// 0 picks zero (running sum 0 >= 0).
		{"draw 0 picks weight 0", []int{0, 0, 0, 0}, []string{"zero", "three", "one", "late"}},
		// 1..3 pick three; then [zero one], total 1: 1 picks one.
		{"weighted", []int{2, 1, 0, 0}, []string{"three", "one", "zero", "late"}},
		// 4 picks one; then [zero three], total 3: 3 picks three.
		{"highest draw", []int{4, 3, 0, 0}, []string{"one", "three", "zero", "late"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			i := 0
			intN := func(n int) int {
				d := tc.draws[i]
				i++
				if d >= n {
					t.Fatalf("draw %d out of [0,%d)", d, n)
				}
				return d
			}
			var got []string
			for _, r := range orderSRV(recs, intN) {
				got = append(got, r.Target)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("order %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTTL: an answer is used until its TTL passes, then asked again.
func TestTTL(t *testing.T) {
	z := &zone{}
	z.add(t, "um.test. 30 IN A 10.0.0.1", "um.test. 60 IN A 10.0.0.9")
	clk := newClock()
	r, err := New(Options{Server: startZone(t, z), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	u := uri(t, "sip:um.test:5060")
	get := func() string {
		t.Helper()
		eps, err := r.Resolve(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(keys(eps), " ")
	}
	if got := get(); got != "udp:10.0.0.1:5060 udp:10.0.0.9:5060" {
		t.Fatalf("first answer %s", got)
	}
	z.set(t, "um.test. 30 IN A 10.0.0.2")
	clk.advance(29 * time.Second) // the smallest TTL of the set is 30s
	if got := get(); got != "udp:10.0.0.1:5060 udp:10.0.0.9:5060" {
		t.Errorf("before the TTL passed: %s, want the cached answer", got)
	}
	if n := z.count("um.test.", dns.TypeA); n != 1 {
		t.Errorf("A asked %d times before the TTL passed, want 1", n)
	}
	clk.advance(2 * time.Second)
	if got := get(); got != "udp:10.0.0.2:5060" {
		t.Errorf("after the TTL passed: %s, want the new answer", got)
	}
}

// TestNegativeTTL: NXDOMAIN is kept for the SOA's negative TTL (10s in the
// test zone), then asked again.
func TestNegativeTTL(t *testing.T) {
	z := &zone{}
	clk := newClock()
	r, err := New(Options{Server: startZone(t, z), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	u := uri(t, "sip:late.test:5060")
	if _, err := r.Resolve(context.Background(), u); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Resolve = %v, want ErrNotFound", err)
	}
	z.add(t, "late.test. 60 IN A 10.0.0.7")
	clk.advance(9 * time.Second)
	if _, err := r.Resolve(context.Background(), u); !errors.Is(err, ErrNotFound) {
		t.Errorf("within the negative TTL: %v, want the cached NXDOMAIN", err)
	}
	clk.advance(2 * time.Second)
	eps, err := r.Resolve(context.Background(), u)
	if err != nil || len(eps) != 1 || eps[0].Host != "10.0.0.7" {
		t.Errorf("after the negative TTL: %v %v", eps, err)
	}
}

// TestStale: when the server fails, an expired answer is used instead, for
// at most staleFor past its expiry.
func TestStale(t *testing.T) {
	z := &zone{}
	z.add(t, "um.test. 30 IN A 10.0.0.1")
	clk := newClock()
	r, err := New(Options{Server: startZone(t, z), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	u := uri(t, "sip:um.test:5060")
	if _, err := r.Resolve(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	z.mu.Lock()
	z.servfail = true
	z.mu.Unlock()
	clk.advance(time.Minute)
	eps, err := r.Resolve(context.Background(), u)
	if err != nil || len(eps) != 1 || eps[0].Host != "10.0.0.1" {
		t.Fatalf("with the server failing: %v %v, want the stale answer", keys(eps), err)
	}
	asked := z.count("um.test.", dns.TypeA)
	clk.advance(staleRetry / 2)
	if _, err := r.Resolve(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	if n := z.count("um.test.", dns.TypeA); n != asked {
		t.Errorf("asked again %d times within staleRetry of a failure", n-asked)
	}
	clk.advance(staleFor)
	if _, err := r.Resolve(context.Background(), u); err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "SERVFAIL") {
		t.Errorf("past staleFor: %v, want the server's failure", err)
	}
}

// TestTruncated: a truncated UDP answer is asked again over TCP.
func TestTruncated(t *testing.T) {
	z := &zone{truncate: true}
	z.add(t, "big.test. 60 IN A 10.0.0.1")
	r, err := New(Options{Server: startZone(t, z)})
	if err != nil {
		t.Fatal(err)
	}
	eps, err := r.Resolve(context.Background(), uri(t, "sip:big.test:5060"))
	if err != nil || len(eps) != 1 || eps[0].Host != "10.0.0.1" {
		t.Fatalf("Resolve = %v, %v", keys(eps), err)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.tcp == 0 {
		t.Error("no question over TCP")
	}
}

// TestNoServer: a server that does not answer is an error naming it, not
// ErrNotFound.
func TestNoServer(t *testing.T) {
	// A bound socket nobody reads: questions to it go unanswered.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	pc := silent.LocalAddr().String()
	r, err := New(Options{Server: pc, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Resolve(context.Background(), uri(t, "sip:um.test:5060"))
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), pc) {
		t.Errorf("Resolve = %v, want a timeout naming %s", err, pc)
	}
}

// TestConcurrent resolves one name from many goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	z := testZone(t)
	r, err := New(Options{Server: startZone(t, z)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			eps, err := r.Resolve(context.Background(), uri(t, "sips:pool.test"))
			if err != nil || len(eps) != 5 {
				t.Errorf("Resolve = %v, %v", keys(eps), err)
			}
		})
	}
	wg.Wait()
	if n := z.count("_sips._tcp.pool.test.", dns.TypeSRV); n >= 32 {
		t.Errorf("SRV asked %d times by 32 concurrent resolutions", n)
	}
}

func TestSystemServers(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("search contoso.com\nnameserver 10.0.0.53\nnameserver 2001:db8::53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := systemServers(conf); !slices.Equal(got, []string{"10.0.0.53:53", "[2001:db8::53]:53"}) {
		t.Errorf("servers %q", got)
	}
	if got := systemServers(filepath.Join(dir, "absent")); !slices.Equal(got, []string{"127.0.0.1:53"}) {
		t.Errorf("without resolv.conf: %q", got)
	}
}

func TestNewErrors(t *testing.T) {
	for _, o := range []Options{{Server: "10.0.0.53"}, {Transports: []string{"sctp"}}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

// TestCNAME: a recursive server answers a name that is an alias with the
// CNAME chain and the addresses; the answer is kept for the smallest TTL
// of the chain.
func TestCNAME(t *testing.T) {
	alias, _ := dns.NewRR("alias.test. 5 IN CNAME um.test.")
	target, _ := dns.NewRR("um.test. 60 IN A 10.0.0.1")
	z := &zone{records: map[question][]dns.RR{{"alias.test.", dns.TypeA}: {alias, target}}}
	clk := newClock()
	r, err := New(Options{Server: startZone(t, z), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	u := uri(t, "sip:alias.test:5060;transport=tcp")
	eps, err := r.Resolve(context.Background(), u)
	if err != nil || !slices.Equal(keys(eps), []string{"tcp:10.0.0.1:5060"}) {
		t.Fatalf("Resolve = %q, %v", keys(eps), err)
	}
	clk.advance(6 * time.Second)
	if _, err := r.Resolve(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	if n := z.count("alias.test.", dns.TypeA); n != 2 {
		t.Errorf("A alias.test asked %d times, want 2 (the CNAME's 5s TTL passed)", n)
	}
}

// TestCacheBound: the cache never holds more than its bound; answers too
// old to serve stale go first.
func TestCacheBound(t *testing.T) {
	z := &zone{}
	z.add(t, "a.test. 1 IN A 10.0.0.1", "b.test. 60 IN A 10.0.0.2", "c.test. 60 IN A 10.0.0.3")
	clk := newClock()
	r, err := New(Options{Server: startZone(t, z), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	r.maxEntries = 2
	resolveA := func(host string) {
		t.Helper()
		if _, err := r.Resolve(context.Background(), uri(t, "sip:"+host+":5060")); err != nil {
			t.Fatal(err)
		}
	}
	resolveA("a.test") // A and AAAA (negative): two entries
	clk.advance(staleFor + 2*time.Second)
	resolveA("b.test")
	r.mu.Lock()
	_, keptA := r.cache[cacheKey{"a.test.", dns.TypeA}]
	n := len(r.cache)
	r.mu.Unlock()
	if keptA {
		t.Error("a.test's expired answer was kept over b.test's")
	}
	resolveA("c.test")
	r.mu.Lock()
	m := len(r.cache)
	r.mu.Unlock()
	if n > 2 || m > 2 {
		t.Errorf("cache holds %d then %d entries, bound 2", n, m)
	}
}

// TestHostsFile: names in the hosts file are answered from it, IPv4 first,
// without asking DNS (not even SRV); other names go to DNS.
func TestHostsFile(t *testing.T) {
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte(`# lab
::1        localhost um.lab   # IPv6 first in the file
127.0.0.1  localhost um.lab
10.0.0.5   UM2.Lab.
fe80::1%eth0 zoned.lab
not-an-address bad.lab
`), 0o644); err != nil {
		t.Fatal(err)
	}
	z := &zone{}
	z.add(t, "dns.lab. 60 IN A 10.0.0.9")
	r, err := New(Options{Server: startZone(t, z), HostsFile: hosts})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		uri  string
		want []string
	}{
		{"sips:um.lab", []string{"tls:127.0.0.1:5061", "tls:[::1]:5061"}},
		{"sip:localhost", []string{"udp:127.0.0.1:5060", "udp:[::1]:5060"}},
		{"sip:um2.lab:5070;transport=tcp", []string{"tcp:10.0.0.5:5070"}},
		{"sip:zoned.lab;transport=tcp", []string{"tcp:[fe80::1]:5060"}},
	}
	for _, tc := range tests {
		eps, err := r.Resolve(context.Background(), uri(t, tc.uri))
		if err != nil || !slices.Equal(keys(eps), tc.want) {
			t.Errorf("Resolve(%s) = %q, %v; want %q", tc.uri, keys(eps), err, tc.want)
		}
	}
	if n := z.total(); n != 0 {
		t.Errorf("%d DNS questions for names in the hosts file", n)
	}
	eps, err := r.Resolve(context.Background(), uri(t, "sip:dns.lab:5060"))
	if err != nil || !slices.Equal(keys(eps), []string{"udp:10.0.0.9:5060"}) {
		t.Errorf("a name not in the hosts file: %q, %v", keys(eps), err)
	}
}
