package config

import (
	"slices"
	"strings"
	"testing"
)

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		yaml string // appended to base (lines 1-4)
		want []string
	}{
		{"clean", `
voicemail: {uri: "sip:um.contoso.com:5066;transport=tls"}
peers:
  - {name: um, sources: ["10.0.0.5/32"], tls_names: [um.contoso.com], trust_skip_pin: true}
  - {name: gw, sources: ["10.0.0.6/32"]}
auth:
  realm: contoso.com
  users: [{user: alice, ha1: 0123456789abcdef0123456789abcdef}]`, nil},
		{"sips voicemail", `
voicemail: {uri: "sips:um.contoso.com"}`, nil},
		{"transport parameter in any case", `
voicemail: {uri: "sip:um.contoso.com;Transport=TLS"}`, nil},
		{"no voicemail", ``, nil},
		{"voicemail over tcp", `
voicemail:
  uri: "sip:um.contoso.com:5065;transport=tcp"`, []string{
			`config.yaml:6: voicemail.uri: "sip:um.contoso.com:5065;transport=tcp" is not a TLS URI (neither sips: nor transport=tls): skip-pin can never be honoured end to end`,
		}},
		{"voicemail without transport", `
voicemail: {uri: "sip:um.contoso.com"}`, []string{
			`config.yaml:5: voicemail.uri: "sip:um.contoso.com" is not a TLS URI (neither sips: nor transport=tls): skip-pin can never be honoured end to end`,
		}},
		{"skip-pin peer without tls_names", `
peers:
  - {name: um, sources: ["10.0.0.5/32"], tls_names: [um.contoso.com], trust_skip_pin: true}
  - name: gw
    sources: ["10.0.0.6/32"]
    trust_skip_pin: true`, []string{
			`config.yaml:9: peers[1].trust_skip_pin: peer "gw" trusts skip-pin but has no tls_names: it is recognised by source address alone`,
		}},
		{"insecure tls client", `
  tls_client:
    insecure_skip_verify: true`, []string{
			`config.yaml:6: server.tls_client.insecure_skip_verify: certificates of TLS next hops (voicemail, routes) are not verified`,
		}},
		{"plain passwords", `
auth:
  realm: contoso.com
  users:
    - {user: alice, ha1: 0123456789abcdef0123456789abcdef}
    - user: bob
      password: only-for-tests`, []string{
			`config.yaml:10: auth.users[1].password: user "bob" has a plain password; prefer ha1 (and ha1_sha256)`,
		}},
		{"all at once, in file order", `
  tls_client: {insecure_skip_verify: true}
auth:
  realm: contoso.com
  users: [{user: bob, password: x}]
voicemail: {uri: "sip:um.contoso.com"}
peers: [{name: gw, sources: ["10.0.0.6/32"], trust_skip_pin: true}]`, []string{
			`config.yaml:5: server.tls_client.insecure_skip_verify: certificates of TLS next hops (voicemail, routes) are not verified`,
			`config.yaml:8: auth.users[0].password: user "bob" has a plain password; prefer ha1 (and ha1_sha256)`,
			`config.yaml:9: voicemail.uri: "sip:um.contoso.com" is not a TLS URI (neither sips: nor transport=tls): skip-pin can never be honoured end to end`,
			`config.yaml:10: peers[0].trust_skip_pin: peer "gw" trusts skip-pin but has no tls_names: it is recognised by source address alone`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadBytes("config.yaml", doc(base+tt.yaml), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range c.Warnings() {
				got = append(got, w.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// A Config built in code has no lines from a file; warnings fall back on
// the Line fields.
func TestWarningsWithoutFile(t *testing.T) {
	c := &Config{Path: "built.yaml"}
	c.Auth.Users = []User{{User: "bob", Password: "x", Line: 7}}
	got := c.Warnings()
	want := []Error{{File: "built.yaml", Line: 7, Msg: `auth.users[0].password: user "bob" has a plain password; prefer ha1 (and ha1_sha256)`}}
	if !slices.Equal(got, want) {
		t.Errorf("warnings = %v, want %v", got, want)
	}
}
