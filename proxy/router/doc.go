// Package router decides where a request goes. It is one socket-free value,
// built once from the configuration (our domains, users, voicemail targets,
// static routes, peers) and the addresses the proxy listens on, with one
// Locate that every stage asking "where does this URI ring?" uses: the
// route stage for a new request, the forwarding engine when it retargets,
// the call engine when it fails over or follows a redirect.
//
// Nothing here opens a socket, resolves a name or reads a clock: a Location
// names targets as configured (a host may still need RFC 3263 resolution),
// and the tests are tables.
package router
