package limits

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFailureTracker(t *testing.T) {
	type step struct {
		advance time.Duration // before the step
		op      string        // fail, succeed or blocked
		src     string
		times   int           // 0 means once
		want    bool          // what Fail or Blocked returns
		left    time.Duration // what Blocked returns with it
	}
	const (
		a = "192.0.2.1"
		b = "192.0.2.2"
	)
	base := FailureConfig{MaxFailures: 5, Window: time.Minute, BlockFor: 10 * time.Minute}
	tests := []struct {
		name  string
		cfg   FailureConfig
		steps []step
	}{
		{
			name: "blocked on the fifth failure within the window",
			cfg:  base,
			steps: []step{
				{op: "fail", src: a, want: false},
				{advance: 10 * time.Second, op: "fail", src: a, times: 3, want: false},
				{op: "blocked", src: a, want: false},
				{advance: 49 * time.Second, op: "fail", src: a, want: true},
				{op: "blocked", src: a, want: true, left: 10 * time.Minute},
				{op: "blocked", src: b, want: false},
				{op: "fail", src: b, want: false},
				{advance: time.Minute, op: "blocked", src: a, want: true, left: 9 * time.Minute},
			},
		},
		{
			name: "failures spread beyond the window do not block",
			cfg:  base,
			steps: []step{
				{op: "fail", src: a, want: false},
				{advance: 15 * time.Second, op: "fail", src: a, want: false},
				{advance: 15 * time.Second, op: "fail", src: a, want: false},
				{advance: 15 * time.Second, op: "fail", src: a, want: false},
				{advance: 15 * time.Second, op: "fail", src: a, want: false}, // the first is a full window back
				{advance: 15 * time.Second, op: "fail", src: a, want: false},
				{advance: 15 * time.Second, op: "fail", src: a, want: false},
				{op: "blocked", src: a, want: false},
				{advance: 14 * time.Second, op: "fail", src: a, want: true}, // five in 59s
			},
		},
		{
			name: "unblocked after BlockFor, with a clean slate",
			cfg:  base,
			steps: []step{
				{op: "fail", src: a, times: 4, want: false},
				{op: "fail", src: a, want: true},
				{advance: 10*time.Minute - 1, op: "blocked", src: a, want: true, left: 1},
				{advance: 1, op: "blocked", src: a, want: false},
				{op: "fail", src: a, times: 4, want: false},
				{op: "fail", src: a, want: true},
			},
		},
		{
			name: "failures while blocked do not extend the block",
			cfg:  base,
			steps: []step{
				{op: "fail", src: a, times: 4, want: false},
				{op: "fail", src: a, want: true},
				{advance: 5 * time.Minute, op: "fail", src: a, times: 10, want: true},
				{advance: 5 * time.Minute, op: "blocked", src: a, want: false},
			},
		},
		{
			name: "Succeed resets the failures",
			cfg:  base,
			steps: []step{
				{op: "fail", src: a, times: 4, want: false},
				{op: "succeed", src: a},
				{op: "fail", src: a, times: 4, want: false},
				{op: "blocked", src: a, want: false},
			},
		},
		{
			name: "Succeed resets once per window: interleaved own successes do not buy guesses",
			cfg:  base,
			steps: []step{
				{op: "fail", src: a, times: 4, want: false},
				{op: "succeed", src: a},
				{op: "fail", src: a, times: 4, want: false},
				{op: "succeed", src: a},
				{op: "fail", src: a, want: true},
			},
		},
		{
			name: "Succeed resets again a window later",
			cfg:  base,
			steps: []step{
				{op: "fail", src: a, times: 4, want: false},
				{op: "succeed", src: a},
				{advance: time.Minute, op: "fail", src: a, times: 4, want: false},
				{op: "succeed", src: a},
				{op: "fail", src: a, times: 4, want: false},
			},
		},
		{
			name: "successes with nothing to forgive do not use the reset up",
			cfg:  base,
			steps: []step{
				{op: "succeed", src: a, times: 3},
				{op: "fail", src: a, times: 4, want: false},
				{op: "succeed", src: a},
				{op: "fail", src: a, times: 4, want: false},
			},
		},
		{
			name: "Succeed does not lift a block",
			cfg:  base,
			steps: []step{
				{op: "fail", src: a, times: 4, want: false},
				{op: "fail", src: a, want: true},
				{op: "succeed", src: a},
				{op: "blocked", src: a, want: true, left: 10 * time.Minute},
			},
		},
		{
			name: "one failure blocks when MaxFailures is 1",
			cfg:  FailureConfig{MaxFailures: 1, Window: time.Minute, BlockFor: time.Hour},
			steps: []step{
				{op: "blocked", src: a, want: false},
				{op: "fail", src: a, want: true},
				{op: "blocked", src: a, want: true, left: time.Hour},
				{advance: time.Hour, op: "blocked", src: a, want: false},
			},
		},
		{
			name: "failures exactly a window apart are not within it",
			cfg:  FailureConfig{MaxFailures: 2, Window: time.Minute, BlockFor: time.Hour},
			steps: []step{
				{op: "fail", src: a, want: false},
				{advance: time.Minute, op: "fail", src: a, want: false},
				{advance: time.Minute - 1, op: "fail", src: a, want: true},
			},
		},
		{
			name: "exempt sources are never blocked",
			cfg:  FailureConfig{MaxFailures: 2, Exempt: prefixes(t, "10.0.0.0/8")},
			steps: []step{
				{op: "fail", src: "10.0.0.1", times: 100, want: false},
				{op: "blocked", src: "10.0.0.1", want: false},
				{op: "fail", src: a, times: 1, want: false},
				{op: "fail", src: a, want: true},
			},
		},
		{
			name: "an IPv6 /64 is one source",
			cfg:  base,
			steps: []step{
				{op: "fail", src: "2001:db8::1", times: 2, want: false},
				{op: "fail", src: "2001:db8::2", times: 2, want: false},
				{op: "fail", src: "2001:db8::3", want: true},
				{op: "blocked", src: "2001:db8::ffff", want: true, left: 10 * time.Minute},
				{op: "blocked", src: "2001:db8:0:1::1", want: false},
			},
		},
		{
			name: "the defaults",
			cfg:  FailureConfig{},
			steps: []step{
				{op: "fail", src: a, times: DefaultMaxFailures - 1, want: false},
				{advance: DefaultFailureWindow - 1, op: "fail", src: a, want: true},
				{op: "blocked", src: a, want: true, left: DefaultBlockFor},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			tt.cfg.Now = clock.Now
			f, err := NewFailureTracker(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				clock.Advance(s.advance)
				src := netip.MustParseAddr(s.src)
				for n := range max(1, s.times) {
					switch s.op {
					case "fail":
						if got := f.Fail(src); got != s.want {
							t.Fatalf("step %d, call %d: Fail(%s) = %v, want %v", i, n+1, s.src, got, s.want)
						}
					case "succeed":
						f.Succeed(src)
					case "blocked":
						if got, left := f.Blocked(src); got != s.want || left != s.left {
							t.Fatalf("step %d: Blocked(%s) = %v, %v; want %v, %v", i, s.src, got, left, s.want, s.left)
						}
					default:
						t.Fatalf("step %d: unknown op %q", i, s.op)
					}
				}
			}
		})
	}
}

func TestNewFailureTrackerRejects(t *testing.T) {
	tests := []struct {
		cfg  FailureConfig
		want string
	}{
		{FailureConfig{MaxFailures: -1}, "max failures -1"},
		{FailureConfig{MaxFailures: 101}, "max failures 101"},
		{FailureConfig{Window: -time.Second}, "failure window -1s"},
		{FailureConfig{Window: 31 * 24 * time.Hour}, "failure window 744h"},
		{FailureConfig{BlockFor: -time.Second}, "block for -1s"},
		{FailureConfig{MaxSources: -1}, "max sources -1"},
		{FailureConfig{MaxSources: 1 << 25}, "max sources 33554432"},
	}
	for _, tt := range tests {
		_, err := NewFailureTracker(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewFailureTracker(%+v) = %v, want an error with %q", tt.cfg, err, tt.want)
		}
	}
}

func TestFailureTrackerNil(t *testing.T) {
	var f *FailureTracker
	src := netip.MustParseAddr("192.0.2.1")
	f.Succeed(src)
	if f.Fail(src) || f.Len() != 0 {
		t.Error("a nil tracker blocks")
	}
	if blocked, _ := f.Blocked(src); blocked {
		t.Error("a nil tracker blocks")
	}
}

// TestFailureTrackerSpoofedFlood fails a million spoofed sources (a tenth
// with -short) once each into a small table. The table must stay within MaxSources, a blocked
// attacker must stay blocked and one four failures in must stay counted.
func TestFailureTrackerSpoofedFlood(t *testing.T) {
	t.Parallel()
	const maxSources = 10_000
	clock := newFakeClock()
	f, err := NewFailureTracker(FailureConfig{MaxFailures: 5, Window: time.Minute, BlockFor: time.Hour, MaxSources: maxSources, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	blocked := netip.MustParseAddr("198.51.100.1")
	guessing := netip.MustParseAddr("198.51.100.2")
	for range 5 {
		f.Fail(blocked)
	}
	for range 4 {
		f.Fail(guessing)
	}
	spoofed := 1_000_000
	if testing.Short() {
		spoofed = 100_000
	}
	for i := range spoofed {
		clock.Advance(time.Microsecond)
		if f.Fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})) {
			t.Fatalf("spoofed source %d blocked on its first failure", i)
		}
		if i%100_000 == 0 {
			if n := f.Len(); n > maxSources {
				t.Fatalf("after %d spoofed sources: %d tracked, more than %d", i, n, maxSources)
			}
		}
	}
	if n := f.Len(); n > maxSources {
		t.Errorf("%d sources tracked, more than %d", n, maxSources)
	}
	if ok, _ := f.Blocked(blocked); !ok {
		t.Error("the flood unblocked the blocked attacker")
	}
	if !f.Fail(guessing) {
		t.Error("the flood made the tracker forget the guessing attacker's failures")
	}
}

// TestFailureTrackerConcurrent fails one source from many goroutines with
// the clock stopped: exactly MaxFailures-1 failures may pass unblocked.
func TestFailureTrackerConcurrent(t *testing.T) {
	clock := newFakeClock()
	f, err := NewFailureTracker(FailureConfig{MaxFailures: 5, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("192.0.2.1")
	other := netip.MustParseAddr("192.0.2.2")
	var unblocked atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 10 {
				if !f.Fail(src) {
					unblocked.Add(1)
				}
				f.Blocked(src)
				f.Succeed(other)
				f.Blocked(other)
			}
		})
	}
	wg.Wait()
	if n := unblocked.Load(); n != 4 {
		t.Errorf("%d failures passed unblocked, want 4", n)
	}
	if ok, _ := f.Blocked(other); ok {
		t.Error("a source that only succeeded is blocked")
	}
}

func TestFailureTrackerDoesNotAllocate(t *testing.T) {
	f, err := NewFailureTracker(FailureConfig{})
	if err != nil {
		t.Fatal(err)
	}
	known, unknown := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	f.Fail(known)
	for name, fn := range map[string]func(){
		"Blocked known":   func() { f.Blocked(known) },
		"Blocked unknown": func() { f.Blocked(unknown) },
		"Succeed known":   func() { f.Succeed(known) },
		"Succeed unknown": func() { f.Succeed(unknown) },
	} {
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s: %v allocations, want 0", name, n)
		}
	}
}
