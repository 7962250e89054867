package upstream_test

import (
	"context"
	"fmt"
	"log"

	"github.com/sipproxy/sipproxy/internal/config"
	"github.com/sipproxy/sipproxy/internal/resolve"
	"github.com/sipproxy/sipproxy/metrics"
	"github.com/sipproxy/sipproxy/proxy/upstream"
)

// Example wires a voicemail pool from a configuration, as the proxy does
// at start: one resolver for the process, a pool of voicemail.uris with
// the upstream metrics, and a prober (here a stand-in for the OPTIONS
// sender).
func Example() {
	cfg, err := config.LoadBytes("example.yaml", []byte(`
server:
  domains: [contoso.com]
  listen: [{transport: tcp, addr: "127.0.0.1:5060"}]
  no_response_timeout: 5s
voicemail:
  uris: ["sip:10.0.0.5:5061;transport=tls", "sip:10.0.0.6:5061;transport=tls"]
  probe_interval: 10s
`), "")
	if err != nil {
		log.Fatal(err)
	}
	res, err := resolve.New(resolve.Options{Server: cfg.Server.Resolver}) // "": the system's servers
	if err != nil {
		log.Fatal(err)
	}
	m := metrics.New()
	pool, err := upstream.New(upstream.Config{
		URIs:      cfg.Voicemail.Targets(),
		Resolver:  res,
		Up:        m.UpstreamUp,
		Failovers: m.UpstreamFailovers,
		// With voicemail.probe_interval 0 (no prober), also set Retry
		// (say 30s), or a target taken out by failed calls stays out.
	})
	if err != nil {
		log.Fatal(err)
	}
	options := func(ctx context.Context, e upstream.Endpoint) error {
		if e.Host == "10.0.0.5" {
			return fmt.Errorf("connection refused")
		}
		return upstream.ResponseError(200)
	}
	prober := pool.NewProber(options, cfg.Voicemail.ProbeInterval.Duration, cfg.Server.NoResponseTimeout.Duration)
	ctx := context.Background()
	// In the proxy: go prober.Run(ctx). Two rounds here, by hand.
	prober.Round(ctx)
	prober.Round(ctx)

	// The call engine: try the targets in order, Report each failure.
	targets, err := pool.Targets(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range targets {
		fmt.Println(t.Key(), pool.Health(t))
	}
	// Output:
	// tls:10.0.0.6:5061 up
}
