package config

import (
	_ "embed"
	"fmt"
	"net/netip"
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

// MovePorts moves every SIP listener and the metrics server of c: to free
// ports (port 0, the kernel picks) or by offset. It is for running the
// embedded default beside something that holds its fixed ports (another
// sipproxy, a test); the addresses stay as they are.
func (c *Config) MovePorts(free bool, offset int) error {
	if !free && offset == 0 {
		return nil
	}
	move := func(what string, ap netip.AddrPort) (netip.AddrPort, error) {
		if free {
			return netip.AddrPortFrom(ap.Addr(), 0), nil
		}
		p := int(ap.Port()) + offset
		if p < 1 || p > 65535 {
			return ap, fmt.Errorf("config: port offset %d moves %s port %d out of range", offset, what, ap.Port())
		}
		return netip.AddrPortFrom(ap.Addr(), uint16(p)), nil
	}
	for i := range c.Server.Listen {
		l := &c.Server.Listen[i]
		ap, err := parseListenAddr(l.Addr)
		if err != nil {
			return fmt.Errorf("config: server.listen[%d]: %w", i, err)
		}
		if ap, err = move(l.Transport, ap); err != nil {
			return err
		}
		l.Addr = ap.String()
	}
	if c.Metrics.Listen != "" {
		ap, err := netip.ParseAddrPort(c.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("config: metrics.listen: %w", err)
		}
		if ap, err = move("metrics", ap); err != nil {
			return err
		}
		c.Metrics.Listen = ap.String()
	}
	return nil
}
