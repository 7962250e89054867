package proxy

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

const whyTimerC = "Timer C"

// dialTimeout bounds connection set-up to a next hop, so a dead voicemail
// server gives the caller a prompt 503 instead of a hang.
const dialTimeout = 5 * time.Second

// drainTimeout bounds how long a call waits for cancelled branches to end
// (64*T1, RFC 3261 9.1).
const drainTimeout = 32 * time.Second

// call runs the client side of one proxied INVITE (RFC 3261 16.5-16.10):
// parallel branches, best-response selection, CANCEL, Timer C. Every piece
// of state is touched only by the goroutine running the call; branch reader
// goroutines talk to it through events.
type call struct {
	s *Server
	r *request

	events   chan event
	canceled *cancelSignal // fired when the caller CANCELs
	closed   chan struct{} // closed when the call stops listening to events

	branches []*branch
	ours     map[*sip.Response]bool // responses we made up (not relayed from downstream)
	stage    int                    // current stage; a retarget starts a new one
	history  *history               // diversions so far, put on the current stage's requests
	answered bool                   // a 2xx went upstream
	upCancel bool                   // the caller cancelled
}

// cancelSignal is what the server transaction keeps of a call: over UDP it
// lives for Timer H/J after the call, so it must not hold the call itself.
type cancelSignal struct {
	ch   chan struct{}
	once sync.Once
}

func (c *cancelSignal) fire() { c.once.Do(func() { close(c.ch) }) }

type branch struct {
	id     int
	stage  int
	target Target
	out    *sip.Request
	tx     sip.ClientTransaction

	provisional bool          // a 1xx other than 100 arrived: CANCEL may be sent
	heard       bool          // any response arrived (100 included)
	final       *sip.Response // final response received or synthesized
	wantCancel  bool          // cancel as soon as the rules allow
	cancelSent  bool
	cancelWhy   string // Reason header text for the CANCEL
	timerC      *time.Timer
	silence     *time.Timer // no_response_timeout: the next hop said nothing at all
	cancelWait  *time.Timer // after our CANCEL: give the branch up at 64*T1
}

func (b *branch) done() bool { return b.final != nil }

type eventKind int

const (
	evStarted   eventKind = iota // the client transaction exists (b.tx in ev.tx)
	evResponse                   // a response arrived
	evEnded                      // the client transaction ended (ev.err)
	evTimerC                     // Timer C fired
	evSilence                    // no response at all within no_response_timeout
	evCancelled                  // 64*T1 after our CANCEL, still no final response
)

type event struct {
	kind eventKind
	b    *branch
	tx   sip.ClientTransaction
	res  *sip.Response
	err  error
}

func (s *Server) newCall(r *request) *call {
	c := &call{
		s:        s,
		r:        r,
		events:   make(chan event, 4),
		canceled: &cancelSignal{ch: make(chan struct{})},
		closed:   make(chan struct{}),
	}
	if s.cfg.Server.RecordRoute && !inDialog(r.Request) {
		s.dialogs.begin(r.callID, r.in.Source.Addr(), r.Request) // ended in close
	}
	sig := c.canceled
	if !r.tx.OnCancel(func(*sip.Request) { sig.fire() }) {
		sig.fire()
	}
	// 16.2: a stateful proxy answers INVITE with 100 at once, so the caller
	// stops retransmitting while we look for the callee.
	s.respond(r, sip.NewResponseFromRequest(r.Request, sip.StatusTrying, "Trying", nil))
	return c
}

// run is a single stage to fixed targets, then the best response upstream.
func (c *call) run(targets []Target) {
	defer c.close()
	out := c.runStage(targets, 0)
	if !out.answered && !out.canceled {
		c.sendFinal(out.best)
	}
}

// outcome is how a stage ended.
type outcome struct {
	answered bool          // a 2xx went upstream
	canceled bool          // the caller cancelled
	noAnswer bool          // the no-answer timer fired (branches are being cancelled)
	best     *sip.Response // best final response of the stage (nil when noAnswer)
}

// runStage forks the request to targets and processes events until the
// stage is decided: answered, cancelled, every branch final, or (when
// noAnswer > 0) nobody answered in time.
func (c *call) runStage(targets []Target, noAnswer time.Duration) outcome {
	c.stage++
	select {
	case <-c.canceled.ch: // cancelled before we got here: ring nobody
		c.onUpstreamCancel()
	default:
	}
	if c.upCancel {
		return outcome{canceled: true}
	}
	for _, t := range targets {
		c.fork(t)
	}
	var timeout <-chan time.Time
	if noAnswer > 0 {
		tm := time.NewTimer(noAnswer)
		defer tm.Stop()
		timeout = tm.C
	}
	for {
		if c.answered {
			return outcome{answered: true}
		}
		if c.upCancel {
			return outcome{canceled: true}
		}
		if c.stageDone() {
			return outcome{best: bestResponse(c.stageBranches())}
		}
		select {
		case ev := <-c.events:
			c.onEvent(ev)
		case <-c.canceled.ch:
			c.onUpstreamCancel()
		case <-timeout:
			c.cancelStage("No answer")
			return outcome{noAnswer: true}
		}
	}
}

func (c *call) stageBranches() []*branch {
	var out []*branch
	for _, b := range c.branches {
		if b.stage == c.stage {
			out = append(out, b)
		}
	}
	return out
}

func (c *call) stageDone() bool {
	for _, b := range c.branches {
		if b.stage == c.stage && !b.done() {
			return false
		}
	}
	return true
}

// fork starts one branch. The client transaction is created in the
// branch's own goroutine: connection set-up must not hold up the call.
func (c *call) fork(t Target) {
	out, _ := c.s.prepare(c.r, t, c.s.cfg.Server.RecordRoute && !inDialog(c.r.Request))
	c.history.apply(out)
	b := &branch{id: len(c.branches), stage: c.stage, target: t, out: out}
	c.branches = append(c.branches, b)
	timerC := c.s.cfg.Server.TimerC.Duration
	b.timerC = time.AfterFunc(timerC, func() { c.post(event{kind: evTimerC, b: b}) })
	b.silence = time.AfterFunc(c.s.cfg.Server.NoResponseTimeout.Duration, func() { c.post(event{kind: evSilence, b: b}) })
	go c.read(b)
}

// read owns a branch's client transaction: it creates it, passes every
// response to the call and keeps draining after the call stopped listening
// (sipgo blocks a transaction until its responses are read).
func (c *call) read(b *branch) {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	tx, err := c.s.client.TransactionRequest(ctx, b.out, noBuild)
	cancel()
	if err != nil {
		c.post(event{kind: evEnded, b: b, err: err})
		return
	}
	// A 2xx retransmitted after the first means our ACK path lost it
	// upstream: pass it on statelessly (RFC 6026 7.2).
	tx.OnRetransmission(func(res *sip.Response) {
		if res.IsSuccess() {
			if up := c.s.upstream(c.r, res); up != nil {
				c.s.writeStateless(c.r, up)
			}
		}
	})
	c.post(event{kind: evStarted, b: b, tx: tx})
	for {
		select {
		case res := <-tx.Responses():
			c.post(event{kind: evResponse, b: b, res: res})
		case <-tx.Done():
			c.post(event{kind: evEnded, b: b, err: tx.Err()})
			return
		}
	}
}

// post hands an event to the call, or drops it once the call is over.
func (c *call) post(ev event) {
	select {
	case c.events <- ev:
	case <-c.closed:
		if ev.kind == evStarted {
			ev.tx.Terminate()
		}
	}
}

func (c *call) onEvent(ev event) {
	b := ev.b
	switch ev.kind {
	case evStarted:
		b.tx = ev.tx
		if b.wantCancel && b.provisional && !b.cancelSent {
			c.sendCancel(b)
		}
	case evResponse:
		c.onResponse(b, ev.res)
	case evEnded:
		b.timerC.Stop()
		b.silence.Stop()
		if !b.done() {
			b.final = c.synthesize(ev.err)
		}
	case evCancelled:
		if b.done() {
			return
		}
		if b.tx != nil {
			b.tx.Terminate()
		}
		c.r.logger().Info("next hop ignored our CANCEL; branch given up", "target", b.out.Destination())
		if b.cancelWhy == whyTimerC {
			b.final = c.own(sip.StatusRequestTimeout, "Request Timeout")
		} else {
			b.final = c.own(sip.StatusRequestTerminated, "Request Terminated")
		}
	case evSilence:
		// Not even 100 Trying: the next hop is dead or unreachable. Give
		// up on it now rather than after Timer B (32 s).
		if b.done() || b.heard {
			return
		}
		b.timerC.Stop()
		if b.tx != nil {
			b.tx.Terminate()
		}
		c.r.logger().Info("next hop silent; branch given up", "target", b.out.Destination(), "after", c.s.cfg.Server.NoResponseTimeout.Duration.String())
		b.final = c.own(sip.StatusRequestTimeout, "Request Timeout")
	case evTimerC:
		// 16.8: Timer C fired. With a provisional response the branch is
		// cancelled (its 487 becomes the final); without, it is given up.
		if b.done() {
			return
		}
		if b.provisional {
			b.wantCancel, b.cancelWhy = true, whyTimerC
			c.sendCancel(b)
			return
		}
		if b.tx != nil {
			b.tx.Terminate()
		}
		b.final = c.own(sip.StatusRequestTimeout, "Request Timeout")
	}
}

func (c *call) onResponse(b *branch, res *sip.Response) {
	if !b.heard {
		b.heard = true
		b.silence.Stop()
	}
	if !cleanResponse(res) {
		// Not relayed as it is (see cleanResponse): a provisional one is
		// dropped, a final one (2xx included) counts as 502 for this
		// branch and nothing is learned from it.
		c.s.malformedResponse(res, c.r.callID) // counted; logged once per source per minute
		if res.IsProvisional() || b.done() {
			return
		}
		b.timerC.Stop()
		b.final = c.own(sip.StatusBadGateway, "Bad Gateway")
		return
	}
	code := res.StatusCode
	switch {
	case code == sip.StatusTrying:
		// Hop by hop; we sent our own.
	case code < 200:
		b.provisional = true
		b.timerC.Reset(c.s.cfg.Server.TimerC.Duration)
		if b.wantCancel {
			if !b.cancelSent && b.tx != nil {
				c.sendCancel(b)
			}
			return // a branch being cancelled no longer speaks for the call
		}
		if b.stage == c.stage {
			c.learnDialog(res)
			c.relay(res)
		}
	case code < 300:
		b.timerC.Stop()
		b.final = res
		// 16.7 step 5: every 2xx goes upstream at once, whatever else happened.
		c.answered = true
		c.learnDialog(res)
		c.relay(res)
		c.cancelOthers(b, "Call completed elsewhere")
	default:
		b.timerC.Stop()
		if b.final == nil {
			b.final = res
			if code == sip.StatusRequestTerminated && b.cancelWhy == whyTimerC {
				// Our own Timer C cancelled it: to the caller that is a timeout.
				b.final = c.own(sip.StatusRequestTimeout, "Request Timeout")
			}
		}
		if code >= 600 && b.stage == c.stage {
			// 16.7 step 5: a 6xx ends the search.
			c.cancelOthers(b, "Global failure")
		}
	}
}

// learnDialog records, before the caller sees res, the dialog it creates
// or confirms: the caller's ACK, PRACK or BYE may arrive the moment res
// is out, and is relayed only within a known dialog. A re-INVITE's 2xx
// refreshes the callee's target instead.
func (c *call) learnDialog(res *sip.Response) {
	if !c.s.cfg.Server.RecordRoute {
		return
	}
	if inDialog(c.r.Request) {
		if res.IsSuccess() {
			// The answer to our own request: the other side, by its tag.
			if a, ok := addrOf(res.Source()); ok && res.To() != nil {
				tag, _ := res.To().Params.Get("tag")
				c.s.dialogs.refreshed(c.r.callID, a, res, true, tag)
			}
		}
		return
	}
	c.s.dialogs.answered(c.r.callID, res, c.s.routeNamesUs)
}

// relay sends a downstream response upstream.
func (c *call) relay(res *sip.Response) {
	if up := c.s.upstream(c.r, res); up != nil {
		c.s.respond(c.r, up)
	}
}

// own makes a final response of ours for the caller.
func (c *call) own(code int, reason string) *sip.Response {
	res := sip.NewResponseFromRequest(c.r.Request, code, reason, nil)
	if c.ours == nil {
		c.ours = make(map[*sip.Response]bool)
	}
	c.ours[res] = true
	return res
}

// synthesize is the final response a branch gets when its transaction ended
// without one: Timer B (408) or a connection that could not be made (503).
func (c *call) synthesize(err error) *sip.Response {
	if err == nil || errors.Is(err, sip.ErrTransactionTimeout) {
		return c.own(sip.StatusRequestTimeout, "Request Timeout")
	}
	if errors.Is(err, sip.ErrTransactionCanceled) || errors.Is(err, sip.ErrTransactionTerminated) {
		return c.own(sip.StatusRequestTerminated, "Request Terminated")
	}
	c.r.logger().Info("branch failed", "error", err)
	return c.own(sip.StatusServiceUnavailable, "Next Hop Unreachable")
}

func (c *call) onUpstreamCancel() {
	if c.upCancel {
		return
	}
	c.upCancel = true
	// sipgo's transaction layer has already answered the CANCEL with 200
	// and the INVITE with 487 (16.10); it never reaches the pipeline, so
	// count it here.
	c.s.m.Requests.WithLabelValues(string(sip.CANCEL), c.r.in.Transport).Inc()
	c.s.m.Responses.WithLabelValues(string(sip.CANCEL), "200").Inc()
	if !c.r.finished {
		c.r.finished = true
		c.s.m.Responses.WithLabelValues(string(c.r.Method), "487").Inc()
		c.s.m.RequestDuration.WithLabelValues(string(c.r.Method)).Observe(time.Since(c.r.start).Seconds())
	}
	c.cancelOthers(nil, "")
}

// cancelOthers cancels every pending branch but keep (16.10).
func (c *call) cancelOthers(keep *branch, why string) {
	for _, b := range c.branches {
		if b == keep || b.done() || b.wantCancel {
			continue
		}
		b.wantCancel, b.cancelWhy = true, why
		if b.provisional && b.tx != nil {
			c.sendCancel(b)
		}
	}
}

// cancelStage cancels the current stage's pending branches (no answer).
func (c *call) cancelStage(why string) {
	for _, b := range c.stageBranches() {
		if b.done() || b.wantCancel {
			continue
		}
		b.wantCancel, b.cancelWhy = true, why
		if b.provisional && b.tx != nil {
			c.sendCancel(b)
		}
	}
}

// sendCancel builds the CANCEL for a branch (RFC 3261 9.1: same Request-URI,
// Call-ID, To, From, CSeq number and the single Via of the request, Route
// copied) and runs its own client transaction.
func (c *call) sendCancel(b *branch) {
	if b.cancelSent {
		return
	}
	b.cancelSent = true
	// RFC 3261 9.1: without a final response 64*T1 after the CANCEL, the
	// branch is given up (sipgo stops Timer B once a 1xx arrived, so a
	// next hop ignoring our CANCEL would otherwise hold the call forever).
	b.cancelWait = time.AfterFunc(sip.Timer_B, func() { c.post(event{kind: evCancelled, b: b}) })
	inv := b.out
	req := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	req.AppendHeader(inv.Via().Clone())
	for _, h := range inv.GetHeaders("Route") {
		req.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.HeaderClone(inv.From()))
	req.AppendHeader(sip.HeaderClone(inv.To()))
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	if b.cancelWhy != "" {
		req.AppendHeader(sip.NewHeader("Reason", `SIP;cause=200;text="`+b.cancelWhy+`"`))
	}
	req.SetBody(nil)
	req.SetTransport(inv.Transport())
	req.SetDestination(inv.Destination())
	req.Laddr = inv.Laddr
	log := c.r.logger()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		tx, err := c.s.client.TransactionRequest(ctx, req, noBuild)
		cancel()
		if err != nil {
			log.Info("CANCEL not sent", "target", req.Destination(), "error", err)
			return
		}
		defer tx.Terminate()
		for {
			select {
			case res := <-tx.Responses():
				if !res.IsProvisional() {
					return
				}
			case <-tx.Done():
				return
			}
		}
	}()
}

// sendFinal sends the chosen final response upstream (16.7 step 6), or 408
// when no branch produced one.
func (c *call) sendFinal(best *sip.Response) {
	if best == nil {
		c.s.reply(c.r, sip.StatusRequestTimeout, "Request Timeout")
		return
	}
	if c.ours[best] {
		c.s.respond(c.r, best)
		return
	}
	if best.StatusCode == sip.StatusServiceUnavailable {
		// 16.7 step 6: a downstream 503 speaks for that hop only; passing
		// it on would tell the caller that *we* cannot serve anything.
		res := sip.NewResponseFromRequest(c.r.Request, sip.StatusInternalServerError, "Downstream Unavailable", nil)
		c.s.respond(c.r, res)
		return
	}
	c.relay(best)
}

// close stops the call listening for events, after waiting (bounded) for
// branches still pending so that CANCELs get sent and late 2xx forwarded.
func (c *call) close() {
	deadline := time.NewTimer(drainTimeout)
	defer deadline.Stop()
	for !c.allDone() {
		select {
		case ev := <-c.events:
			c.onEvent(ev)
		case <-c.canceled.ch:
			c.onUpstreamCancel()
		case <-deadline.C:
			for _, b := range c.branches {
				if !b.done() && b.tx != nil {
					b.tx.Terminate()
				}
			}
			goto out
		}
	}
out:
	if c.s.cfg.Server.RecordRoute && !inDialog(c.r.Request) {
		c.s.dialogs.ended(c.r.callID)
	}
	for _, b := range c.branches {
		b.timerC.Stop()
		b.silence.Stop()
		if b.cancelWait != nil {
			b.cancelWait.Stop()
		}
		// An answered branch's transaction would linger 64*T1 in the
		// Accepted state (RFC 6026) only to pass on 2xx retransmissions;
		// those are forwarded statelessly (Server.strayResponse), so end it
		// now rather than hold the whole call in memory. A branch that
		// failed over UDP keeps its transaction: it must ACK
		// retransmissions of the final response (Timer D).
		if b.tx != nil && b.final != nil && (b.final.IsSuccess() || sip.IsReliable(b.out.Transport())) {
			b.tx.Terminate()
		}
	}
	close(c.closed)
}

func (c *call) allDone() bool {
	for _, b := range c.branches {
		if !b.done() {
			return false
		}
	}
	return true
}

// bestResponse chooses among final responses (16.7 step 6): a 6xx wins;
// otherwise the lowest class, and within 4xx the answers that tell the
// caller most (401/407 with all challenges merged) beat the generic ones.
func bestResponse(bs []*branch) *sip.Response {
	var best *sip.Response
	rank := func(code int) int {
		switch {
		case code >= 600:
			return 0
		case code >= 300 && code < 400:
			return 1
		case code == 401 || code == 407:
			return 2
		case code >= 400 && code < 500 && code != 408 && code != 480 && code != 487:
			return 3
		case code == 480 || code == 408:
			return 4
		case code == 487:
			return 5
		case code >= 500:
			return 6
		}
		return 7
	}
	for _, b := range bs {
		if b.final == nil || b.final.IsSuccess() {
			continue
		}
		if best == nil || rank(b.final.StatusCode) < rank(best.StatusCode) {
			best = b.final
		}
	}
	if best != nil && (best.StatusCode == 401 || best.StatusCode == 407) {
		merged := best.Clone()
		for _, b := range bs {
			if b.final == nil || b.final == best {
				continue
			}
			for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
				for _, h := range b.final.GetHeaders(name) {
					merged.AppendHeader(sip.HeaderClone(h))
				}
			}
		}
		best = merged
	}
	return best
}
