// Package limits holds the abuse-resistance primitives of the request
// pipeline: a per-source request rate limiter, a tracker of failed digest
// authentications that blocks brute force, and a per-source connection
// limiter with a net.Listener wrapper. They are pure decisions over an
// injected clock: no metrics, no logging, no goroutines, no package state.
// The proxy counts sipproxy_throttled_total{reason} from what they return
// (and from LimitListener's onReject callback).
//
// All three are safe for concurrent use, and a nil limiter of any kind
// limits nothing, so a disabled limit is simply one not constructed.
//
// # Sources
//
// Everything is counted per source: an IPv4 address, or an IPv6 /64. A host
// chooses freely among the 2^64 addresses of its /64 (SLAAC, privacy
// addresses), so counting IPv6 by full address would give an attacker a
// fresh bucket per request; a /64 is one site, as one public IPv4 address
// behind NAT is. IPv4-mapped IPv6 addresses count as IPv4, zones are
// ignored. Every limiter takes a list of exempt prefixes: trusted peers
// (Exchange UM, gateways, other proxies: the sources of the peers section)
// are never limited. Peers known only by TLS certificate name cannot be
// exempted by address; they are limited like anyone else.
//
// # Request rate: RateLimiter
//
// A token bucket per source (kept as one number, GCRA): a source that has
// been quiet may send Burst requests at once, then Rate a second. Refused
// requests take no token, so a source flooding as fast as it can is refused
// only for what it sends over the rate, and retryAfter never exceeds one
// interval (1/Rate). Call Allow for each request that reaches the pipeline,
// with the packet's or connection's peer address, before any work for it;
// past the limit answer 503 Service Unavailable with Retry-After set to
// retryAfter rounded up to whole seconds, counted as reason "rate". ACK has
// no response and losing one tears down an answered call: do not limit it.
// Responses are not requests and are not limited.
//
// Allow costs a time reading, a hash and one of 64 shard locks; it does
// not allocate. An attacker on one source contends only with the 1/64 of
// sources that share its shard.
//
// # Memory under attack
//
// The rate limiter and the failure tracker keep at most MaxSources sources,
// in a table allocated once (per shard, on first use) and never grown: a
// set-associative cache in which a source's hash (seeded at random per
// table, so nobody can aim at a set) picks a set of 8 slots, and a new
// source in a full set takes the slot whose entry matters least. Floods of
// spoofed UDP sources churn the table but cannot grow it, and lookups cost
// the same however full it is. The policy, for the rate limiter:
//
//   - a full bucket (a source idle for Burst/Rate) goes first: forgetting it
//     loses nothing, since a source seen for the first time gets a full
//     bucket anyway;
//   - otherwise the bucket with the least debt goes: forgetting it forgives
//     the least. A source that floods keeps its deep debt, so churn by
//     spoofed sources (each one request, shallow debt) cannot reset it.
//
// Table pressure never refuses anybody: a source new to the table, good or
// spoofed, gets a full bucket, and an established good source that is
// evicted comes back with a full bucket. A flood of spoofed sources can thus
// neither lock out good sources nor unlock the attacker's own. (What it can
// do is send one request per spoofed address: per-source limits cannot stop
// a distributed flood, which needs a global limit on work in flight.)
//
// For the failure tracker, a record with no failures within Window and no
// block goes first; blocked sources go last (of two blocks, the one ending
// sooner), so spoofed failures cannot push a blocked attacker out; between,
// the source nearer to a block (more failures within Window, then the more
// recent) is kept. To evict a blocked source an attacker must fill its set,
// which he cannot find, with blocked sources of his own: in effect MaxFailures
// failures from each of about MaxSources spoofed addresses.
//
// # Brute force: FailureTracker
//
// A source with MaxFailures failed authentications within any Window is
// blocked for BlockFor; failures while blocked do not extend the block, and
// the block ends with a clean slate. In the identify stage, ask Blocked
// before challenging or checking credentials and refuse a blocked source
// with 403 Forbidden, no challenge (reason "auth_blocked"); after checking
// digest credentials call Fail when they are wrong (a response that does
// not match, an unknown user, a foreign realm), refusing the same way when
// it returns true, and Succeed when they are right. A request without
// credentials (the first challenge) and a stale nonce (re-challenged with
// stale=true) are not failures.
//
// Failures are counted per source, not per (source, user): counting per
// user would let one source try MaxFailures-1 passwords on every user name
// (password spraying). The price is that a source that fails blocks its
// NAT neighbours too; sites large enough for that to matter, and gateways
// that relay many users' credentials, belong in the exempt list.
//
// Succeed clears the source's failures, but at most once per Window. A
// user who mistypes and then gets it right starts afresh; an attacker with
// one valid account who interleaves his own successes with guesses at other
// accounts gets at most 2*MaxFailures-1 guesses before the block. A success
// never lifts a block.
//
// # Connections: ConnLimiter and LimitListener
//
// ConnLimiter admits a set number of open connections per source; it holds
// only sources with open connections, which TCP's handshake keeps
// unspoofable, so its memory follows the connections. LimitListener applies
// it to a listener: a connection over the limit is reset (no TIME_WAIT
// left behind) and closed as soon as accepted, onReject is told (reason
// "connections"), and accepting goes on; an admitted connection releases
// its slot when first closed. Wrap the TCP listener below any TLS, so that
// refused connections cost no handshake. Idle connections and slow TLS
// handshakes are bounded by limits.idle_timeout and
// limits.tls_handshake_timeout, not here.
//
// # Recommended defaults
//
// For a SIP edge proxy in front of phones and Exchange UM (the Default
// constants; zero fields in the configs take them):
//
//	limits:
//	  rate: 20                 # requests per second per source
//	  burst: 100               # requests at once after a quiet spell
//	  rate_sources: 100000     # sources tracked: 3.6 MB when full
//	  auth_max_failures: 5     # failed authentications within auth_window...
//	  auth_window: 10m
//	  auth_block_for: 15m      # ...block the source this long
//	  auth_sources: 50000      # sources tracked: 5.3 MB when full
//	  conns_per_source: 64     # open TCP/TLS connections per source
//
// A phone sends well under a request a second on average: REGISTER and
// SUBSCRIBE refreshes, OPTIONS keep-alives, and per call an INVITE, its
// challenged repeat, ACK, BYE and UDP retransmissions. 20 a second carries
// a few dozen phones behind one NAT or in one /64; a burst of 100 carries
// their boot storm after a power cut (REGISTER, challenged REGISTER and
// SUBSCRIBEs each). It is looser than Kamailio's default configuration
// (pike: 16 requests per 2 s, then a 5-minute ban) because a refusal here
// is a 503 to one request rather than a ban. Larger sites and all servers
// are peers, and exempt; so is a load generator such as sipp, which would
// otherwise measure the limiter.
//
// Five failures in ten minutes is more than a person mistyping a password
// makes; a fifteen-minute block then holds a brute-forcer on one source to
// five guesses a quarter hour (480 a day), nine if he has a valid account
// of his own. A phone configured with the wrong password is slowed to the
// same pace, which is no loss.
//
// A phone holds one TCP or TLS connection, two with RFC 5626 outbound;
// 64 a source carries a NAT'd site of thirty phones while an attacker's
// address holds at most 64 sockets. MaxSources bounds only memory; the
// tables are sized for a flood, and when they fill the policies above
// decide what is forgotten.
package limits
