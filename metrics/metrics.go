package metrics

import (
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "sipproxy"

// Metrics holds the collectors; the proxy, registrar and rules reloader
// receive the pieces they update.
type Metrics struct {
	Registry *prometheus.Registry

	Requests            *prometheus.CounterVec // method, transport
	Responses           *prometheus.CounterVec // method, code
	SkipPin             *prometheus.CounterVec // decision, reason
	Forwarding          *prometheus.CounterVec // kind, outcome
	Auth                *prometheus.CounterVec // result
	TransactionsActive  prometheus.Gauge
	DialogsActive       prometheus.Gauge
	RegistrationsActive prometheus.Gauge
	RulesLoaded         prometheus.Gauge
	RulesReloads        *prometheus.CounterVec // result
	RulesLastReload     prometheus.Gauge
	RequestDuration     *prometheus.HistogramVec // method
	// The same three with their children resolved once: what the proxy
	// uses for every message it handles.
	RequestsOf        *CounterPairs          // Requests
	ResponsesOf       *CounterPairs          // Responses
	RequestDurationOf *ObserverSingles       // RequestDuration
	Throttled         *prometheus.CounterVec // reason

	// Upstream targets (voicemail pool, next hops): the label is
	// "transport:host:port" of a resolved address, so the label set is
	// bounded by the configuration and what its DNS names resolve to.
	UpstreamUp        *prometheus.GaugeVec   // target
	UpstreamFailovers *prometheus.CounterVec // target, reason
	Redirects         *prometheus.CounterVec // outcome
	Malformed         *prometheus.CounterVec // transport, reason
	StateBackendUp    prometheus.Gauge       // 1 while the state backend takes writes
	StateFileCorrupt  prometheus.Gauge       // 1 when this process found its state file unreadable and started empty
}

// New creates the collectors and registers them, with the Go and process
// collectors, on a fresh registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "requests_total",
			Help: "SIP requests received, by method and ingress transport.",
		}, []string{"method", "transport"}),
		Responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "responses_total",
			Help: "Final and provisional responses sent upstream, by request method and status code.",
		}, []string{"method", "code"}),
		SkipPin: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "skip_pin_total",
			Help: "Ms-Exchange-Command decisions: kept or stripped, with the reason.",
		}, []string{"decision", "reason"}),
		Forwarding: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "forwarding_total",
			Help: "Forwarding rules applied or suppressed by Ms-Sensitivity: private-no-diversion.",
		}, []string{"kind", "outcome"}),
		Auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "auth_total",
			Help: "Authentication outcomes: ok, challenged, failed.",
		}, []string{"result"}),
		TransactionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "transactions_active",
			Help: "Server transactions the proxy is currently handling.",
		}),
		DialogsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "dialogs_active",
			Help: "Calls established through the proxy (record-routed) whose BYE has not passed yet.",
		}),
		RegistrationsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "registrations_active",
			Help: "Live registrar bindings.",
		}),
		RulesLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "rules_loaded",
			Help: "Forwarding rules currently serving.",
		}),
		RulesReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "rules_reload_total",
			Help: "Rules file loads, by result.",
		}, []string{"result"}),
		RulesLastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "rules_last_reload_timestamp_seconds",
			Help: "Unix time of the last successful rules load.",
		}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "request_duration_seconds",
			Help:    "Time from receiving a request to sending its final response, by method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"method"}),
		Throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "throttled_total",
			Help: "Requests or connections refused by abuse limits, by reason.",
		}, []string{"reason"}),
		UpstreamUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "upstream_up",
			Help: "Whether an upstream target (transport:host:port) is in service (1) or skipped after failed probes or calls (0).",
		}, []string{"target"}),
		UpstreamFailovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_failover_total",
			Help: "Requests moved on from an upstream target to the next one, by target and reason.",
		}, []string{"target", "reason"}),
		Redirects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "redirects_total",
			Help: "3xx responses from voicemail servers, by what the proxy did with them: followed, or not (not_peer, loop, limit).",
		}, []string{"outcome"}),
		Malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "malformed_total",
			Help: "SIP messages that could not be parsed, by ingress transport (udp, tcp, tls; stream: TCP or TLS, when sipgo does not say which) and what was wrong (start_line, via, from, to, call_id, cseq, contact, max_forwards, content_length, route, header, line_break, framing, too_large).",
		}, []string{"transport", "reason"}),
		StateBackendUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "state_backend_up",
			Help: "1 while the state backend (file or Redis) takes writes; 0 while it does not (REGISTER is answered 503, calls are served from memory).",
		}),
		StateFileCorrupt: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "state_file_corrupt",
			Help: "1 when the state file could not be read at start: it was renamed aside and this process started with empty state.",
		}),
	}
	m.Registry.MustRegister(
		// Beside the defaults, two scheduler figures from runtime/metrics:
		// goroutines started (sipgo starts one per message received, so
		// per call it says how the message path is built) and how long
		// runnable goroutines waited for a thread (what the Go runtime adds
		// to a call's latency). docs/performance.md uses both.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/sched/(goroutines-created|latencies):`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.Requests, m.Responses, m.SkipPin, m.Forwarding, m.Auth,
		m.TransactionsActive, m.DialogsActive, m.RegistrationsActive, m.RulesLoaded,
		m.RulesReloads, m.RulesLastReload, m.RequestDuration, m.Throttled, m.Malformed,
		m.UpstreamUp, m.UpstreamFailovers, m.Redirects,
		m.StateBackendUp, m.StateFileCorrupt,
	)
	// Pre-create the fixed-label series so dashboards and alerts see zeros
	// instead of absent series before the first event.
	for _, r := range []string{"ok", "challenged", "failed"} {
		m.Auth.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.RulesReloads.WithLabelValues(r)
	}
	for _, k := range []string{"immediate", "unanswered", "busy"} {
		for _, o := range []string{"applied", "suppressed"} {
			m.Forwarding.WithLabelValues(k, o)
		}
	}
	m.RequestsOf = NewCounterPairs(m.Requests)
	m.ResponsesOf = NewCounterPairs(m.Responses)
	m.RequestDurationOf = NewObserverSingles(m.RequestDuration)
	return m
}

// Reloaded records a rules load; it satisfies rules.Reporter.
func (m *Metrics) Reloaded(ok bool, rules int, at time.Time) {
	if !ok {
		m.RulesReloads.WithLabelValues("error").Inc()
		return
	}
	m.RulesReloads.WithLabelValues("ok").Inc()
	m.RulesLoaded.Set(float64(rules))
	m.RulesLastReload.Set(float64(at.UnixNano()) / 1e9)
}
