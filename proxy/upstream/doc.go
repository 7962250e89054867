// Package upstream keeps a pool of upstream targets (the Exchange UM
// servers behind `voicemail.uri` or `voicemail.uris`) and what is known of
// their health, so that the call engine sends each request to a target
// that answers and fails over to the next one in order.
//
// A Pool resolves its configured URIs (package resolve, RFC 3263) into
// endpoints, in configuration order, and drops those found down. Health is
// learnt two ways: the call engine reports each failover (Pool.Report),
// and a Prober sends a probe (OPTIONS, supplied by the caller) to every
// endpoint at an interval. Like Kamailio's dispatcher, a target that fails
// twice in a row is skipped until it answers again.
//
// The package opens no SIP sockets itself: the probe function and the
// resolver are injected, which keeps it testable without a SIP stack.
package upstream
