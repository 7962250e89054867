package proxy

import (
	"context"
	"sync"
	"time"
)

// dialogs counts the calls established through us with our Record-Route,
// by Call-ID, until their BYE has passed. A drain waits for them: their
// BYE needs the proxy still up. An entry older than maxAge is forgotten
// (a BYE that never came must not hold a drain or memory forever).
type dialogs struct {
	mu     sync.Mutex
	m      map[string]dialogEntry
	maxAge time.Duration
	gauge  interface{ Set(float64) }
}

type dialogEntry struct {
	n     int // 2xx relayed (forks may answer twice)
	since time.Time
}

func newDialogs(maxAge time.Duration, gauge interface{ Set(float64) }) *dialogs {
	return &dialogs{m: make(map[string]dialogEntry), maxAge: maxAge, gauge: gauge}
}

func (d *dialogs) open(callID string) {
	if callID == "" {
		return
	}
	d.mu.Lock()
	e := d.m[callID]
	if e.n == 0 {
		e.since = time.Now()
	}
	e.n++
	d.m[callID] = e
	d.gauge.Set(float64(len(d.m)))
	d.mu.Unlock()
}

// closed ends a call when its BYE got a final response.
func (d *dialogs) closed(callID string) {
	d.mu.Lock()
	if e, ok := d.m[callID]; ok {
		if e.n--; e.n <= 0 {
			delete(d.m, callID)
		} else {
			d.m[callID] = e
		}
		d.gauge.Set(float64(len(d.m)))
	}
	d.mu.Unlock()
}

// active is the number of calls open, after forgetting stale ones.
func (d *dialogs) active() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	for id, e := range d.m {
		if now.Sub(e.since) > d.maxAge {
			delete(d.m, id)
		}
	}
	d.gauge.Set(float64(len(d.m)))
	return len(d.m)
}

// sweep forgets stale calls every interval until ctx ends, so a call whose
// BYE took another path does not stay in memory (or in the gauge) until a
// drain happens to look.
func (d *dialogs) sweep(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.active()
		}
	}
}
