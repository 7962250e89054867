// Package metrics declares every Prometheus collector sipproxy exports, in one
// place, on a registry that is passed in (never the global default), and
// serves /metrics, /healthz and /readyz.
//
// The names and label sets are part of the operator contract in docs/design.md:
// dashboards and alerts depend on them, so they change only deliberately.
package metrics
