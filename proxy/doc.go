// Package proxy is the SIP proxy itself: it owns the listeners and runs every
// request through one pipeline that reads like the design:
//
//	ingress facts -> validate -> identify -> route -> policy -> execute
//
// Ingress facts (transport, peer address, verified TLS client certificate)
// are gathered by the listeners; validation follows RFC 3261 16.3; identify
// resolves the sender to an auth.Identity (trusted peer, client certificate
// or digest); route decides where the request goes (registrar, voicemail,
// a local user's bindings through the forwarding plan, a static route, or
// the route set of a dialog); policy applies the MS-OCEXUM rules to that
// decision; execute runs the client transactions (parallel forking, CANCEL,
// Timer C, retargeting) on top of sipgo's transaction layer.
//
// The stages that decide (auth, policy, forwarding, rules, registrar) live in
// their own packages and hold no sockets; this package composes them.
package proxy
