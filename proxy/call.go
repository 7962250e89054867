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
	// cancelReason is the Reason text of the CANCELs being decided (inCancel).
	cancelReason string
	// queue is what a serial stage tries next: the pool's remaining
	// servers, redirect targets in front.
	queue     []Target
	redirects int             // redirects followed (at most maxRedirects)
	visited   map[string]bool // hops and Request-URIs already tried: no redirect loops
	answered  bool            // a 2xx went upstream
	upCancel  bool            // the caller cancelled
}

// cancelSignal is what the server transaction keeps of a call: over UDP it
// lives for Timer H/J after the call, so it must not hold the call itself.
type cancelSignal struct {
	ch   chan struct{}
	once sync.Once
}

func (c *cancelSignal) fire() { c.once.Do(func() { close(c.ch) }) }

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
func (c *call) run(targets []Target, serial bool) {
	defer c.close()
	out := c.runStage(targets, serial, 0)
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
// noAnswer > 0) nobody answered in time. Serial targets are servers of a
// pool: one at a time, the next when one fails as a server fails (RFC 3263
// 4.3: no connection, 503, silence) or redirects us (16.5).
func (c *call) runStage(targets []Target, serial bool, noAnswer time.Duration) outcome {
	c.stage++
	c.queue = nil
	select {
	case <-c.canceled.ch: // cancelled before we got here: ring nobody
		c.onUpstreamCancel()
	default:
	}
	if c.upCancel {
		return outcome{canceled: true}
	}
	if serial {
		c.queue = c.s.expand(targets)
		if !c.forkNext() {
			c.r.logger().Info("no server of the pool resolves", "target", targets[0].Host)
			return outcome{best: c.own(sip.StatusServiceUnavailable, "Service Unavailable")}
		}
	} else {
		for _, t := range targets {
			c.fork(t)
		}
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
			last := c.branches[len(c.branches)-1]
			if serial {
				c.s.report(last.target, last.failover)
			}
			if serial && last.next != "" && c.forkNext() {
				continue
			}
			if serial && last.failover != "" {
				// Every server of the pool failed as a server: the call
				// did not fail, the servers did (RFC 3263 4.3).
				return outcome{best: c.own(sip.StatusServiceUnavailable, "Service Unavailable")}
			}
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

// forkNext starts the next target of a serial stage; false when none is left.
func (c *call) forkNext() bool {
	if len(c.queue) == 0 {
		return false
	}
	t := c.queue[0]
	c.queue = c.queue[1:]
	c.fork(t)
	return true
}

// fork starts one branch. The client transaction is created in the
// branch's own goroutine: connection set-up must not hold up the call.
func (c *call) fork(t Target) {
	out, hop := c.s.prepare(c.r, t, c.s.cfg.Server.RecordRoute && !inDialog(c.r.Request))
	c.s.checkHop(c.r, out, t, hop)
	if c.visited == nil {
		c.visited = make(map[string]bool)
	}
	c.visited[hopKey(t)] = true
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
	var tx sip.ClientTransaction
	err := c.s.sendAs(ctx, b.out, b.target.Name, isServer(b.target), func() (err error) {
		tx, err = c.s.client.TransactionRequest(ctx, b.out, noBuild)
		return err
	})
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
	case evResponse:
		c.onResponse(b, ev.res)
	case evEnded:
		b.timerC.Stop()
		b.silence.Stop()
		c.step(b, inEnded, nil, ev.err)
	case evCancelled:
		c.step(b, inCancelTimeout, nil, nil)
	case evSilence:
		c.step(b, inSilence, nil, nil)
	case evTimerC:
		c.step(b, inTimerC, nil, nil)
	}
}

func (c *call) onResponse(b *branch, res *sip.Response) {
	b.silence.Stop() // the next hop is alive
	if !cleanResponse(res) {
		// Not relayed as it is (see cleanResponse): a provisional one is
		// dropped, a final one (2xx included) counts as 502 for this
		// branch and nothing is learned from it.
		c.s.malformedResponse(res, c.r.callID) // counted; logged once per source per minute
		if !res.IsProvisional() {
			c.step(b, inMalformed, res, nil)
		}
		return
	}
	c.step(b, inputOf(res), res, nil)
}

// step moves a branch along branchTable and carries out the action.
func (c *call) step(b *branch, in branchInput, res *sip.Response, err error) {
	tr := branchTable[b.state][in]
	if tr == nil {
		return
	}
	b.state = tr.next
	switch tr.act {
	case aHeard:
	case aRing:
		b.timerC.Reset(c.s.cfg.Server.TimerC.Duration)
		if b.stage == c.stage {
			c.learnDialog(res)
			c.relay(res)
		}
	case aRingQuiet:
		b.timerC.Reset(c.s.cfg.Server.TimerC.Duration)
	case aRingCancel:
		b.timerC.Reset(c.s.cfg.Server.TimerC.Duration)
		c.sendCancel(b)
	case aAnswer:
		b.timerC.Stop()
		b.final = res
		// 16.7 step 5: every 2xx goes upstream at once, whatever else happened.
		c.answered = true
		c.learnDialog(res)
		c.relay(res)
		c.cancelOthers(b, "Call completed elsewhere")
	case aFail:
		b.timerC.Stop()
		if res.StatusCode >= 300 && res.StatusCode < 400 && b.target.Voicemail && c.redirect(b, res) {
			b.next = "redirect" // the 3xx speaks for nobody now: the new targets will
			return
		}
		b.final = res
		if res.StatusCode == sip.StatusServiceUnavailable {
			b.fail(failOverloaded)
		}
		if res.StatusCode == sip.StatusRequestTerminated && b.cancelWhy == whyTimerC {
			// Our own Timer C cancelled it: to the caller that is a timeout.
			b.final = c.own(sip.StatusRequestTimeout, "Request Timeout")
		}
		c.globalFailure(b, res)
	case aLateFinal:
		b.timerC.Stop()
		c.globalFailure(b, res)
	case aEnded:
		b.final = c.synthesize(err)
		if b.final.StatusCode == sip.StatusServiceUnavailable {
			b.fail(failTransport)
		}
	case aBadGateway:
		b.timerC.Stop()
		b.final = c.own(sip.StatusBadGateway, "Bad Gateway")
	case aTimerCCancel:
		// 16.8: Timer C fired with a provisional response: the branch is
		// cancelled, and its 487 becomes the final.
		b.cancelWhy = whyTimerC
		c.sendCancel(b)
	case aTimerCMark:
		b.cancelWhy = whyTimerC
	case aGiveUp:
		// Timer C without a provisional response, or not even 100 Trying
		// within no_response_timeout: the next hop is dead or unreachable.
		// Give up on it now rather than after Timer B (32 s).
		b.timerC.Stop()
		if b.tx != nil {
			b.tx.Terminate()
		}
		b.final = c.own(sip.StatusRequestTimeout, "Request Timeout")
		if in == inSilence {
			c.r.logger().Info("next hop silent; branch given up", "target", b.out.Destination(), "after", c.s.cfg.Server.NoResponseTimeout.Duration.String())
			b.fail(failTimeout)
		}
	case aGiveUpCancel:
		if b.tx != nil {
			b.tx.Terminate()
		}
		c.r.logger().Info("next hop ignored our CANCEL; branch given up", "target", b.out.Destination())
		if b.cancelWhy == whyTimerC {
			b.final = c.own(sip.StatusRequestTimeout, "Request Timeout")
		} else {
			b.final = c.own(sip.StatusRequestTerminated, "Request Terminated")
		}
	case aMarkCancel:
		b.cancelWhy = c.cancelReason
	case aSendCancel:
		b.cancelWhy = c.cancelReason
		c.sendCancel(b)
	}
}

// globalFailure: 16.7 step 5, a 6xx on the current stage ends the search.
func (c *call) globalFailure(b *branch, res *sip.Response) {
	if res.StatusCode >= 600 && b.stage == c.stage {
		c.cancelOthers(b, "Global failure")
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
	c.s.dialogs.answered(c.r.callID, res, c.s.router.RouteNamesUs)
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
	c.s.m.RequestsOf.With(string(sip.CANCEL), c.r.in.Transport).Inc()
	c.s.m.ResponsesOf.With(string(sip.CANCEL), "200").Inc()
	if !c.r.finished {
		c.r.finished = true
		c.s.m.ResponsesOf.With(methodLabel(c.r.Method), "487").Inc()
		c.s.m.RequestDurationOf.With(methodLabel(c.r.Method)).Observe(time.Since(c.r.start).Seconds())
	}
	c.cancelOthers(nil, "")
}

// cancelOthers cancels every pending branch but keep (16.10).
func (c *call) cancelOthers(keep *branch, why string) {
	c.cancelReason = why
	for _, b := range c.branches {
		if b != keep {
			c.step(b, inCancel, nil, nil)
		}
	}
}

// cancelStage cancels the current stage's pending branches (no answer).
func (c *call) cancelStage(why string) {
	c.cancelReason = why
	for _, b := range c.stageBranches() {
		c.step(b, inCancel, nil, nil)
	}
}

// sendCancel builds the CANCEL for a branch (RFC 3261 9.1: same Request-URI,
// Call-ID, To, From, CSeq number and the single Via of the request, Route
// copied) and runs its own client transaction.
func (c *call) sendCancel(b *branch) {
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
	log, name, server := c.r.logger(), b.target.Name, isServer(b.target)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		var tx sip.ClientTransaction
		err := c.s.sendAs(ctx, req, name, server, func() (err error) {
			tx, err = c.s.client.TransactionRequest(ctx, req, noBuild)
			return err
		})
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
