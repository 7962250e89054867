package proxy

import "testing"

// TestBranchTable checks the branch state machine against RFC 3261 line
// by line: each row is a path of inputs and where it must end.
func TestBranchTable(t *testing.T) {
	cases := []struct {
		name string
		path []branchInput
		want branchState
		acts []branchAction // the action of each step, aNone for "no transition"
	}{
		{"answered", []branchInput{inTrying, inRinging, inAnswered}, bDone, []branchAction{aHeard, aRing, aAnswer}},
		{"answered without 1xx", []branchInput{inAnswered}, bDone, []branchAction{aAnswer}},
		{"busy", []branchInput{inTrying, inFailed}, bDone, []branchAction{aHeard, aFail}},
		{"silent next hop (no 100)", []branchInput{inSilence}, bDone, []branchAction{aGiveUp}},
		{"silence after 100 changes nothing", []branchInput{inTrying, inSilence}, bTrying, []branchAction{aHeard, aNone}},
		{"Timer C without 1xx gives up (16.8)", []branchInput{inTrying, inTimerC}, bDone, []branchAction{aHeard, aGiveUp}},
		{"Timer C with 1xx cancels (16.8)", []branchInput{inRinging, inTimerC, inFailed}, bDone, []branchAction{aRing, aTimerCCancel, aFail}},
		// 9.1: a CANCEL may be sent only after a provisional response.
		{"cancel before any response waits", []branchInput{inCancel}, bCancelCalling, []branchAction{aMarkCancel}},
		{"cancel waits past 100", []branchInput{inCancel, inTrying}, bCancelTrying, []branchAction{aMarkCancel, aHeard}},
		{"cancel sent on the 1xx, not relayed", []branchInput{inCancel, inTrying, inRinging}, bCancelling, []branchAction{aMarkCancel, aHeard, aRingCancel}},
		{"cancel while ringing is sent at once", []branchInput{inRinging, inCancel}, bCancelling, []branchAction{aRing, aSendCancel}},
		{"second cancel is nothing", []branchInput{inRinging, inCancel, inCancel}, bCancelling, []branchAction{aRing, aSendCancel, aNone}},
		{"487 after CANCEL", []branchInput{inRinging, inCancel, inFailed}, bDone, []branchAction{aRing, aSendCancel, aFail}},
		{"2xx racing our CANCEL still goes up (16.7 step 5)", []branchInput{inRinging, inCancel, inAnswered}, bDone, []branchAction{aRing, aSendCancel, aAnswer}},
		{"CANCEL ignored for 64*T1", []branchInput{inRinging, inCancel, inCancelTimeout}, bDone, []branchAction{aRing, aSendCancel, aGiveUpCancel}},
		{"Timer C while cancelling marks the 487 a timeout", []branchInput{inRinging, inCancel, inTimerC}, bCancelling, []branchAction{aRing, aSendCancel, aTimerCMark}},
		{"silent branch being cancelled is given up", []branchInput{inCancel, inSilence}, bDone, []branchAction{aMarkCancel, aGiveUp}},
		{"transport failure", []branchInput{inEnded}, bDone, []branchAction{aEnded}},
		{"malformed final is a 502", []branchInput{inRinging, inMalformed}, bDone, []branchAction{aRing, aBadGateway}},
		{"late 2xx after a failure still goes up", []branchInput{inFailed, inAnswered}, bDone, []branchAction{aFail, aAnswer}},
		{"late final after done: only a 6xx counts", []branchInput{inFailed, inFailed}, bDone, []branchAction{aFail, aLateFinal}},
		{"nothing after done but finals", []branchInput{inFailed, inRinging, inTimerC, inSilence, inCancel, inEnded, inCancelTimeout}, bDone,
			[]branchAction{aFail, aNone, aNone, aNone, aNone, aNone, aNone}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := bCalling
			for i, in := range tc.path {
				tr := branchTable[s][in]
				act := aNone
				if tr != nil {
					s, act = tr.next, tr.act
				}
				if act != tc.acts[i] {
					t.Fatalf("step %d (input %d): action %d, want %d", i, in, act, tc.acts[i])
				}
			}
			if s != tc.want {
				t.Fatalf("ended in %s, want %s", s, tc.want)
			}
		})
	}
}

// TestBranchTableInvariants: whatever state a branch is in, a final
// response or the end of its transaction decides it; and a CANCEL is
// never sent before a provisional response (RFC 3261 9.1).
func TestBranchTableInvariants(t *testing.T) {
	for s := range nBranchStates {
		for _, in := range []branchInput{inAnswered, inFailed} {
			if tr := branchTable[s][in]; tr == nil || tr.next != bDone {
				t.Errorf("%s: input %d does not decide the branch", s, in)
			}
		}
		if s != bDone {
			if tr := branchTable[s][inEnded]; tr == nil || tr.next != bDone {
				t.Errorf("%s: the end of the transaction does not decide the branch", s)
			}
		}
		for in := range nBranchInputs {
			tr := branchTable[s][in]
			if tr == nil {
				continue
			}
			switch tr.act {
			case aSendCancel, aTimerCCancel:
				if s != bProceeding {
					t.Errorf("%s: CANCEL sent before a provisional response", s)
				}
			case aRingCancel:
				if in != inRinging {
					t.Errorf("%s: waiting CANCEL sent on input %d, not on a 1xx", s, in)
				}
			}
			if s == bDone && tr.next != bDone {
				t.Errorf("done branch left done on input %d", in)
			}
		}
	}
}
