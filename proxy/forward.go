package proxy

import (
	"strings"

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
func (s *Server) callLocal(r *request) {
	var snap forwarding.Lookup
	if s.rules != nil {
		snap = s.rules.Snapshot()
	}
	plan := forwarding.Decide(forwarding.Input{
		Target:        rules.TargetOf(r.Recipient),
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
		targets, code, reason := s.planTargets(plan.Target)
		var out outcome
		if len(targets) == 0 {
			out = outcome{best: c.own(code, reason)}
		} else {
			var after = plan.NoAnswer
			if after != nil {
				out = c.runStage(targets, after.After)
			} else {
				out = c.runStage(targets, 0)
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

// planTargets resolves a plan's target to where it rings: a mailbox goes to
// the voicemail server (with the mailbox in the Request-URI), one of our
// users to their bindings, anyone else along the static routes. With none,
// it returns the final response the caller gets.
func (s *Server) planTargets(t rules.Target) ([]Target, int, string) {
	u := t.Parsed
	if t.IsVoicemail() {
		if s.cfg.Voicemail.URI == "" {
			return nil, sip.StatusNotFound, "No Voicemail Server"
		}
		vt, ok := targetFromURI(s.cfg.Voicemail.Parsed, "")
		if !ok {
			return nil, sip.StatusInternalServerError, "Bad Voicemail URI"
		}
		vt.URI = u
		return []Target{vt}, 0, ""
	}
	if s.isLocalHost(u.Host, u.Port) {
		if u.User == "" || !s.users[u.User] {
			return nil, sip.StatusNotFound, "Not Found"
		}
		ts := s.bindingTargets(s.localAOR(u))
		if len(ts) == 0 {
			return nil, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"
		}
		return ts, 0, ""
	}
	for _, rt := range s.cfg.Routes {
		if rt.Domain != "*" && !strings.EqualFold(rt.Domain, u.Host) {
			continue
		}
		st, ok := targetFromURI(rt.Parsed, "")
		if !ok {
			return nil, sip.StatusInternalServerError, "Bad Route"
		}
		st.URI = u
		return []Target{st}, 0, ""
	}
	return nil, sip.StatusNotFound, "Not Found"
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
