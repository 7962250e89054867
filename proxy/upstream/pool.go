package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipproxy/sipproxy/internal/resolve"
)

// Endpoint is a resolved target: an address, port and transport.
type Endpoint = resolve.Endpoint

// Resolver turns a configured URI into endpoints; *resolve.Resolver is one.
type Resolver interface {
	Resolve(ctx context.Context, u sip.Uri) ([]Endpoint, error)
}

// Config is what a Pool is built from.
type Config struct {
	// URIs are the configured targets in order of preference
	// (voicemail.uri, or the entries of voicemail.uris).
	URIs     []sip.Uri
	Resolver Resolver
	// Up (label target) is set to 1 or 0 as targets come into or go out
	// of service; Failovers (labels target, reason) counts Report's
	// failures. Either may be nil. The target label is Endpoint.Key().
	Up        *prometheus.GaugeVec
	Failovers *prometheus.CounterVec
	// Log receives state changes and resolution failures; nil discards.
	Log *slog.Logger
	// Retry, when not 0, offers a down target to calls again once this
	// long has passed since its last failure, so that the call engine's
	// reports can find it back. Set it when there is no Prober (probing
	// off): otherwise a target taken out by two failed calls would stay
	// out for good. With a Prober, leave it 0: probes bring targets back
	// without costing a caller a timeout.
	Retry time.Duration
	// Now is the clock Retry is measured with. Default time.Now.
	Now func() time.Time
}

// Pool is an ordered set of upstream targets and their health. It is safe
// for concurrent use.
type Pool struct {
	uris      []sip.Uri
	res       Resolver
	up        *prometheus.GaugeVec
	failovers *prometheus.CounterVec
	log       *slog.Logger
	retry     time.Duration
	now       func() time.Time

	mu      sync.Mutex
	health  map[string]state // by Endpoint.Key()
	lastErr []string         // per URI: the last resolution error logged ("" when it resolved)
}

// state is one endpoint's health and, when down, when it last failed.
type state struct {
	Health
	failed time.Time
}

// New returns a Pool of c.URIs.
func New(c Config) (*Pool, error) {
	if len(c.URIs) == 0 {
		return nil, errors.New("upstream: no URIs")
	}
	if c.Resolver == nil {
		return nil, errors.New("upstream: no resolver")
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := c.Now
	if now == nil {
		now = time.Now
	}
	return &Pool{
		uris:      c.URIs,
		res:       c.Resolver,
		up:        c.Up,
		failovers: c.Failovers,
		log:       log,
		retry:     c.Retry,
		now:       now,
		health:    map[string]state{},
		lastErr:   make([]string, len(c.URIs)),
	}, nil
}

// Endpoints returns every endpoint of the pool, in service or not: each
// URI's endpoints in resolution order, the URIs in configuration order, an
// address reached through two URIs only once. A URI that does not resolve
// is left out (and logged when its error changes); the error is non-nil
// only when no URI resolves.
func (p *Pool) Endpoints(ctx context.Context) ([]Endpoint, error) {
	var out []Endpoint
	var errs []error
	seen := map[string]bool{}
	for i, u := range p.uris {
		eps, err := p.res.Resolve(ctx, u)
		p.noteResolution(i, u, err)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range eps {
			if k := e.Key(); !seen[k] {
				seen[k] = true
				out = append(out, e)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("upstream: no target resolves: %w", errors.Join(errs...))
	}
	p.track(out, len(errs) == 0)
	return out, nil
}

// Targets returns the endpoints to try for a request, in order: those in
// service (up or suspect), and down ones whose Retry time has come. The
// latter keep their place: a preferred server that is back should get its
// calls back, and while it is not, the calls in flight until the first
// failure is reported lose one no_response_timeout each, then fail over.
//
// When every endpoint is down, it returns them all, in order, where
// Kamailio's dispatcher returns none. Voicemail is where calls go when
// everything else has failed, so refusing the call outright is the worst
// outcome; probes see a target only every interval and may be behind (a
// server back from a restart, a probe lost to an overloaded link), and a
// real INVITE costs at most server.no_response_timeout per target to find
// out. The call engine's Report then keeps the state honest.
func (p *Pool) Targets(ctx context.Context) ([]Endpoint, error) {
	all, err := p.Endpoints(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	in := make([]Endpoint, 0, len(all))
	for _, e := range all {
		st := p.health[e.Key()]
		if st.InService() || p.retry > 0 && now.Sub(st.failed) >= p.retry {
			in = append(in, e)
		}
	}
	if len(in) == 0 {
		return all, nil
	}
	return in, nil
}

// Health returns what is known of an endpoint (Up when nothing is).
func (p *Pool) Health(e Endpoint) Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health[e.Key()].Health
}

// Report records the outcome of sending a request to e. ok: e gave a final
// answer that shows it at work (2xx, 3xx, 4xx, 6xx). Otherwise the call
// engine is failing over, and reason, a metric label, says why in one of
// a few fixed words: "transport" (refused, reset, TLS handshake failed),
// "timeout" (nothing within server.no_response_timeout), "5xx" (e said it
// cannot serve). Two failures in a row take e out of service; an answer
// brings it back.
func (p *Pool) Report(e Endpoint, ok bool, reason string) {
	if !ok && p.failovers != nil {
		p.failovers.WithLabelValues(e.Key(), reason).Inc()
	}
	p.observe(e, ok, reason)
}

// observe moves e's state by the transition table and publishes it.
func (p *Pool) observe(e Endpoint, ok bool, reason string) {
	k := e.Key()
	p.mu.Lock()
	st := p.health[k]
	from, to := st.Health, st.next(ok)
	st.Health = to
	if to == Down {
		st.failed = p.now()
	}
	p.health[k] = st
	p.mu.Unlock()
	p.publish(k, to)
	if from.InService() != to.InService() {
		if to.InService() {
			p.log.Info("upstream target back in service", "target", e.String())
		} else {
			p.log.Warn("upstream target out of service", "target", e.String(), "reason", reason)
		}
	}
}

// track starts tracking endpoints seen for the first time (in service
// until found otherwise). When the resolution was complete, endpoints no
// longer resolved are forgotten, with their metric series, so that state
// and label sets follow DNS rather than grow with it.
func (p *Pool) track(eps []Endpoint, complete bool) {
	p.mu.Lock()
	var added, removed []string
	current := make(map[string]bool, len(eps))
	for _, e := range eps {
		k := e.Key()
		current[k] = true
		if _, ok := p.health[k]; !ok {
			p.health[k] = state{Health: Up}
			added = append(added, k)
		}
	}
	if complete && len(p.health) > len(eps) {
		for k := range p.health {
			if !current[k] {
				delete(p.health, k)
				removed = append(removed, k)
			}
		}
	}
	p.mu.Unlock()
	for _, k := range added {
		p.publish(k, Up)
	}
	for _, k := range removed {
		if p.up != nil {
			p.up.DeleteLabelValues(k)
		}
		if p.failovers != nil {
			p.failovers.DeletePartialMatch(prometheus.Labels{"target": k})
		}
	}
}

func (p *Pool) publish(key string, h Health) {
	if p.up == nil {
		return
	}
	v := 0.0
	if h.InService() {
		v = 1
	}
	p.up.WithLabelValues(key).Set(v)
}

// noteResolution logs a URI's resolution error when it differs from the
// last one logged, and its recovery: once per change, not once per call.
func (p *Pool) noteResolution(i int, u sip.Uri, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	p.mu.Lock()
	prev := p.lastErr[i]
	p.lastErr[i] = msg
	p.mu.Unlock()
	switch {
	case msg == prev:
	case err != nil:
		p.log.Warn("upstream URI does not resolve", "uri", u.String(), "err", err)
	default:
		p.log.Info("upstream URI resolves again", "uri", u.String())
	}
}
