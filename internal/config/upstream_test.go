package config

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestUpstreamKeys covers server.resolver, voicemail.uris and
// voicemail.probe_interval: valid forms and what they derive.
// withResolver is base with server.resolver (line 3) set to its argument.
const withResolver = `
server:
  domains: [contoso.com]
  resolver: %s
  listen:
    - {transport: tcp, addr: "127.0.0.1:5060"}`

// TestUpstreamKeys covers server.resolver, voicemail.uris and
// voicemail.probe_interval: valid forms and what they derive.
func TestUpstreamKeys(t *testing.T) {
	dir := fixture(t)
	tests := []struct {
		name     string
		yaml     string // a whole document
		resolver string
		uris     []string // Targets
		interval time.Duration
	}{
		{name: "no voicemail: defaults", yaml: base, interval: 10 * time.Second},
		{name: "uri with port", yaml: base + `
voicemail: {uri: "sip:um.contoso.com:5066;transport=tls"}`,
			uris: []string{"sip:um.contoso.com:5066;transport=tls"}, interval: 10 * time.Second},
		{name: "uri without port (SRV)", yaml: base + `
voicemail: {uri: "sips:um.contoso.com", probe_interval: 30s}`,
			uris: []string{"sips:um.contoso.com"}, interval: 30 * time.Second},
		{name: "a pool, in order, probing off", yaml: fmt.Sprintf(withResolver, `"10.0.0.53:53"`) + `
voicemail:
  uris:
    - "sip:um2.contoso.com:5061;transport=tls"
    - "sips:um1.contoso.com"
  probe_interval: 0s`,
			resolver: "10.0.0.53:53",
			uris:     []string{"sip:um2.contoso.com:5061;transport=tls", "sips:um1.contoso.com"},
			interval: 0},
		{name: "IPv6 resolver", yaml: fmt.Sprintf(withResolver, `"[2001:db8::53]:5353"`),
			resolver: "[2001:db8::53]:5353", interval: 10 * time.Second},
		{name: "short interval for tests", yaml: base + `
voicemail: {uri: "sips:um.contoso.com", probe_interval: 100ms}`,
			uris: []string{"sips:um.contoso.com"}, interval: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadBytes("config.yaml", doc(tt.yaml), dir)
			if err != nil {
				t.Fatal(err)
			}
			if c.Server.Resolver != tt.resolver {
				t.Errorf("Resolver %q, want %q", c.Server.Resolver, tt.resolver)
			}
			var got []string
			for _, u := range c.Voicemail.Targets() {
				got = append(got, u.String())
			}
			if !slices.Equal(got, tt.uris) {
				t.Errorf("Targets %q, want %q", got, tt.uris)
			}
			if c.Voicemail.ProbeInterval.Duration != tt.interval {
				t.Errorf("ProbeInterval %s, want %s", c.Voicemail.ProbeInterval, tt.interval)
			}
		})
	}
}

func TestUpstreamKeyErrors(t *testing.T) {
	dir := fixture(t)
	tests := []struct {
		name string
		yaml string // a whole document
		want []string
	}{
		{"uri and uris", base + `
voicemail:
  uri: "sips:um.contoso.com"
  uris: ["sips:um1.contoso.com"]`, []string{
			`config.yaml:7: voicemail.uris: set uri (line 6) or uris, not both`,
		}},
		{"empty pool", base + `
voicemail:
  uris: []`, []string{
			`config.yaml:6: voicemail.uris: the list is empty; name at least one SIP URI`,
		}},
		{"bad and duplicate entries", base + `
voicemail:
  uris:
    - "sips:um1.contoso.com"
    - "tel:+15551234"
    - "sip:"
    - "SIPS:UM1.contoso.com"`, []string{
			`config.yaml:8: voicemail.uris[1]: invalid SIP URI "tel:+15551234": scheme must be sip or sips`,
			`config.yaml:9: voicemail.uris[2]: invalid SIP URI "sip:": no host`,
			`config.yaml:10: voicemail.uris[3]: "SIPS:UM1.contoso.com" is listed twice (first at line 7)`,
		}},
		{"uris not a list", base + `
voicemail: {uris: "sips:um.contoso.com"}`, []string{
			`config.yaml:5: voicemail.uris: expected a list, got "sips:um.contoso.com"`,
		}},
		{"probe interval without a URI", base + `
voicemail: {probe_interval: 5s}`, []string{
			`config.yaml:5: voicemail: uri or uris is required when voicemail is set`,
		}},
		{"negative probe interval", base + `
voicemail:
  uri: "sips:um.contoso.com"
  probe_interval: -5s`, []string{
			`config.yaml:7: voicemail.probe_interval: -5s is negative; write 0 to turn probing off`,
		}},
		{"probe interval too short", base + `
voicemail:
  uri: "sips:um.contoso.com"
  probe_interval: 10ms`, []string{
			`config.yaml:7: voicemail.probe_interval: 10ms is too short (at least 100ms, or 0 to turn probing off)`,
		}},
		{"probe interval not a duration", base + `
voicemail:
  uri: "sips:um.contoso.com"
  probe_interval: 10`, []string{
			`config.yaml:7: voicemail.probe_interval: invalid duration "10" (write a number with a unit: 15s, 2m, 1h)`,
		}},
	}
	resolvers := []struct{ value, want string }{
		{`"10.0.0.53"`, `server.resolver: "10.0.0.53" has no port; write 10.0.0.53:53`},
		{`"[2001:db8::53]"`, `server.resolver: "[2001:db8::53]" has no port; write [2001:db8::53]:53`},
		{`"dns.contoso.com:53"`, `server.resolver: "dns.contoso.com:53": the host must be an IP literal such as 10.0.0.53 or [2001:db8::53]; names are not resolved`},
		{`"10.0.0.53:0"`, `server.resolver: "10.0.0.53:0": the port must be 1-65535 (DNS is 53)`},
		{`"10.0.0.53:dns"`, `server.resolver: "10.0.0.53:dns": the port must be 1-65535 (DNS is 53)`},
		{`"resolver"`, `server.resolver: "resolver" is not ip:port`},
	}
	for _, r := range resolvers {
		tests = append(tests, struct {
			name string
			yaml string
			want []string
		}{"resolver " + r.value, fmt.Sprintf(withResolver, r.value), []string{"config.yaml:3: " + r.want}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadBytes("config.yaml", doc(tt.yaml), dir)
			if err == nil {
				t.Fatalf("loaded without error: %+v", c.Voicemail)
			}
			if got := rendered(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestPoolWarnings(t *testing.T) {
	c, err := LoadBytes("config.yaml", doc(base+`
voicemail:
  uris:
    - "sips:um1.contoso.com"
    - "sip:um2.contoso.com:5060;transport=tcp"`), "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range c.Warnings() {
		got = append(got, w.Error())
	}
	want := []string{`config.yaml:8: voicemail.uris[1]: "sip:um2.contoso.com:5060;transport=tcp" is not a TLS URI (neither sips: nor transport=tls): skip-pin can never be honoured end to end through it`}
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
