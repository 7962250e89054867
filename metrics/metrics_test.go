package metrics

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestServer scrapes a real HTTP server: every contract metric is exported
// and parses as Prometheus text, and /readyz follows the ready function.
func TestServer(t *testing.T) {
	m := New()
	m.Requests.WithLabelValues("INVITE", "tls").Inc()
	m.Responses.WithLabelValues("INVITE", "200").Inc()
	m.SkipPin.WithLabelValues("stripped", "not_tls").Inc()
	m.RequestDuration.WithLabelValues("INVITE").Observe(0.01)
	m.UpstreamUp.WithLabelValues("tls:10.0.0.5:5061").Set(1)
	m.UpstreamFailovers.WithLabelValues("tls:10.0.0.5:5061", "timeout").Inc()
	m.Redirects.WithLabelValues("followed").Inc()
	m.Malformed.WithLabelValues("udp", "cseq").Inc()
	m.Reloaded(true, 3, time.Unix(1700000000, 0))
	m.Reloaded(false, 0, time.Now())
	var ready atomic.Bool
	s, err := Listen("127.0.0.1:0", m, ready.Load)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer s.Shutdown(context.Background())

	get := func(path string) (int, string) {
		res, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if code, _ := get("/readyz"); code != 503 {
		t.Fatalf("/readyz before ready: %d", code)
	}
	ready.Store(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz when ready: %d", code)
	}
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"sipproxy_requests_total", "sipproxy_responses_total", "sipproxy_skip_pin_total",
		"sipproxy_forwarding_total", "sipproxy_auth_total", "sipproxy_transactions_active",
		"sipproxy_registrations_active", "sipproxy_rules_loaded", "sipproxy_rules_reload_total",
		"sipproxy_rules_last_reload_timestamp_seconds", "sipproxy_request_duration_seconds",
		"sipproxy_upstream_up", "sipproxy_upstream_failover_total", "sipproxy_redirects_total",
		"sipproxy_malformed_total", "go_goroutines", "process_resident_memory_bytes",
		"go_sched_goroutines_created_goroutines_total", "go_sched_latencies_seconds",
	} {
		if fams[name] == nil {
			t.Errorf("metric %s not exported", name)
		}
	}
	if v := fams["sipproxy_rules_loaded"].Metric[0].Gauge.GetValue(); v != 3 {
		t.Errorf("rules_loaded = %v", v)
	}
	if v := fams["sipproxy_rules_last_reload_timestamp_seconds"].Metric[0].Gauge.GetValue(); v != 1700000000 {
		t.Errorf("last reload = %v", v)
	}
	errors := 0.0
	for _, mm := range fams["sipproxy_rules_reload_total"].Metric {
		for _, l := range mm.Label {
			if l.GetName() == "result" && l.GetValue() == "error" {
				errors = mm.Counter.GetValue()
			}
		}
	}
	if errors != 1 {
		t.Errorf("rules_reload_total{result=error} = %v", errors)
	}
}
