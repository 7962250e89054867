package proxy

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/emiago/sipgo/sip"

	"github.com/sipproxy/sipproxy/proxy/policy"
	"github.com/sipproxy/sipproxy/proxy/router"
)

// maxRedirects bounds the 3xx a call follows: the Exchange Call Router
// redirects once, to the Mailbox server; more is a loop or a misconfiguration.
const maxRedirects = 3

// Outcomes of a 3xx from a voicemail server (sipproxy_redirects_total).
const (
	redirectFollowed = "followed"
	redirectNotPeer  = "not_peer" // no Contact names a trusted peer: the caller gets the 3xx
	redirectLoop     = "loop"     // every peer Contact was tried already
	redirectLimit    = "limit"    // maxRedirects reached
)

// redirect follows a 3xx from a voicemail server (RFC 3261 16.5-16.6) the
// way a protocol server in front of Exchange UM must: the Call Router of
// Exchange 2013 and later answers every INVITE with a 302 to the UM service
// of the Mailbox server that holds the mailbox. Only Contacts whose host is
// a configured peer are followed (UM's Mailbox servers are peers; anyone
// else could point skip-pin at a host of their choice), by q-value, each at
// most once. It reports whether the call goes on to new targets.
func (c *call) redirect(b *branch, res *sip.Response) bool {
	if c.redirects >= maxRedirects {
		c.redirected(redirectLimit, res)
		return false
	}
	var ts []Target
	outcome := redirectNotPeer
	for _, u := range contactsByQ(res) {
		peer, ok := c.s.router.PeerHost(u.Host)
		if !ok {
			continue
		}
		t, ok := router.TargetOf(u, "")
		if !ok {
			continue
		}
		t.Voicemail = true
		if c.visited[hopKey(t)] {
			outcome = redirectLoop
			continue
		}
		c.r.logger().Info("following redirect from the voicemail server", "code", res.StatusCode, "contact", u.String(), "peer", peer)
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		c.redirected(outcome, res)
		return false
	}
	// A branch is known by where it went (visited holds resolved
	// addresses): a Contact spelt by name is a loop when it resolves to
	// hops already tried, and each hop is queued once.
	expanded := c.s.expand(ts)
	next := make([]Target, 0, len(expanded))
	queued := make(map[string]bool, len(expanded))
	for _, t := range expanded {
		k := hopKey(t)
		if c.visited[k] || queued[k] {
			continue
		}
		queued[k] = true
		next = append(next, t)
	}
	if len(next) == 0 && len(expanded) > 0 {
		c.redirected(redirectLoop, res)
		return false
	}
	c.redirects++
	c.redirected(redirectFollowed, res)
	c.queue = append(next, c.queue...)
	return true
}

func (c *call) redirected(outcome string, res *sip.Response) {
	c.s.m.Redirects.WithLabelValues(outcome).Inc()
	if outcome != redirectFollowed {
		c.r.logger().Info("redirect from the voicemail server not followed", "code", res.StatusCode, "outcome", outcome)
	}
}

// contactsByQ lists the Contact URIs of a 3xx, highest q first (RFC 3261
// 16.6 step 1 / 8.1.3.4), in their order among equals.
func contactsByQ(res *sip.Response) []sip.Uri {
	type contact struct {
		u sip.Uri
		q float64
	}
	var cs []contact
	for _, h := range res.GetHeaders("Contact") {
		ch, ok := h.(*sip.ContactHeader)
		if !ok || ch.Address.Host == "" {
			continue
		}
		q := 1.0
		if v, ok := ch.Params.Get("q"); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
				q = f
			}
		}
		cs = append(cs, contact{*ch.Address.Clone(), q})
	}
	slices.SortStableFunc(cs, func(a, b contact) int { return cmp.Compare(b.q, a.q) })
	out := make([]sip.Uri, len(cs))
	for i, c := range cs {
		out[i] = c.u
	}
	return out
}

// hopKey names a branch for loop detection: where it went and for whom.
func hopKey(t Target) string {
	return t.Transport + " " + t.Addr() + " " + t.URI.String()
}

// checkHop applies the skip-pin rule to one branch (policy.HopKeepsSkipPin):
// the request kept Ms-Exchange-Command for the voicemail server, and this
// copy must lose it unless it travels over TLS to one.
func (s *Server) checkHop(r *request, out *sip.Request, t Target, hop Flow) {
	if len(headerValues(out, policy.HeaderExchangeCommand)) == 0 {
		return
	}
	why := policy.HopKeepsSkipPin(hop.Transport, t.Voicemail)
	if why == "" {
		return
	}
	removeHeaderAll(out, policy.HeaderExchangeCommand)
	s.m.SkipPin.WithLabelValues(policy.OutcomeStripped, string(why)).Inc()
	r.logger().Info("skip-pin", "decision", policy.OutcomeStripped, "reason", string(why), "hop", hop.Transport+" "+hop.Remote)
}
