package config

import (
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDefault(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	var listeners []string
	for _, l := range c.Server.Listen {
		listeners = append(listeners, l.Transport+" "+l.Addr)
	}
	var users []string
	for _, u := range c.Auth.Users {
		users = append(users, u.User)
	}
	tls := c.Server.Listen[2]
	rt, err := Provision(c)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"listeners", listeners, []string{"tcp 127.0.0.1:5060", "udp 127.0.0.1:5060", "tls 127.0.0.1:5061"}},
		{"self-signed tls", tls.SelfSigned && tls.Cert == "", true},
		{"plain listeners have no certificate", rt.Listeners[0].Certificate == nil && rt.Listeners[1].Certificate == nil, true},
		{"metrics", c.Metrics.Listen, "127.0.0.1:9090"},
		{"domains", c.Server.Domains, []string{"contoso.com"}},
		{"record route", c.Server.RecordRoute, true},
		{"voicemail", c.Voicemail.Targets()[0].String(), "sip:127.0.0.1:5066;transport=tls"},
		{"insecure tls client", c.Server.TLSClient.InsecureSkipVerify, true},
		{"no voicemail probes (no UM behind the demo)", c.Voicemail.ProbeInterval.Duration, time.Duration(0)},
		{"realm", c.Auth.Realm, "contoso.com"},
		{"users", users, []string{"alice", "bob", "carol", "dave"}},
		{"alice's password", c.Auth.Users[0].Password, "alice-secret"},
		// sipp answers only the first challenge, with MD5; baresip gives up
		// on a SHA-256 or second challenge.
		{"digest algorithms", c.Auth.Algorithms, []string{"MD5"}},
		{"log", []string{c.Log.Level, c.Log.Format}, []string{"info", "text"}},
		{"no rules file", c.Forwarding.RulesFile, ""},
		{"path", c.Path, ""},
		{"timer C default", c.Server.TimerC.String(), "3m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !equal(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}

	t.Run("certificate", func(t *testing.T) {
		cert := rt.Listeners[2].Certificate
		if cert == nil {
			t.Fatal("no certificate generated")
		}
		leaf := cert.Leaf
		roots := x509.NewCertPool()
		roots.AddCert(leaf)
		for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "contoso.com", Roots: roots}); err == nil {
			t.Error("the demo certificate is valid beyond loopback")
		}
		again, err := Provision(c)
		if err != nil {
			t.Fatal(err)
		}
		if again.Listeners[2].Certificate.Leaf.Equal(leaf) {
			t.Error("two provisionings share one certificate")
		}
	})

	t.Run("rules", func(t *testing.T) {
		var doc struct {
			Rules []struct {
				User       string `yaml:"user"`
				Immediate  string `yaml:"immediate"`
				Busy       string `yaml:"busy"`
				Unanswered struct {
					Target string   `yaml:"target"`
					After  Duration `yaml:"after"`
				} `yaml:"unanswered"`
			} `yaml:"rules"`
		}
		dec := yaml.NewDecoder(strings.NewReader(string(c.Forwarding.EmbeddedRules)))
		dec.KnownFields(true)
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range doc.Rules {
			got = append(got, strings.Join([]string{r.User, r.Immediate, r.Unanswered.Target, r.Unanswered.After.String(), r.Busy}, " | "))
		}
		want := []string{
			"sip:carol@contoso.com |  | sip:carol@contoso.com;opaque=app:voicemail | 15s | sip:carol@contoso.com;opaque=app:voicemail",
			"sip:dave@contoso.com | sip:alice@contoso.com |  | 0s | ",
		}
		if !slices.Equal(got, want) {
			t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		c.Forwarding.EmbeddedRules[0] = 'X'
		again, err := Default()
		if err != nil {
			t.Fatal(err)
		}
		if again.Forwarding.EmbeddedRules[0] == 'X' {
			t.Error("Defaults share the rules bytes")
		}
	})

	t.Run("warnings", func(t *testing.T) {
		var got []string
		for _, w := range c.Warnings() {
			got = append(got, w.Error())
		}
		want := []string{
			`embedded:default.yaml:14: server.tls_client.insecure_skip_verify: certificates of TLS next hops (voicemail, routes) are not verified`,
			`embedded:default.yaml:30: auth.users[0].password: user "alice" has a plain password; prefer ha1 (and ha1_sha256)`,
			`embedded:default.yaml:31: auth.users[1].password: user "bob" has a plain password; prefer ha1 (and ha1_sha256)`,
			`embedded:default.yaml:32: auth.users[2].password: user "carol" has a plain password; prefer ha1 (and ha1_sha256)`,
			`embedded:default.yaml:33: auth.users[3].password: user "dave" has a plain password; prefer ha1 (and ha1_sha256)`,
		}
		if !slices.Equal(got, want) {
			t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// TestMovePorts: the embedded default's listeners and metrics server move
// to free ports or by an offset, addresses unchanged; an offset that leaves
// the port range is refused.
func TestMovePorts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		free    bool
		offset  int
		listen  []string
		metrics string
		err     string
	}{
		{"unchanged", false, 0, []string{"127.0.0.1:5060", "127.0.0.1:5060", "127.0.0.1:5061"}, "127.0.0.1:9090", ""},
		{"free", true, 0, []string{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"}, "127.0.0.1:0", ""},
		{"offset", false, 100, []string{"127.0.0.1:5160", "127.0.0.1:5160", "127.0.0.1:5161"}, "127.0.0.1:9190", ""},
		{"out of range", false, 60500, nil, "", "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Default()
			if err != nil {
				t.Fatal(err)
			}
			err = c.MovePorts(tc.free, tc.offset)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range c.Server.Listen {
				got = append(got, l.Addr)
			}
			if !slices.Equal(got, tc.listen) || c.Metrics.Listen != tc.metrics {
				t.Errorf("listen %q metrics %q, want %q %q", got, c.Metrics.Listen, tc.listen, tc.metrics)
			}
		})
	}
}
