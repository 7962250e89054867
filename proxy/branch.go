package proxy

import (
	"time"

	"github.com/emiago/sipgo/sip"
)

// A branch of a proxied INVITE (RFC 3261 16.6-16.10) is in exactly one of
// these states. What may happen next is written once, in branchTable; the
// call engine feeds the branch its inputs and carries out the actions the
// table names.
type branchState uint8

const (
	bCalling       branchState = iota // sent; nothing heard (no_response_timeout runs)
	bTrying                           // 100 Trying heard
	bProceeding                       // a 1xx other than 100 heard: a CANCEL may be sent (9.1)
	bCancelCalling                    // to be cancelled, nothing heard yet: the CANCEL waits for a 1xx
	bCancelTrying                     // to be cancelled, 100 heard: the CANCEL waits for a 1xx
	bCancelling                       // CANCEL sent; waiting for the final response (64*T1 at most)
	bDone                             // final response received or made up
	nBranchStates
)

func (s branchState) String() string {
	return [...]string{"calling", "trying", "proceeding", "cancel-calling", "cancel-trying", "cancelling", "done"}[s]
}

// branchInput is what can happen to a branch.
type branchInput uint8

const (
	inTrying        branchInput = iota // 100 Trying
	inRinging                          // another 1xx
	inAnswered                         // 2xx
	inFailed                           // 3xx-6xx
	inEnded                            // the client transaction ended without a final response
	inTimerC                           // Timer C fired (16.8)
	inSilence                          // no_response_timeout: not even a 100
	inCancelTimeout                    // 64*T1 after our CANCEL, still no final response
	inCancel                           // the call wants the branch cancelled
	inMalformed                        // a final response we will not relay (see cleanResponse)
	nBranchInputs
)

// branchAction is what the call engine does on a transition.
type branchAction uint8

const (
	aNone         branchAction = iota
	aHeard                     // stop no_response_timeout
	aRing                      // restart Timer C; relay the 1xx upstream (current stage)
	aRingQuiet                 // restart Timer C; the branch no longer speaks for the call
	aRingCancel                // restart Timer C; send the CANCEL that was waiting for a 1xx
	aAnswer                    // the 2xx goes upstream at once, the others are cancelled (16.7 step 5)
	aFail                      // the final response is the branch's
	aLateFinal                 // a final after the branch was decided: only a 6xx still counts
	aEnded                     // synthesize the final from how the transaction ended
	aTimerCCancel              // Timer C with a 1xx: cancel, its 487 becomes a 408
	aTimerCMark                // Timer C while cancelling: the 487 becomes a 408
	aGiveUp                    // terminate the transaction; 408 to the caller
	aGiveUpCancel              // CANCEL ignored: terminate; 487 (408 after Timer C)
	aMarkCancel                // remember why; the CANCEL waits for a 1xx
	aSendCancel                // send the CANCEL now
	aBadGateway                // 502 for this branch; nothing learned from the response
)

type transition struct {
	next branchState
	act  branchAction
}

// branchTable is the branch's whole life. A missing entry means the input
// changes nothing in that state (a timer that fired after it was no longer
// wanted, a second cancel request).
var branchTable = func() (t [nBranchStates][nBranchInputs]*transition) {
	set := func(s branchState, in branchInput, next branchState, act branchAction) {
		t[s][in] = &transition{next, act}
	}
	for _, s := range []branchState{bCalling, bTrying, bProceeding, bCancelCalling, bCancelTrying, bCancelling} {
		set(s, inAnswered, bDone, aAnswer) // 16.7 step 5: every 2xx, even one racing our CANCEL
		set(s, inFailed, bDone, aFail)
		set(s, inEnded, bDone, aEnded)
		set(s, inMalformed, bDone, aBadGateway)
	}
	set(bDone, inAnswered, bDone, aAnswer)
	set(bDone, inFailed, bDone, aLateFinal)

	set(bCalling, inTrying, bTrying, aHeard)
	set(bCalling, inRinging, bProceeding, aRing)
	set(bCalling, inSilence, bDone, aGiveUp)
	set(bCalling, inTimerC, bDone, aGiveUp)
	set(bCalling, inCancel, bCancelCalling, aMarkCancel)

	set(bTrying, inRinging, bProceeding, aRing)
	set(bTrying, inTimerC, bDone, aGiveUp)
	set(bTrying, inCancel, bCancelTrying, aMarkCancel)

	set(bProceeding, inRinging, bProceeding, aRing)
	set(bProceeding, inTimerC, bCancelling, aTimerCCancel)
	set(bProceeding, inCancel, bCancelling, aSendCancel)

	set(bCancelCalling, inTrying, bCancelTrying, aHeard)
	set(bCancelCalling, inRinging, bCancelling, aRingCancel)
	set(bCancelCalling, inSilence, bDone, aGiveUp)
	set(bCancelCalling, inTimerC, bDone, aGiveUp)

	set(bCancelTrying, inRinging, bCancelling, aRingCancel)
	set(bCancelTrying, inTimerC, bDone, aGiveUp)

	set(bCancelling, inRinging, bCancelling, aRingQuiet)
	set(bCancelling, inTimerC, bCancelling, aTimerCMark)
	set(bCancelling, inCancelTimeout, bDone, aGiveUpCancel)
	return t
}()

type branch struct {
	id     int
	stage  int
	target Target
	out    *sip.Request
	tx     sip.ClientTransaction // set once the transaction exists (evStarted)

	state     branchState
	final     *sip.Response // final response received or made up (bDone)
	cancelWhy string        // Reason header text for the CANCEL
	timerC    *time.Timer
	silence   *time.Timer // no_response_timeout: the next hop said nothing at all
	// cancelWait gives the branch up 64*T1 after our CANCEL.
	cancelWait *time.Timer
	// next says why a serial stage goes on after this branch: it failed
	// as a server fails (failover holds which way) or it redirected us.
	next     string
	failover string
}

// Ways a server fails that send a call on to the next server of its pool
// (RFC 3263 4.3); the reason label of sipproxy_upstream_failover_total.
const (
	failTransport  = "transport" // no connection (refused, unreachable, TLS handshake)
	failTimeout    = "timeout"   // not even 100 Trying within no_response_timeout
	failOverloaded = "503"       // 503 Service Unavailable
)

func (b *branch) fail(why string) { b.next, b.failover = why, why }

func (b *branch) done() bool { return b.state == bDone }

// cancelWanted: the branch is being (or is to be) cancelled.
func (b *branch) cancelWanted() bool {
	return b.state == bCancelCalling || b.state == bCancelTrying || b.state == bCancelling
}

func inputOf(res *sip.Response) branchInput {
	switch code := res.StatusCode; {
	case code == sip.StatusTrying:
		return inTrying
	case code < 200:
		return inRinging
	case code < 300:
		return inAnswered
	}
	return inFailed
}
