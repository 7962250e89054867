package upstream

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sipproxy/sipproxy/internal/resolve"
)

// fakeResolver answers from a table keyed by URI string.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][]Endpoint
	errs    map[string]error
}

func (f *fakeResolver) Resolve(_ context.Context, u sip.Uri) ([]Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.errs[u.String()]; err != nil {
		return nil, err
	}
	return f.answers[u.String()], nil
}

func (f *fakeResolver) set(uri string, eps []Endpoint, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[uri] = eps
	f.errs[uri] = err
}

func ep(host string, port int) Endpoint {
	return Endpoint{Host: host, Port: port, Transport: "tls", Name: "um.test"}
}

func uris(t *testing.T, ss ...string) []sip.Uri {
	t.Helper()
	out := make([]sip.Uri, len(ss))
	for i, s := range ss {
		if err := sip.ParseUri(s, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func keysOf(eps []Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.Key()
	}
	return out
}

// testPool is a pool of two URIs: um1 resolving to two addresses, um2 to
// one (and one of um1's again), with fresh metrics.
func testPool(t *testing.T) (*Pool, *fakeResolver, *prometheus.GaugeVec, *prometheus.CounterVec) {
	t.Helper()
	f := &fakeResolver{answers: map[string][]Endpoint{
		"sips:um1.test": {ep("10.0.0.1", 5061), ep("10.0.0.2", 5061)},
		"sips:um2.test": {ep("10.0.0.3", 5061), ep("10.0.0.1", 5061)},
	}, errs: map[string]error{}}
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "up"}, []string{"target"})
	fo := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "failover_total"}, []string{"target", "reason"})
	p, err := New(Config{URIs: uris(t, "sips:um1.test", "sips:um2.test"), Resolver: f, Up: up, Failovers: fo})
	if err != nil {
		t.Fatal(err)
	}
	return p, f, up, fo
}

func TestTargets(t *testing.T) {
	const a, b, c = "tls:10.0.0.1:5061", "tls:10.0.0.2:5061", "tls:10.0.0.3:5061"
	ea, eb, ec := ep("10.0.0.1", 5061), ep("10.0.0.2", 5061), ep("10.0.0.3", 5061)
	type report struct {
		e  Endpoint
		ok bool
	}
	tests := []struct {
		name    string
		reports []report
		want    []string
	}{
		{"all up: configuration order, duplicates once", nil, []string{a, b, c}},
		{"one failure: still offered", []report{{eb, false}}, []string{a, b, c}},
		{"two failures: skipped", []report{{eb, false}, {eb, false}}, []string{a, c}},
		{"back after one success", []report{{eb, false}, {eb, false}, {eb, true}}, []string{a, b, c}},
		{"failures not in a row", []report{{ea, false}, {ea, true}, {ea, false}}, []string{a, b, c}},
		{"the first down: the next ones", []report{{ea, false}, {ea, false}, {eb, false}, {eb, false}}, []string{c}},
		{"all down: all of them, in order", []report{{ea, false}, {ea, false}, {eb, false}, {eb, false}, {ec, false}, {ec, false}}, []string{a, b, c}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _, _, _ := testPool(t)
			for _, r := range tc.reports {
				p.Report(r.e, r.ok, "timeout")
			}
			got, err := p.Targets(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(keysOf(got), tc.want) {
				t.Errorf("Targets = %q, want %q", keysOf(got), tc.want)
			}
		})
	}
}

func TestReportMetrics(t *testing.T) {
	p, _, up, fo := testPool(t)
	if _, err := p.Targets(context.Background()); err != nil {
		t.Fatal(err)
	}
	const a = "tls:10.0.0.1:5061"
	if v := testutil.ToFloat64(up.WithLabelValues(a)); v != 1 {
		t.Errorf("upstream_up{%s} = %v before any failure, want 1", a, v)
	}
	p.Report(ep("10.0.0.1", 5061), false, "timeout")
	if v := testutil.ToFloat64(up.WithLabelValues(a)); v != 1 {
		t.Errorf("upstream_up after one failure = %v, want 1 (suspect is in service)", v)
	}
	p.Report(ep("10.0.0.1", 5061), false, "transport")
	if v := testutil.ToFloat64(up.WithLabelValues(a)); v != 0 {
		t.Errorf("upstream_up after two failures = %v, want 0", v)
	}
	p.Report(ep("10.0.0.1", 5061), true, "")
	if v := testutil.ToFloat64(up.WithLabelValues(a)); v != 1 {
		t.Errorf("upstream_up after an answer = %v, want 1", v)
	}
	for reason, want := range map[string]float64{"timeout": 1, "transport": 1} {
		if v := testutil.ToFloat64(fo.WithLabelValues(a, reason)); v != want {
			t.Errorf("failover_total{%s,%s} = %v, want %v", a, reason, v, want)
		}
	}
	if n := testutil.CollectAndCount(fo); n != 2 {
		t.Errorf("%d failover series, want 2 (a success is not a failover)", n)
	}
}

func TestResolution(t *testing.T) {
	p, f, up, fo := testPool(t)
	ctx := context.Background()
	if _, err := p.Targets(ctx); err != nil {
		t.Fatal(err)
	}
	p.Report(ep("10.0.0.2", 5061), false, "timeout")

	// One URI failing leaves the other's endpoints; nothing is forgotten
	// (the resolution was partial).
	f.set("sips:um1.test", nil, resolve.ErrNotFound)
	got, err := p.Targets(ctx)
	if err != nil || !slices.Equal(keysOf(got), []string{"tls:10.0.0.3:5061", "tls:10.0.0.1:5061"}) {
		t.Errorf("with um1 failing: %q, %v", keysOf(got), err)
	}
	if p.Health(ep("10.0.0.2", 5061)) != Suspect {
		t.Errorf("state of an endpoint missing from a partial resolution was lost")
	}

	// Both failing is an error naming the causes.
	f.set("sips:um2.test", nil, errors.New("SERVFAIL"))
	if _, err := p.Targets(ctx); err == nil || !errors.Is(err, resolve.ErrNotFound) {
		t.Errorf("with both failing: %v", err)
	}

	// A complete resolution without 10.0.0.2 forgets it and its series.
	f.set("sips:um1.test", []Endpoint{ep("10.0.0.1", 5061)}, nil)
	f.set("sips:um2.test", []Endpoint{ep("10.0.0.3", 5061)}, nil)
	if _, err := p.Targets(ctx); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(up); n != 2 {
		t.Errorf("%d upstream_up series after 10.0.0.2 left DNS, want 2", n)
	}
	if n := testutil.CollectAndCount(fo); n != 0 {
		t.Errorf("%d failover series after 10.0.0.2 left DNS, want 0", n)
	}
	p.mu.Lock()
	n := len(p.health)
	p.mu.Unlock()
	if n != 2 {
		t.Errorf("%d endpoints tracked, want 2", n)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{Resolver: &fakeResolver{}}); err == nil {
		t.Error("a pool without URIs was accepted")
	}
	if _, err := New(Config{URIs: uris(t, "sip:um.test")}); err == nil {
		t.Error("a pool without resolver was accepted")
	}
}

// TestRetry: without probes, a down target is offered again Retry after
// its last failure, in its place; a failure then holds it out for another
// Retry, an answer brings it back.
func TestRetry(t *testing.T) {
	f := &fakeResolver{answers: map[string][]Endpoint{
		"sips:um1.test": {ep("10.0.0.1", 5061)},
		"sips:um2.test": {ep("10.0.0.2", 5061)},
	}, errs: map[string]error{}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p, err := New(Config{URIs: uris(t, "sips:um1.test", "sips:um2.test"), Resolver: f,
		Retry: 30 * time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	const a, b = "tls:10.0.0.1:5061", "tls:10.0.0.2:5061"
	ea := ep("10.0.0.1", 5061)
	steps := []struct {
		name    string
		advance time.Duration
		report  *bool // reported for a after advancing, nil for none
		want    []string
	}{
		{"two failures take it out", 0, ptr(false), []string{b}},
		{"before Retry", 29 * time.Second, nil, []string{b}},
		{"Retry passed: offered in its place", time.Second, nil, []string{a, b}},
		{"failing again: out for another Retry", 0, ptr(false), []string{b}},
		{"still out", 29 * time.Second, nil, []string{b}},
		{"offered again", time.Second, nil, []string{a, b}},
		{"an answer brings it back", 0, ptr(true), []string{a, b}},
	}
	p.Report(ea, false, "timeout") // suspect; the first step's report makes it down
	for _, st := range steps {
		now = now.Add(st.advance)
		if st.report != nil {
			p.Report(ea, *st.report, "timeout")
		}
		got, err := p.Targets(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(keysOf(got), st.want) {
			t.Errorf("%s: Targets = %q, want %q", st.name, keysOf(got), st.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestConcurrentUse: calls, reports and probe rounds at once (run with
// -race); the pool stays consistent.
func TestConcurrentUse(t *testing.T) {
	p, _, _, _ := testPool(t)
	pr := p.NewProber(func(context.Context, Endpoint) error { return nil }, time.Second, time.Second)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				eps, err := p.Targets(ctx)
				if err != nil || len(eps) == 0 {
					t.Errorf("Targets = %v, %v", eps, err)
					return
				}
				p.Report(eps[0], (i+j)%3 != 0, "timeout")
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			pr.Round(ctx)
		}
	})
	wg.Wait()
	pr.Round(ctx) // every probe answers: everything is back up
	for _, e := range []Endpoint{ep("10.0.0.1", 5061), ep("10.0.0.2", 5061), ep("10.0.0.3", 5061)} {
		if h := p.Health(e); h != Up {
			t.Errorf("%s: %s after a clean round", e, h)
		}
	}
}
