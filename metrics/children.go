package metrics

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// CounterPairs hands out the children of a two-label CounterVec, each
// resolved once. WithLabelValues checks the values' UTF-8 and hashes them
// on every call; the proxy counts every message it handles, so it keeps
// the children it has seen instead. The set of children is the vector's
// own: this holds no label pair the vector does not.
type CounterPairs struct {
	vec *prometheus.CounterVec
	mu  sync.RWMutex
	m   map[[2]string]prometheus.Counter
}

// NewCounterPairs caches the children of vec, which must have two labels.
func NewCounterPairs(vec *prometheus.CounterVec) *CounterPairs {
	return &CounterPairs{vec: vec, m: make(map[[2]string]prometheus.Counter)}
}

// With is vec.WithLabelValues(a, b).
func (p *CounterPairs) With(a, b string) prometheus.Counter {
	k := [2]string{a, b}
	p.mu.RLock()
	c, ok := p.m[k]
	p.mu.RUnlock()
	if ok {
		return c
	}
	c = p.vec.WithLabelValues(a, b)
	p.mu.Lock()
	// Copies: a value may be a slice of a whole received message.
	p.m[[2]string{strings.Clone(a), strings.Clone(b)}] = c
	p.mu.Unlock()
	return c
}

// ObserverSingles is CounterPairs for a one-label HistogramVec.
type ObserverSingles struct {
	vec *prometheus.HistogramVec
	mu  sync.RWMutex
	m   map[string]prometheus.Observer
}

// NewObserverSingles caches the children of vec, which must have one label.
func NewObserverSingles(vec *prometheus.HistogramVec) *ObserverSingles {
	return &ObserverSingles{vec: vec, m: make(map[string]prometheus.Observer)}
}

// With is vec.WithLabelValues(a).
func (s *ObserverSingles) With(a string) prometheus.Observer {
	s.mu.RLock()
	o, ok := s.m[a]
	s.mu.RUnlock()
	if ok {
		return o
	}
	o = s.vec.WithLabelValues(a)
	s.mu.Lock()
	s.m[strings.Clone(a)] = o
	s.mu.Unlock()
	return o
}
