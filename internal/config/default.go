package config

import (
	_ "embed"
	"fmt"
)

// The embedded default configuration and its forwarding rules. Strings, so
// that every Default hands out its own copy of the bytes.
var (
	//go:embed default.yaml
	defaultYAML string
	//go:embed default-rules.yaml
	defaultRules string
)

// defaultName names the embedded default in errors and warnings.
const defaultName = "embedded:default.yaml"

// Default returns the embedded default configuration: loopback only (SIP
// over TCP and UDP on 127.0.0.1:5060, TLS on 127.0.0.1:5061 with a freshly
// generated self-signed certificate, metrics on 127.0.0.1:9090), demo users
// alice, bob, carol and dave, and demo forwarding rules in
// Forwarding.EmbeddedRules.
func Default() (*Config, error) {
	c, err := LoadBytes(defaultName, []byte(defaultYAML), "")
	if err != nil {
		return nil, fmt.Errorf("config: embedded default: %w", err)
	}
	c.Forwarding.EmbeddedRules = []byte(defaultRules)
	return c, nil
}
