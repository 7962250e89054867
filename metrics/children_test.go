package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCachedChildren: counting through the caches is counting in the
// vectors they cache, one child per label set.
func TestCachedChildren(t *testing.T) {
	m := New()
	for range 3 {
		m.RequestsOf.With("INVITE", "tcp").Inc()
	}
	m.RequestsOf.With("BYE", "tcp").Inc()
	if got := testutil.ToFloat64(m.Requests.WithLabelValues("INVITE", "tcp")); got != 3 {
		t.Fatalf("INVITE/tcp = %v, want 3", got)
	}
	if got := testutil.CollectAndCount(m.Requests); got != 2 {
		t.Fatalf("%d children, want 2", got)
	}
	if m.ResponsesOf.With("INVITE", "200") != m.Responses.WithLabelValues("INVITE", "200") {
		t.Fatal("the cached child is not the vector's")
	}
	m.RequestDurationOf.With("INVITE").Observe(0.01)
	m.RequestDurationOf.With("INVITE").Observe(0.02)
	if got := testutil.CollectAndCount(m.RequestDuration); got != 1 {
		t.Fatalf("%d histograms, want 1", got)
	}
}
