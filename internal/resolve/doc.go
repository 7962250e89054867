// Package resolve turns a SIP URI into the ordered list of addresses a
// request to it may be sent to, as RFC 3263 describes (without NAPTR):
// the transport from the URI or from the SRV records that exist, SRV
// records ordered by priority and weight (RFC 2782), and every A and AAAA
// address of each SRV target, or of the host itself when there is no SRV.
//
// It is a foundation for the call engine and the upstream pool: it asks a
// DNS server (the configured one, or the system's from /etc/resolv.conf)
// and keeps the answers for their TTL, but it opens no SIP sockets and
// knows nothing of requests. A URI with a numeric IP never causes a query,
// and neither does a name listed in /etc/hosts, which is answered from
// there as the system's own resolver would.
package resolve
