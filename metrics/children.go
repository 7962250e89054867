package metrics

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// children caches a metric vector's children by their label values.
// WithLabelValues checks the values' UTF-8 and hashes them on every call;
// the proxy counts every message it handles, so it keeps the children it
// has seen instead. The set of children is the vector's own: this holds no
// label set the vector does not. Callers bound the label values (see the
// proxy's methodLabel): each new set is a new child, here and in the vector.
type children[K comparable, M any] struct {
	mu      sync.RWMutex
	m       map[K]M
	resolve func(K) M // the vector's WithLabelValues
	own     func(K) K // a copy of the key to keep: a value may be a slice of a whole received message
}

func (c *children[K, M]) with(k K) M {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return v
	}
	v = c.resolve(k)
	c.mu.Lock()
	c.m[c.own(k)] = v
	c.mu.Unlock()
	return v
}

// CounterPairs hands out the children of a two-label CounterVec, each
// resolved once.
type CounterPairs struct {
	c children[[2]string, prometheus.Counter]
}

// NewCounterPairs caches the children of vec, which must have two labels.
func NewCounterPairs(vec *prometheus.CounterVec) *CounterPairs {
	return &CounterPairs{children[[2]string, prometheus.Counter]{
		m:       make(map[[2]string]prometheus.Counter),
		resolve: func(k [2]string) prometheus.Counter { return vec.WithLabelValues(k[0], k[1]) },
		own:     func(k [2]string) [2]string { return [2]string{strings.Clone(k[0]), strings.Clone(k[1])} },
	}}
}

// With is vec.WithLabelValues(a, b).
func (p *CounterPairs) With(a, b string) prometheus.Counter { return p.c.with([2]string{a, b}) }

// ObserverSingles is CounterPairs for a one-label HistogramVec.
type ObserverSingles struct {
	c children[string, prometheus.Observer]
}

// NewObserverSingles caches the children of vec, which must have one label.
func NewObserverSingles(vec *prometheus.HistogramVec) *ObserverSingles {
	return &ObserverSingles{children[string, prometheus.Observer]{
		m:       make(map[string]prometheus.Observer),
		resolve: func(a string) prometheus.Observer { return vec.WithLabelValues(a) },
		own:     strings.Clone,
	}}
}

// With is vec.WithLabelValues(a).
func (s *ObserverSingles) With(a string) prometheus.Observer { return s.c.with(a) }
