package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// maxProbes bounds the probes in flight at once: a pool whose names
// resolve to many addresses gets them probed a few at a time, not with a
// goroutine each.
const maxProbes = 8

// ProbeFunc sends one probe (an OPTIONS request) to an endpoint and
// returns nil when a final answer other than 5xx came back before ctx
// ended; an error otherwise (transport error, 5xx, no final answer). It
// must return when ctx is done. ResponseError classifies a status code.
type ProbeFunc func(ctx context.Context, e Endpoint) error

// ResponseError is the verdict a ProbeFunc gives for the status code of
// the answer to its probe: nil for a final answer that shows the target
// at work (2xx, and 3xx, 4xx, 6xx: an Exchange UM server may well refuse
// OPTIONS, but it answered), an error for 5xx (the server says it cannot
// serve) and for a provisional answer (not a final one).
func ResponseError(code int) error {
	switch {
	case code < 200:
		return fmt.Errorf("no final answer (got %d)", code)
	case code >= 500 && code < 600:
		return fmt.Errorf("answered %d", code)
	}
	return nil
}

// Prober probes every endpoint of a pool at an interval and feeds the
// results to the pool's health state.
type Prober struct {
	pool     *Pool
	probe    ProbeFunc
	interval time.Duration
	timeout  time.Duration
}

// NewProber returns a Prober of p that probes every interval (0: never),
// each probe given min(noResponse, interval) to succeed, as a call would
// be given server.no_response_timeout (noResponse 0: interval alone).
func (p *Pool) NewProber(probe ProbeFunc, interval, noResponse time.Duration) *Prober {
	timeout := interval
	if noResponse > 0 && noResponse < timeout {
		timeout = noResponse
	}
	return &Prober{pool: p, probe: probe, interval: interval, timeout: timeout}
}

// Run probes every endpoint at once, then every interval, until ctx is
// done; rounds do not overlap. With an interval of 0 it returns at once.
func (pr *Prober) Run(ctx context.Context) {
	if pr.interval <= 0 {
		return
	}
	t := time.NewTicker(pr.interval)
	defer t.Stop()
	for {
		pr.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round probes every endpoint once, at most maxProbes at a time, and
// returns when all the probes have; the resolution error when there is
// nothing to probe.
func (pr *Prober) Round(ctx context.Context) error {
	eps, err := pr.pool.Endpoints(ctx)
	if err != nil {
		return err
	}
	sem := make(chan struct{}, maxProbes)
	var wg sync.WaitGroup
	for _, e := range eps {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			pr.one(ctx, e)
		})
	}
	wg.Wait()
	return nil
}

// one probes e and records the outcome, unless the prober itself is
// stopping (a probe cut short by shutdown says nothing about e).
func (pr *Prober) one(ctx context.Context, e Endpoint) {
	pctx, cancel := context.WithTimeout(ctx, pr.timeout)
	defer cancel()
	err := pr.probe(pctx, e)
	if ctx.Err() != nil {
		return
	}
	if err == nil && pctx.Err() != nil {
		err = pctx.Err() // an answer after the deadline is no answer
	}
	reason := ""
	if err != nil {
		reason = "probe: " + err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			reason = "probe: no answer within " + pr.timeout.String()
		}
	}
	pr.pool.observe(e, err == nil, reason)
}
