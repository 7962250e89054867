package limits

import "time"

// Defaults recommended for a SIP edge proxy; the package documentation says
// why. Zero fields in RateConfig and FailureConfig take them.
const (
	DefaultRate       = 20      // requests per second per source
	DefaultBurst      = 100     // five seconds at DefaultRate
	DefaultMaxSources = 100_000 // rate buckets: about 5 MB when all are in use

	DefaultMaxFailures    = 5
	DefaultFailureWindow  = 10 * time.Minute
	DefaultBlockFor       = 15 * time.Minute
	DefaultFailureSources = 50_000

	DefaultConnsPerSource = 64
)
