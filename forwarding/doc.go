// Package forwarding decides what happens to a call for a local user: the
// target user, the call's flags (no-diversion) and the users' bindings in,
// a Plan out. It is pure: no sockets, no clock, no goroutines; the proxy
// executes plans.
//
// # Rules
//
// An immediate rule retargets before ringing (RFC 4458 cause 302). An
// unanswered rule retargets when nobody answers within its after (408), or
// at once when the user has no bindings (480). A busy rule retargets on
// 486, 600 or 603 (486). Chains follow each user's rules (alice -> bob ->
// bob's mailbox) up to max_diversions for the whole call; a diversion to a
// target already in the call is never made (alice -> bob -> alice rings
// bob). A voicemail target (opaque=app:voicemail) ends a chain.
//
// With Flags.NoDiversion (Ms-Sensitivity: private-no-diversion, MS-OCEXUM
// 3.2) no rule applies: the plan rings the user's own bindings, a user
// without bindings gets the registrar's 480, the caller gets the real final
// response, and Plan.Suppressed names the rules that were turned off.
//
// # Executing a plan
//
// Take one rules snapshot per call and keep it for every decision of the
// call, so that a reload does not change a call already ringing:
//
//	in := forwarding.Input{
//		Target:        rules.TargetOf(req.Recipient),
//		Flags:         forwarding.Flags{NoDiversion: noDiversion},
//		Rules:         store.Snapshot(),
//		HasBindings:   registrar.HasBindings, // func(aor string) bool
//		MaxDiversions: cfg.Forwarding.MaxDiversions,
//	}
//	plan := forwarding.Decide(in)
//	for {
//		// count plan.Applied as forwarding_total{kind,outcome="applied"},
//		// plan.Suppressed as outcome="suppressed"; log plan.Stopped.
//		// if len(plan.History) > 0, set on the outgoing request:
//		//   History-Info: forwarding.HistoryInfo(plan.Original(), plan.History)
//		//   Diversion:    forwarding.Diversion(plan.History)
//		// deliver to plan.Target: its bindings (local user), UM (voicemail
//		// URI) or the static route; start a plan.NoAnswer.After timer if
//		// plan.NoAnswer != nil.
//		var r *forwarding.Retarget
//		switch {
//		case answered, cancelledByCaller:
//			return
//		case noAnswerTimerFired:
//			r = plan.NoAnswer // after cancelling the branches
//		case allBranchesFailed:
//			r = plan.RetargetOn(bestCode) // nil: relay the response
//		}
//		if r == nil {
//			return
//		}
//		// count r.Kind as applied
//		plan = forwarding.Decide(plan.Follow(r))
//	}
//
// The header builders return one value per entry for the whole history, so
// each retargeted request gets them afresh rather than appended to. They
// number History-Info from index 1 and do not merge History-Info or
// Diversion entries the INVITE arrived with; the proxy keeps received
// Diversion values after these (most recent first).
package forwarding
