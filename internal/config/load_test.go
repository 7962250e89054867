package config

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sipproxy/sipproxy/internal/pki"
)

// fixture returns a directory holding the files the test configurations
// refer to:
//
//	tls/server.crt, server.key  server certificate issued by internal-ca
//	                            (DNS sip.contoso.com, serverAuth and clientAuth)
//	tls/internal-ca.crt         the CA that issued it
//	tls/clients-ca.crt          CA for client certificates
//	tls/other.key               a key that matches nothing
//	tls/empty.crt, garbage.crt  an empty file and a file without PEM
//	rules.yaml                  a forwarding rules file
func fixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	internal, err := pki.NewCA("Contoso internal CA")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := internal.WritePEM(tlsDir, "internal-ca"); err != nil {
		t.Fatal(err)
	}
	clients, err := pki.NewCA("Contoso clients CA")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clients.WritePEM(tlsDir, "clients-ca"); err != nil {
		t.Fatal(err)
	}
	server, err := internal.Issue(pki.IssueOptions{CommonName: "sip.contoso.com", DNSNames: []string{"sip.contoso.com"}, Server: true, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.WritePEM(tlsDir, "server", server); err != nil {
		t.Fatal(err)
	}
	other, err := pki.SelfSigned("other.contoso.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.WritePEM(tlsDir, "other", other); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"tls/empty.crt":   "\n",
		"tls/garbage.crt": "not a certificate\n",
		"rules.yaml":      "rules: []\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// doc trims the leading newline of a raw string, so that its first line
// is line 1 of the document.
func doc(s string) []byte { return []byte(strings.TrimPrefix(s, "\n")) }

// rendered returns the errors of err rendered one per entry.
func rendered(t *testing.T, err error) []string {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v (%T) is not Errors", err, err)
	}
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

// base is a minimal valid configuration of four lines; cases append to it.
const base = `
server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "127.0.0.1:5060"}`

func TestLoadErrors(t *testing.T) {
	dir := fixture(t)
	tests := []struct {
		name string
		yaml string
		want []string // "$DIR" stands for the fixture directory
	}{
		{"unknown keys at every depth", `
server:
  domains: [contoso.com]
  lisen: []
  listen:
    - {transport: tcp, addr: "127.0.0.1:5060", advertize: sip.contoso.com}
voicemial: {uri: "sip:um.contoso.com"}
auth:
  realm: contoso.com
  users:
    - user: alice
      ha1: 0123456789abcdef0123456789abcdef
      ha1sha256: x
      colour: blue`, []string{
			`config.yaml:3: server.lisen: unknown key (did you mean "listen"?)`,
			`config.yaml:5: server.listen[0].advertize: unknown key (did you mean "advertise"?)`,
			`config.yaml:6: voicemial: unknown key (did you mean "voicemail"?)`,
			`config.yaml:12: auth.users[0].ha1sha256: unknown key (did you mean "ha1_sha256"?)`,
			`config.yaml:13: auth.users[0].colour: unknown key`,
		}},
		{"wrong types", `
server:
  domains: contoso.com
  listen: {transport: tcp, addr: "127.0.0.1:5060"}
  record_route: maybe
  timer_c: 15
forwarding:
  max_diversions: many
  default_after: [1s]
peers:
  - {name: um, sources: 10.0.0.5/32}`, []string{
			`config.yaml:2: server.domains: expected a list, got "contoso.com"`,
			`config.yaml:3: server.listen: expected a list, got a mapping`,
			`config.yaml:4: server.record_route: expected true or false, got "maybe"`,
			`config.yaml:5: server.timer_c: invalid duration "15" (write a number with a unit: 15s, 2m, 1h)`,
			`config.yaml:7: forwarding.max_diversions: expected an integer, got "many"`,
			`config.yaml:8: forwarding.default_after: expected a duration such as 15s or 2m, got a list`,
			`config.yaml:10: peers[0].sources: expected a list, got "10.0.0.5/32"`,
		}},
		{"listener transport", `
server:
  domains: [contoso.com]
  listen:
    - {transport: sctp, addr: "127.0.0.1:5060"}
    - {addr: "127.0.0.1:5061"}
    - {transport: TCP, addr: "127.0.0.1:5062"}
    - {transport: [tcp], addr: "127.0.0.1:5063"}`, []string{
			`config.yaml:4: server.listen[0].transport: "sctp" is not a transport; use udp, tcp or tls`,
			`config.yaml:5: server.listen[1]: transport is required (udp, tcp or tls)`,
			`config.yaml:6: server.listen[2].transport: "TCP" is not a transport; use udp, tcp or tls`,
			`config.yaml:7: server.listen[3].transport: expected a string, got a list`,
		}},
		{"listener addr", `
server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "localhost:5060"}
    - {transport: tcp, addr: "127.0.0.1"}
    - {transport: tcp, addr: "127.0.0.1:-1"}
    - {transport: udp, addr: "[::1]:65536"}
    - {transport: udp}
    - {transport: udp, addr: ":5060"}
    - {transport: udp, addr: "127.0.0.1:sip"}
metrics: {listen: "metrics.local:9090"}`, []string{
			`config.yaml:4: server.listen[0].addr: "localhost:5060": the host must be an IP literal such as 0.0.0.0, 127.0.0.1 or [::1]; names are not resolved`,
			`config.yaml:5: server.listen[1].addr: "127.0.0.1" is not ip:port`,
			`config.yaml:6: server.listen[2].addr: "127.0.0.1:-1": the port must be 0-65535 (0 picks a free port)`,
			`config.yaml:7: server.listen[3].addr: "[::1]:65536": the port must be 0-65535 (0 picks a free port)`,
			`config.yaml:8: server.listen[4]: addr is required (ip:port)`,
			`config.yaml:9: server.listen[5].addr: ":5060": the host must be an IP literal such as 0.0.0.0, 127.0.0.1 or [::1]; names are not resolved`,
			`config.yaml:10: server.listen[6].addr: "127.0.0.1:sip": the port must be 0-65535 (0 picks a free port)`,
			`config.yaml:11: metrics.listen: "metrics.local:9090": the host must be an IP literal such as 0.0.0.0, 127.0.0.1 or [::1]; names are not resolved`,
		}},
		{"duplicate and overlapping listeners", `
server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "127.0.0.1:5060"}
    - {transport: udp, addr: "127.0.0.1:5060"}
    - {transport: tcp, addr: "127.0.0.1:5060"}
    - {transport: tls, addr: "127.0.0.1:5060", self_signed: true}
    - {transport: udp, addr: "0.0.0.0:5060"}
    - {transport: tcp, addr: "[::]:5070"}
    - {transport: tls, addr: "10.0.0.1:5070", self_signed: true}
    - {transport: tcp, addr: "[::1]:5060"}
    - {transport: udp, addr: "0.0.0.0:5070"}
    - {transport: tcp, addr: "127.0.0.1:0"}
    - {transport: tls, addr: "127.0.0.1:0", self_signed: true}
    - {transport: tcp, addr: "0.0.0.0:0"}`, []string{
			`config.yaml:6: server.listen[2]: duplicate listener tcp 127.0.0.1:5060 (first at line 4)`,
			`config.yaml:7: server.listen[3]: tls listener 127.0.0.1:5060 conflicts with the tcp listener at line 4: both bind TCP port 5060`,
			`config.yaml:8: server.listen[4]: udp listener 0.0.0.0:5060 overlaps the udp listener 127.0.0.1:5060 at line 5 (a wildcard address binds every interface)`,
			`config.yaml:10: server.listen[6]: tls listener 10.0.0.1:5070 overlaps the tcp listener [::]:5070 at line 9 (a wildcard address binds every interface)`,
		}},
		{"tls listener certificate and key", `
server:
  domains: [contoso.com]
  listen:
    - {transport: tls, addr: "127.0.0.1:5061"}
    - {transport: tls, addr: "127.0.0.1:5062", cert: tls/server.crt}
    - {transport: tls, addr: "127.0.0.1:5063", key: tls/server.key}
    - {transport: tls, addr: "127.0.0.1:5064", self_signed: true, cert: tls/server.crt, key: tls/server.key}
    - {transport: tls, addr: "127.0.0.1:5065", cert: tls/missing.crt, key: tls/missing.key}
    - {transport: tls, addr: "127.0.0.1:5066", cert: tls/server.crt, key: tls/other.key}
    - {transport: tls, addr: "127.0.0.1:5067", cert: tls, key: tls/server.key}
    - {transport: tls, addr: "127.0.0.1:5068", cert: tls/garbage.crt, key: tls/server.key}`, []string{
			`config.yaml:4: server.listen[0]: a tls listener needs cert and key (or self_signed: true)`,
			`config.yaml:5: server.listen[1]: key is required with cert`,
			`config.yaml:6: server.listen[2]: cert is required with key`,
			`config.yaml:7: server.listen[3].self_signed: self_signed cannot be combined with cert and key`,
			`config.yaml:8: server.listen[4].cert: cannot read certificate $DIR/tls/missing.crt: no such file or directory`,
			`config.yaml:8: server.listen[4].key: cannot read key $DIR/tls/missing.key: no such file or directory`,
			`config.yaml:9: server.listen[5].cert: certificate $DIR/tls/server.crt and key $DIR/tls/other.key are not a usable pair: tls: private key does not match public key`,
			`config.yaml:10: server.listen[6].cert: cannot read certificate $DIR/tls: is a directory`,
			`config.yaml:11: server.listen[7].cert: certificate $DIR/tls/garbage.crt and key $DIR/tls/server.key are not a usable pair: tls: failed to find any PEM data in certificate input`,
		}},
		{"CA bundles", `
server:
  domains: [contoso.com]
  listen:
    - {transport: tls, addr: "127.0.0.1:5061", self_signed: true, client_ca: tls/empty.crt}
    - {transport: tls, addr: "127.0.0.1:5062", self_signed: true, client_ca: tls/missing.crt}
    - {transport: tls, addr: "127.0.0.1:5063", self_signed: true, client_ca: tls/garbage.crt}
  tls_client:
    ca: tls/empty.crt
    cert: tls/server.crt`, []string{
			`config.yaml:4: server.listen[0].client_ca: CA bundle $DIR/tls/empty.crt is empty`,
			`config.yaml:5: server.listen[1].client_ca: cannot read CA bundle $DIR/tls/missing.crt: no such file or directory`,
			`config.yaml:6: server.listen[2].client_ca: CA bundle $DIR/tls/garbage.crt holds no PEM certificate`,
			`config.yaml:7: server.tls_client: key is required with cert`,
			`config.yaml:8: server.tls_client.ca: CA bundle $DIR/tls/empty.crt is empty`,
		}},
		{"tls client certificate", base + `
  tls_client:
    ca: tls/missing-ca.crt
    key: tls/server.key
voicemail: {uri: "sip:um.contoso.com;transport=tls"}`, []string{
			`config.yaml:5: server.tls_client: cert is required with key`,
			`config.yaml:6: server.tls_client.ca: cannot read CA bundle $DIR/tls/missing-ca.crt: no such file or directory`,
		}},
		{"tls settings on plain listeners", `
server:
  domains: [contoso.com]
  listen:
    - transport: tcp
      addr: "127.0.0.1:5060"
      cert: tls/server.crt
      key: tls/server.key
    - {transport: udp, addr: "127.0.0.1:5060", client_ca: tls/clients-ca.crt, self_signed: true}`, []string{
			`config.yaml:6: server.listen[0].cert: only valid on a tls listener`,
			`config.yaml:7: server.listen[0].key: only valid on a tls listener`,
			`config.yaml:8: server.listen[1].client_ca: only valid on a tls listener`,
			`config.yaml:8: server.listen[1].self_signed: only valid on a tls listener`,
		}},
		{"no listener", `
server:
  domains: [contoso.com]
  listen: []`, []string{
			`config.yaml:3: server.listen: at least one listener is required`,
		}},
		{"empty file", ``, []string{
			`config.yaml: server.domains: at least one domain is required (the SIP domains this proxy serves)`,
			`config.yaml: server.listen: at least one listener is required`,
		}},
		{"domains", `
server:
  domains: [contoso.com, bad_domain, -x.com, Contoso.COM, ""]
  listen: [{transport: tcp, addr: "127.0.0.1:5060"}]
  advertise: "sip proxy"`, []string{
			`config.yaml:2: server.domains[1]: "bad_domain" is not a valid host name`,
			`config.yaml:2: server.domains[2]: "-x.com" is not a valid host name`,
			`config.yaml:2: server.domains[3]: "contoso.com" is listed twice (first at line 2)`,
			`config.yaml:2: server.domains[4]: "" is not a valid host name`,
			`config.yaml:4: server.advertise: "sip proxy" is not a host name or IP address`,
		}},
		{"no domains", `
server:
  listen: [{transport: tcp, addr: "127.0.0.1:5060", advertise: "a..b"}]`, []string{
			`config.yaml:1: server.domains: at least one domain is required (the SIP domains this proxy serves)`,
			`config.yaml:2: server.listen[0].advertise: "a..b" is not a host name or IP address`,
		}},
		{"voicemail URI", base + `
voicemail:
  uri: "tel:+15551234"`, []string{
			`config.yaml:6: voicemail.uri: invalid SIP URI "tel:+15551234": scheme must be sip or sips`,
		}},
		{"voicemail without URI", base + `
voicemail: {}`, []string{
			`config.yaml:5: voicemail: uri or uris is required when voicemail is set`,
		}},
		{"peers", base + `
peers:
  - {sources: ["10.0.0.5/32"]}
  - {name: um, sources: ["10.0.0.5"]}
  - {name: um, tls_names: [um.contoso.com]}
  - name: gw
    sources: ["10.0.0.1/8", "not-a-cidr"]
  - {name: lonely}
  - {name: blank, tls_names: [" "]}`, []string{
			`config.yaml:6: peers[0]: name is required`,
			`config.yaml:7: peers[1].sources[0]: "10.0.0.5" is an address, not a CIDR; write 10.0.0.5/32`,
			`config.yaml:8: peers[2].name: peer "um" is defined twice (lines 7 and 8)`,
			`config.yaml:10: peers[3].sources[0]: "10.0.0.1/8" has bits set beyond the prefix length; did you mean 10.0.0.0/8?`,
			`config.yaml:10: peers[3].sources[1]: "not-a-cidr" is not a CIDR such as 10.0.0.5/32 or 2001:db8::/64`,
			`config.yaml:11: peers[4]: a peer needs sources, tls_names or both`,
			`config.yaml:12: peers[5].tls_names[0]: empty name`,
		}},
		{"auth users", base + `
auth:
  users:
    - {user: alice, ha1: 0123456789ABCDEF0123456789abcdef}
    - {user: alice, password: x}
    - {password: y}
    - {user: bob, ha1: "0123", password: z}
    - {user: carol}
    - {user: "dave@contoso.com", ha1: 0123456789abcdef0123456789abcdef, ha1_sha256: abc}
    - {user: erin, password: p, ha1_sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef}
    - {user: frank, ha1: 0123456789abcdef0123456789abcdeg}`, []string{
			`config.yaml:5: auth: realm is required when users are defined`,
			`config.yaml:8: auth.users[1].user: user "alice" is defined twice (lines 7 and 8)`,
			`config.yaml:9: auth.users[2]: user is required`,
			`config.yaml:10: auth.users[3]: set ha1 or password, not both`,
			`config.yaml:10: auth.users[3].ha1: must be 32 hexadecimal digits: MD5(user:realm:password)`,
			`config.yaml:11: auth.users[4]: one of ha1 or password is required`,
			`config.yaml:12: auth.users[5].user: "dave@contoso.com" must be the user part only (alice, not sip:alice@contoso.com)`,
			`config.yaml:12: auth.users[5].ha1_sha256: must be 64 hexadecimal digits: SHA-256(user:realm:password)`,
			`config.yaml:13: auth.users[6].ha1_sha256: only goes with ha1; with a password it is computed`,
			`config.yaml:14: auth.users[7].ha1: must be 32 hexadecimal digits: MD5(user:realm:password)`,
		}},
		{"routes", base + `
routes:
  - {domain: fabrikam.com, next_hop: "sip:edge.fabrikam.com:5061;transport=tls"}
  - {domain: FABRIKAM.com, next_hop: "sip:other.fabrikam.com"}
  - {domain: "*.fabrikam.com", next_hop: "sip:gw.contoso.com"}
  - {domain: "*", next_hop: "tel:+15551234"}
  - {next_hop: "sip:gw.contoso.com"}
  - {domain: example.com}
  - {domain: example.org, next_hop: "sip:gw_1.contoso.com"}`, []string{
			`config.yaml:7: routes[1].domain: "fabrikam.com" is already routed at line 6; the first match wins, so this route is never used`,
			`config.yaml:8: routes[2].domain: "*.fabrikam.com" is not a host name or "*"`,
			`config.yaml:9: routes[3].next_hop: invalid SIP URI "tel:+15551234": scheme must be sip or sips`,
			`config.yaml:10: routes[4]: domain is required (a host name or "*")`,
			`config.yaml:11: routes[5]: next_hop is required`,
			`config.yaml:12: routes[6].next_hop: invalid SIP URI "sip:gw_1.contoso.com": bad host "gw_1.contoso.com"`,
		}},
		{"forwarding out of range", base + `
forwarding:
  rules_file: missing-rules.yaml
  default_after: 400s
  max_diversions: 0`, []string{
			`config.yaml:6: forwarding.rules_file: cannot read rules file $DIR/missing-rules.yaml: no such file or directory`,
			`config.yaml:7: forwarding.default_after: 6m40s is out of range (1s to 5m)`,
			`config.yaml:8: forwarding.max_diversions: 0 is out of range (1 to 20)`,
		}},
		{"forwarding below range", base + `
forwarding: {rules_file: tls, default_after: 500ms, max_diversions: 21}`, []string{
			`config.yaml:5: forwarding.rules_file: cannot read rules file $DIR/tls: is a directory`,
			`config.yaml:5: forwarding.default_after: 500ms is out of range (1s to 5m)`,
			`config.yaml:5: forwarding.max_diversions: 21 is out of range (1 to 20)`,
		}},
		{"timers and limits", `
server:
  domains: [contoso.com]
  listen: [{transport: tcp, addr: "127.0.0.1:5060"}]
  timer_c: 500ms
auth: {nonce_ttl: 0s}
limits:
  max_message_bytes: 0
  max_headers: -1
  idle_timeout: -5s
  tls_handshake_timeout: 1`, []string{
			`config.yaml:4: server.timer_c: 500ms is too short (at least 1s)`,
			`config.yaml:5: auth.nonce_ttl: 0s is too short (at least 1s)`,
			`config.yaml:7: limits.max_message_bytes: 0 is too small (at least 1)`,
			`config.yaml:8: limits.max_headers: -1 is too small (at least 1)`,
			`config.yaml:9: limits.idle_timeout: -5s is too short (at least 1s)`,
			`config.yaml:10: limits.tls_handshake_timeout: invalid duration "1" (write a number with a unit: 15s, 2m, 1h)`,
		}},
		{"log", base + `
log: {level: verbose, format: xml}`, []string{
			`config.yaml:5: log.level: "verbose" is not a level; use debug, info, warn or error`,
			`config.yaml:5: log.format: "xml" is not a format; use json or text`,
		}},
		{"duplicate key", base + `
  domains: [fabrikam.com]
log: {level: info, level: debug}`, []string{
			`config.yaml:5: server.domains: duplicate key (first at line 2)`,
			`config.yaml:6: log.level: duplicate key (first at line 6)`,
		}},
		{"syntax error", `
server:
  domains: [contoso.com
  listen: []`, []string{
			`config.yaml:2: YAML: did not find expected ',' or ']'`,
		}},
		{"syntax error, scanner", `
server:
  domains: [contoso.com]
  listen: tcp: 127.0.0.1`, []string{
			`config.yaml:3: YAML: mapping values are not allowed in this context`,
		}},
		{"syntax error, indentation", `
server:
  listen:
    - {transport: tcp, addr: "127.0.0.1:5060"}
   - {transport: udp, addr: "127.0.0.1:5060"}`, []string{
			// yaml.v3 names the start of the enclosing mapping, not the bad line.
			`config.yaml:2: YAML: did not find expected key`,
		}},
		{"unknown anchor", base + `
log: *logging`, []string{
			`config.yaml: YAML: unknown anchor 'logging' referenced`,
		}},
		{"not a mapping", `
# a list is not a configuration
- server`, []string{
			`config.yaml:2: the configuration must be a mapping of sections (server:, auth:, ...), got a list`,
		}},
		{"section of the wrong kind", `
server: [contoso.com]
log: debug`, []string{
			`config.yaml:1: server: expected a mapping, got a list`,
			`config.yaml:2: log: expected a mapping, got "debug"`,
		}},
		{"two documents", base + `
---
log: {level: debug}`, []string{
			`config.yaml:5: only one YAML document is allowed`,
		}},
		{"several kinds at once", `
server:
  domains: [contoso.com]
  listen:
    - {transport: tls, addr: "127.0.0.1:5061", cert: tls/server.crt, key: tls/other.key}
    - {transport: tcp, addr: "127.0.0.1:5060", client_ca: tls/clients-ca.crt}
  recordroute: true
voicemail: {uri: "sip:"}
peers: [{name: um}]
forwarding: {max_diversions: 99}
log: {level: trace}`, []string{
			`config.yaml:4: server.listen[0].cert: certificate $DIR/tls/server.crt and key $DIR/tls/other.key are not a usable pair: tls: private key does not match public key`,
			`config.yaml:5: server.listen[1].client_ca: only valid on a tls listener`,
			`config.yaml:6: server.recordroute: unknown key (did you mean "record_route"?)`,
			`config.yaml:7: voicemail.uri: invalid SIP URI "sip:": no host`,
			`config.yaml:8: peers[0]: a peer needs sources, tls_names or both`,
			`config.yaml:9: forwarding.max_diversions: 99 is out of range (1 to 20)`,
			`config.yaml:10: log.level: "trace" is not a level; use debug, info, warn or error`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadBytes("config.yaml", doc(tt.yaml), dir)
			if err == nil {
				t.Fatalf("loaded without error: %+v", c)
			}
			if c != nil {
				t.Error("a Config was returned with the error")
			}
			got := rendered(t, err)
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = strings.ReplaceAll(w, "$DIR", dir)
			}
			if !slices.Equal(got, want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if joined := err.Error(); joined != strings.Join(want, "\n") {
				t.Errorf("Error() = %q, want the errors joined by newlines", joined)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	dir := fixture(t)
	path := filepath.Join(dir, "sipproxy.yaml")
	if err := os.WriteFile(path, doc(`
server:
  domains: [contoso.com]
  listen:
    - {transport: tls, addr: "127.0.0.1:5061", cert: tls/server.crt, key: tls/server.key}
forwarding: {rules_file: rules.yaml}
log: {level: loud}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{"missing file", filepath.Join(dir, "nope.yaml"), filepath.Join(dir, "nope.yaml") + ": cannot read configuration: no such file or directory"},
		{"errors name the path", path, path + `:6: log.level: "loud" is not a level; use debug, info, warn or error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.path)
			if got := rendered(t, err); !slices.Equal(got, []string{tt.wantErr}) {
				t.Errorf("errors = %q, want %q", got, tt.wantErr)
			}
		})
	}

	t.Run("relative paths resolve against the file", func(t *testing.T) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fixed := strings.Replace(string(data), "level: loud", "level: warn", 1)
		if err := os.WriteFile(path, []byte(fixed), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Chdir(t.TempDir()) // not the config's directory
		c, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if c.Path != path {
			t.Errorf("Path = %q, want %q", c.Path, path)
		}
		if want := filepath.Join(dir, "rules.yaml"); c.Forwarding.RulesFile != want {
			t.Errorf("RulesFile = %q, want %q", c.Forwarding.RulesFile, want)
		}
		l := c.Server.Listen[0]
		rt, err := Provision(c)
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(dir, "tls", "server.crt"); l.Cert != want || rt.Listeners[0].Certificate == nil {
			t.Errorf("Cert = %q (loaded %v), want %q loaded", l.Cert, rt.Listeners[0].Certificate != nil, want)
		}
	})
}

func TestLoadValid(t *testing.T) {
	dir := fixture(t)
	full := doc(`
tls_defaults: &tls {transport: tls, cert: tls/server.crt, key: tls/server.key}
server:
  domains: [Contoso.com, sip.contoso.com]
  listen:
    - {transport: tcp, addr: "0.0.0.0:5060"}
    - {transport: udp, addr: "0.0.0.0:5060"}
    - <<: *tls
      addr: "0.0.0.0:5061"
      client_ca: tls/clients-ca.crt
    - {transport: tls, addr: "[::1]:5071", self_signed: true, advertise: sip.contoso.com}
  record_route: true
  advertise: 192.0.2.10
  timer_c: 3m
  tls_client:
    ca: tls/internal-ca.crt
    cert: tls/server.crt
    key: tls/server.key
voicemail:
  uri: "sip:um.contoso.com:5066;transport=tls"
peers:
  - {name: exchange-um, sources: ["10.0.0.5/32", "2001:db8::/64"], tls_names: [um.contoso.com], trust_skip_pin: true}
  - {name: gateway, sources: ["10.1.0.0/16"]}
auth:
  realm: contoso.com
  nonce_ttl: 10m
  secret: s3cret
  users:
    - {user: alice, ha1: 0123456789ABCDEF0123456789ABCDEF, ha1_sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef}
    - {user: bob, ha1: fedcba9876543210fedcba9876543210}
routes:
  - {domain: Fabrikam.com, next_hop: "sip:edge.fabrikam.com:5061;transport=tls"}
  - {domain: "*", next_hop: "sip:gw.contoso.com:5060;transport=tcp"}
forwarding:
  rules_file: rules.yaml
  default_after: 25s
  max_diversions: 3
metrics:
  listen: "127.0.0.1:9090"
log: {level: debug, format: text}
limits:
  max_message_bytes: 32768
  max_headers: 80
  idle_timeout: 90s
  tls_handshake_timeout: 5s
`)
	// tls_defaults is not a key of ours: an anchor needs a place to live,
	// so the test first checks that it is rejected, then loads the file
	// with the anchor moved onto the first use.
	if _, err := LoadBytes("config.yaml", full, dir); err == nil || !strings.Contains(err.Error(), "config.yaml:1: tls_defaults: unknown key") {
		t.Fatalf("unknown top-level key with anchor: %v", err)
	}
	full = []byte(strings.Replace(strings.Replace(string(full),
		"tls_defaults: &tls {transport: tls, cert: tls/server.crt, key: tls/server.key}\n", "", 1),
		"    - {transport: tcp, addr: \"0.0.0.0:5060\"}", "    - {transport: tcp, addr: \"0.0.0.0:5060\"}\n    - &tls {transport: tls, addr: \"0.0.0.0:5062\", cert: tls/server.crt, key: tls/server.key}", 1))
	c, err := LoadBytes("config.yaml", full, dir)
	if err != nil {
		t.Fatal(err)
	}
	minimal, err := LoadBytes("minimal.yaml", doc(base), dir)
	if err != nil {
		t.Fatal(err)
	}

	ls := c.Server.Listen
	rt, err := Provision(c)
	if err != nil {
		t.Fatal(err)
	}
	rl := rt.Listeners
	minimalRT, err := Provision(minimal)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"domains lower-cased", c.Server.Domains, []string{"contoso.com", "sip.contoso.com"}},
		{"listener count", len(ls), 5},
		{"listener addr", rl[0].AddrPort.String(), "0.0.0.0:5060"},
		{"listener line", []int{ls[0].Line, ls[1].Line, ls[2].Line, ls[3].Line, ls[4].Line}, []int{4, 5, 6, 7, 10}},
		{"plain listener has no certificate", rl[0].Certificate == nil && rl[2].Certificate == nil, true},
		{"anchored listener", []any{ls[1].Transport, rl[1].AddrPort.String(), rl[1].Certificate != nil}, []any{"tls", "0.0.0.0:5062", true}},
		{"merged listener", []any{ls[3].Transport, rl[3].AddrPort.String(), ls[3].Cert, rl[3].Certificate != nil}, []any{"tls", "0.0.0.0:5061", filepath.Join(dir, "tls/server.crt"), true}},
		{"merged listener certificate", rl[3].Certificate.Leaf.DNSNames, []string{"sip.contoso.com"}},
		{"client CAs loaded", rl[3].ClientCAs != nil && rl[1].ClientCAs == nil, true},
		{"client CA path resolved", ls[3].ClientCA, filepath.Join(dir, "tls/clients-ca.crt")},
		{"self-signed generated", rl[4].Certificate != nil, true},
		{"self-signed names", rl[4].Certificate.Leaf.DNSNames, []string{"localhost", "sip.contoso.com"}},
		{"self-signed IPs", ipStrings(rl[4].Certificate.Leaf.IPAddresses), []string{"127.0.0.1", "192.0.2.10", "::1"}},
		{"server advertise", c.Server.Advertise, "192.0.2.10"},
		{"timer C", c.Server.TimerC.Duration.String(), "3m0s"},
		{"tls client roots", rt.TLSClient.RootCAs != nil, true},
		{"tls client certificate", rt.TLSClient.Certificate != nil, true},
		{"voicemail parsed", []any{rt.Voicemail[0].Host, rt.Voicemail[0].Port}, []any{"um.contoso.com", 5066}},
		{"peer prefixes", prefixStrings(rt.Peers[0].Prefixes), []string{"10.0.0.5/32", "2001:db8::/64"}},
		{"peer lines", []int{c.Peers[0].Line, c.Peers[1].Line}, []int{21, 22}},
		{"ha1 lower-cased", c.Auth.Users[0].HA1, "0123456789abcdef0123456789abcdef"},
		{"user lines", []int{c.Auth.Users[0].Line, c.Auth.Users[1].Line}, []int{28, 29}},
		{"nonce TTL", c.Auth.NonceTTL.Duration.String(), "10m0s"},
		{"route domain lower-cased", c.Routes[0].Domain, "fabrikam.com"},
		{"route parsed", []any{rt.Routes[0].NextHop.Host, rt.Routes[1].NextHop.Host, c.Routes[1].Line}, []any{"edge.fabrikam.com", "gw.contoso.com", 32}},
		{"rules file resolved", c.Forwarding.RulesFile, filepath.Join(dir, "rules.yaml")},
		{"default after", c.Forwarding.DefaultAfter.Duration.String(), "25s"},
		{"max diversions", c.Forwarding.MaxDiversions, 3},
		{"log", []string{c.Log.Level, c.Log.Format}, []string{"debug", "text"}},
		{"limits", []any{c.Limits.MaxMessageBytes, c.Limits.MaxHeaders, c.Limits.IdleTimeout.String(), c.Limits.TLSHandshake.String()}, []any{32768, 80, "1m30s", "5s"}},

		{"default timer C", minimal.Server.TimerC.String(), "3m"},
		{"default nonce TTL", minimal.Auth.NonceTTL.String(), "5m"},
		{"default default_after", minimal.Forwarding.DefaultAfter.String(), "20s"},
		{"default max diversions", minimal.Forwarding.MaxDiversions, 5},
		{"default log", []string{minimal.Log.Level, minimal.Log.Format}, []string{"info", "json"}},
		{"default limits", []any{minimal.Limits.MaxMessageBytes, minimal.Limits.MaxHeaders, minimal.Limits.IdleTimeout.String(), minimal.Limits.TLSHandshake.String()}, []any{65535, 100, "5m", "10s"}},
		{"default no voicemail", minimal.Voicemail.URI == "" && len(minimalRT.Voicemail) == 0, true},
		{"default no rules file", minimal.Forwarding.RulesFile, ""},
		{"default tls client", minimalRT.TLSClient.RootCAs == nil && minimalRT.TLSClient.Certificate == nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !equal(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func equal(a, b any) bool {
	switch a := a.(type) {
	case []string:
		return slices.Equal(a, b.([]string))
	case []int:
		return slices.Equal(a, b.([]int))
	case []any:
		return slices.Equal(a, b.([]any))
	default:
		return a == b
	}
}

func ipStrings(ips []net.IP) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return out
}

func prefixStrings(ps []netip.Prefix) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

func TestAuthAlgorithms(t *testing.T) {
	base := "server:\n  domains: [contoso.com]\n  listen:\n    - {transport: tcp, addr: \"127.0.0.1:5060\"}\n"
	c, err := LoadBytes("config.yaml", []byte(base), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Auth.Algorithms, ","); got != "SHA-256,MD5" {
		t.Fatalf("default algorithms %q", got)
	}
	c, err = LoadBytes("config.yaml", []byte(base+"auth:\n  algorithms: [MD5, SHA-256]\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Auth.Algorithms, ","); got != "MD5,SHA-256" {
		t.Fatalf("configured algorithms %q", got)
	}
	_, err = LoadBytes("config.yaml", []byte(base+"auth:\n  algorithms: [MD5, SHA-1, MD5]\n"), t.TempDir())
	want := []string{`config.yaml:6: auth.algorithms[1]: "SHA-1" is not a digest algorithm; use SHA-256 or MD5`, `config.yaml:6: auth.algorithms[2]: MD5 is listed twice`}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Fatalf("want %q in %v", w, err)
		}
	}
}
