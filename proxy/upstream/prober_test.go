package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// scripted is a probe whose answers the test sets per endpoint.
type scripted struct {
	mu   sync.Mutex
	fail map[string]bool
	seen map[string]int
}

func (s *scripted) probe(_ context.Context, e Endpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[e.Key()]++
	if s.fail[e.Key()] {
		return errors.New("connection refused")
	}
	return nil
}

func (s *scripted) setFail(key string, fail bool) {
	s.mu.Lock()
	s.fail[key] = fail
	s.mu.Unlock()
}

func TestProberRounds(t *testing.T) {
	p, _, up, _ := testPool(t)
	s := &scripted{fail: map[string]bool{}, seen: map[string]int{}}
	pr := p.NewProber(s.probe, 10*time.Second, 5*time.Second)
	ctx := context.Background()
	const b = "tls:10.0.0.2:5061"
	targets := func() []string {
		t.Helper()
		eps, err := p.Targets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return keysOf(eps)
	}
	s.setFail(b, true)
	steps := []struct {
		fail bool
		want []string
		up   float64
	}{
		{true, []string{"tls:10.0.0.1:5061", b, "tls:10.0.0.3:5061"}, 1}, // one failed probe: suspect
		{true, []string{"tls:10.0.0.1:5061", "tls:10.0.0.3:5061"}, 0},    // two in a row: skipped
		{true, []string{"tls:10.0.0.1:5061", "tls:10.0.0.3:5061"}, 0},
		{false, []string{"tls:10.0.0.1:5061", b, "tls:10.0.0.3:5061"}, 1}, // answers again: back
	}
	for i, st := range steps {
		s.setFail(b, st.fail)
		if err := pr.Round(ctx); err != nil {
			t.Fatal(err)
		}
		if got := targets(); !slices.Equal(got, st.want) {
			t.Errorf("round %d: Targets = %q, want %q", i+1, got, st.want)
		}
		if v := testutil.ToFloat64(up.WithLabelValues(b)); v != st.up {
			t.Errorf("round %d: upstream_up{%s} = %v, want %v", i+1, b, v, st.up)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range []string{"tls:10.0.0.1:5061", b, "tls:10.0.0.3:5061"} {
		if s.seen[k] != len(steps) {
			t.Errorf("%s probed %d times in %d rounds (down targets are probed too)", k, s.seen[k], len(steps))
		}
	}
}

// TestProbeTimeout: each probe's deadline is min(no_response_timeout,
// interval), and a probe that never answers is a failure.
func TestProbeTimeout(t *testing.T) {
	tests := []struct {
		interval, noResponse, want time.Duration
	}{
		{10 * time.Second, 5 * time.Second, 5 * time.Second},
		{2 * time.Second, 10 * time.Second, 2 * time.Second},
		{3 * time.Second, 0, 3 * time.Second},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%s", tc.interval, tc.noResponse), func(t *testing.T) {
			p, _, _, _ := testPool(t)
			var mu sync.Mutex
			var budgets []time.Duration
			pr := p.NewProber(func(ctx context.Context, e Endpoint) error {
				d, ok := ctx.Deadline()
				if !ok {
					t.Error("probe without a deadline")
				}
				mu.Lock()
				budgets = append(budgets, time.Until(d))
				mu.Unlock()
				return nil
			}, tc.interval, tc.noResponse)
			if err := pr.Round(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, b := range budgets {
				if b > tc.want || b < tc.want/2 {
					t.Errorf("probe deadline %s away, want about %s", b, tc.want)
				}
			}
		})
	}

	// A probe that waits for its context: failure (twice: down).
	p, _, _, _ := testPool(t)
	pr := p.NewProber(func(ctx context.Context, e Endpoint) error {
		<-ctx.Done()
		return ctx.Err()
	}, 50*time.Millisecond, 10*time.Second)
	for range 2 {
		if err := pr.Round(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if h := p.Health(ep("10.0.0.1", 5061)); h != Down {
		t.Errorf("after two unanswered probes: %s, want down", h)
	}
}

// TestProberBounded: no more than maxProbes probes run at once.
func TestProberBounded(t *testing.T) {
	f := &fakeResolver{answers: map[string][]Endpoint{}, errs: map[string]error{}}
	var many []Endpoint
	for i := range 3 * maxProbes {
		many = append(many, ep(fmt.Sprintf("10.0.1.%d", i+1), 5061))
	}
	f.answers["sips:big.test"] = many
	p, err := New(Config{URIs: uris(t, "sips:big.test"), Resolver: f})
	if err != nil {
		t.Fatal(err)
	}
	var cur, peak atomic.Int32
	var probed atomic.Int32
	pr := p.NewProber(func(ctx context.Context, e Endpoint) error {
		n := cur.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(time.Millisecond) // let the others pile up, if they could
		cur.Add(-1)
		probed.Add(1)
		return nil
	}, time.Second, time.Second)
	if err := pr.Round(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := probed.Load(); got != int32(len(many)) {
		t.Errorf("%d probes, want %d", got, len(many))
	}
	if got := peak.Load(); got > maxProbes {
		t.Errorf("%d probes at once, want at most %d", got, maxProbes)
	}
}

// TestProberStops: Run returns when its context is cancelled, a stopping
// prober's cut-short probes are not counted as failures, and an interval
// of 0 does not probe at all.
func TestProberStops(t *testing.T) {
	p, _, _, _ := testPool(t)
	var started sync.WaitGroup
	started.Add(3) // the three endpoints of the first round
	pr := p.NewProber(func(ctx context.Context, e Endpoint) error {
		started.Done()
		<-ctx.Done()
		return ctx.Err()
	}, time.Hour, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		pr.Run(ctx)
		close(done)
	}()
	started.Wait()
	cancel()
	<-done
	for _, e := range []Endpoint{ep("10.0.0.1", 5061), ep("10.0.0.2", 5061), ep("10.0.0.3", 5061)} {
		if h := p.Health(e); h != Up {
			t.Errorf("%s: %s after a cancelled round, want up", e, h)
		}
	}

	off := p.NewProber(func(context.Context, Endpoint) error {
		t.Error("probed with interval 0")
		return nil
	}, 0, time.Second)
	off.Run(context.Background()) // returns at once
}

func TestResponseError(t *testing.T) {
	for code, ok := range map[int]bool{100: false, 180: false, 200: true, 302: true, 404: true, 405: true, 481: true, 500: false, 503: false, 599: false, 603: true} {
		if got := ResponseError(code) == nil; got != ok {
			t.Errorf("ResponseError(%d) ok = %v, want %v", code, got, ok)
		}
	}
}
