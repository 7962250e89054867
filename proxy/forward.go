package proxy

import (
	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/forwarding"
	"github.com/sipproxy/sipproxy/rules"
)

// callLocal delivers an INVITE for one of our users by executing its
// forwarding plan: ring the plan's target, and when the outcome calls for it
// (no answer in time, busy, nobody reachable) retarget and ring again, until
// someone answers, the caller cancels, or the plan has nothing more to try.
// The rules snapshot taken here serves the whole call, so a reload does not
// change a call that is already ringing.
//
// user is the called user as the router located them: a user dialled by
// one of our addresses (sip:dave@127.0.0.1) is the same user, with the
// same rules, as dave@ our domain.
func (s *Server) callLocal(r *request, user string) {
	var snap forwarding.Lookup
	if s.rules != nil {
		snap = s.rules.Snapshot()
	}
	plan := forwarding.Decide(forwarding.Input{
		Target:        rules.Target{URI: r.Recipient.String(), Parsed: r.Recipient, AOR: user},
		Flags:         forwarding.Flags{NoDiversion: r.noDiversion},
		Rules:         snap,
		HasBindings:   s.hasBindings,
		MaxDiversions: s.cfg.Forwarding.MaxDiversions,
	})
	for _, k := range plan.Suppressed {
		s.m.Forwarding.WithLabelValues(string(k), "suppressed").Inc()
		r.logger().Info("forwarding suppressed by Ms-Sensitivity: private-no-diversion", "kind", string(k), "user", plan.Target.AOR)
	}

	c := s.newCall(r)
	defer c.close()
	for {
		for _, h := range plan.Applied {
			s.countRetarget(r, h)
		}
		for _, st := range plan.Stopped {
			r.logger().Info("forwarding not followed", "kind", string(st.Kind), "from", st.From.AOR, "to", st.To.AOR, "reason", string(st.Reason))
		}
		c.history = historyHeaders(plan)
		targets, serial, code, reason := s.planTargets(r, plan.Target)
		var out outcome
		if len(targets) == 0 {
			out = outcome{best: c.own(code, reason)}
		} else {
			var after = plan.NoAnswer
			if after != nil {
				out = c.runStage(targets, serial, after.After)
			} else {
				out = c.runStage(targets, serial, 0)
			}
		}
		var next *forwarding.Retarget
		switch {
		case out.answered, out.canceled:
			return
		case out.noAnswer:
			next = plan.NoAnswer
		default:
			next = plan.RetargetOn(out.best.StatusCode)
		}
		if next == nil {
			c.sendFinal(out.best)
			return
		}
		s.countRetarget(r, next.Hop)
		plan = forwarding.Decide(plan.Follow(next))
	}
}

func (s *Server) countRetarget(r *request, h forwarding.Hop) {
	s.m.Forwarding.WithLabelValues(string(h.Kind), "applied").Inc()
	r.logger().Info("forwarding", "kind", string(h.Kind), "from", h.From.AOR, "to", h.To.URI, "cause", int(h.Cause))
}

func (s *Server) hasBindings(aor string) bool { return len(s.reg.Lookup(aor)) > 0 }

// planTargets resolves a plan's target to where it rings, with the same
// router as the first routing: a mailbox goes to the voicemail servers
// (with the mailbox in the Request-URI), one of our users to their
// bindings, anyone else along the static routes. With none, it returns the
// final response the caller gets. Servers (voicemail, next hops) are rung
// one after the other (serial), a user's bindings all at once.
func (s *Server) planTargets(r *request, t rules.Target) (targets []Target, serial bool, code int, reason string) {
	loc := s.router.Locate(t.Parsed)
	switch loc.Kind {
	case KindVoicemail, KindStatic:
		return loc.Targets, true, 0, ""
	case KindLocal:
		if !loc.Known && r.id.Authenticated() {
			return nil, false, sip.StatusNotFound, "Not Found"
		}
		ts := s.bindingTargets(loc.AOR)
		if len(ts) == 0 {
			return nil, false, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"
		}
		return ts, false, 0, ""
	case KindReject:
		return nil, false, loc.Code, loc.Reason
	}
	return nil, false, sip.StatusNotFound, "Not Found"
}

// historyHeaders are the History-Info (RFC 7044, causes per RFC 4458) and
// Diversion (RFC 5806) values that tell the next hop, Exchange UM above
// all, whose call this was and why it was diverted: UM picks the mailbox
// and the greeting (busy or no answer) from them.
func historyHeaders(p forwarding.Plan) *history {
	if len(p.History) == 0 {
		return nil
	}
	return &history{
		info:      forwarding.HistoryInfo(p.Original(), p.History),
		diversion: forwarding.Diversion(p.History),
	}
}

type history struct{ info, diversion []string }

// apply puts the history on an outgoing request: History-Info after any
// entries it arrived with; our Diversion entries first (most recent first),
// then the ones it arrived with.
func (h *history) apply(out *sip.Request) {
	if h == nil {
		return
	}
	for _, v := range h.info {
		out.AppendHeader(sip.NewHeader("History-Info", v))
	}
	received := out.GetHeaders("Diversion")
	removeHeaderAll(out, "Diversion")
	for _, v := range h.diversion {
		out.AppendHeader(sip.NewHeader("Diversion", v))
	}
	for _, d := range received {
		out.AppendHeader(d)
	}
}
