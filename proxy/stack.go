package proxy

import (
	"time"

	"github.com/emiago/sipgo/sip"
)

// ConfigureSIPStack sets sipgo's package-wide settings the way a proxy
// needs them. They are globals of sipgo, so the program calls this once,
// before any Server (or test peer) runs.
//
//   - UDP datagrams up to 65000 bytes: sipgo refuses to send more than
//     1300 by default, but a proxy must relay what it was given (an INVITE
//     with a large SDP, plus our Via and Record-Route).
//   - Timers L and M (the INVITE transactions' Accepted state, RFC 6026)
//     of 5 s instead of 64*T1: that state only absorbs retransmissions, and
//     a 2xx retransmitted later is forwarded statelessly (strayResponse).
//     sipgo keeps a transaction in memory until this timer fires even after
//     it is terminated, so at 1000 calls/s 32 s meant 32,000 finished calls
//     held in memory; 5 s is what Kamailio keeps finished transactions.
func ConfigureSIPStack() {
	sip.UDPMTUSize = 65000
	sip.Timer_L = 5 * time.Second
	sip.Timer_M = 5 * time.Second
}
