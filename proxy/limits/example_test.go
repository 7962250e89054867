package limits_test

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/sipproxy/sipproxy/proxy/limits"
)

func ExampleRateLimiter() {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	rate, err := limits.NewRateLimiter(limits.RateConfig{
		Rate:   2, // per second
		Burst:  3,
		Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.5/32")}, // a trusted peer
		Now:    func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}
	src := netip.MustParseAddr("192.0.2.1")
	for range 4 {
		if ok, retry := rate.Allow(src); !ok {
			// Retry-After counts whole seconds: round up.
			fmt.Printf("503 Service Unavailable, Retry-After: %d\n", (retry+time.Second-1)/time.Second)
			continue
		}
		fmt.Println("handled")
	}
	// Output:
	// handled
	// handled
	// handled
	// 503 Service Unavailable, Retry-After: 1
}

func ExampleFailureTracker() {
	fails, err := limits.NewFailureTracker(limits.FailureConfig{MaxFailures: 3, Window: time.Minute, BlockFor: 15 * time.Minute})
	if err != nil {
		panic(err)
	}
	src := netip.MustParseAddr("198.51.100.7")
	// The identify stage, for requests carrying digest credentials:
	authenticate := func(passwordRight bool) string {
		if blocked, _ := fails.Blocked(src); blocked {
			return "403 (blocked, not challenged)"
		}
		if passwordRight {
			fails.Succeed(src)
			return "ok"
		}
		if fails.Fail(src) {
			return "403 (now blocked)"
		}
		return "407 (challenged again)"
	}
	for _, right := range []bool{false, false, false, true} {
		fmt.Println(authenticate(right))
	}
	// Output:
	// 407 (challenged again)
	// 407 (challenged again)
	// 403 (now blocked)
	// 403 (blocked, not challenged)
}

func ExampleLimitListener() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	conns := limits.NewConnLimiter(limits.DefaultConnsPerSource, netip.MustParsePrefix("10.0.0.5/32"))
	ln = limits.LimitListener(ln, conns, func(src netip.Addr) {
		// count sipproxy_throttled_total{reason="connections"}
	})
	// For TLS, wrap this listener in tls.NewListener, so that refused
	// connections cost no handshake; then hand it to the SIP server.
	defer ln.Close()
}
