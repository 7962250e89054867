package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestExample loads config.example.yaml from a copy whose tls/ directory
// holds generated certificates, proving the example is valid as shipped
// except for the certificate files it says must exist.
func TestExample(t *testing.T) {
	dir := fixture(t)
	for _, name := range []string{"config.example.yaml", "rules.example.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Load(filepath.Join(dir, "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := Provision(c)
	if err != nil {
		t.Fatal(err)
	}
	tls := rt.Listeners[2]
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"no warnings", len(c.Warnings()), 0},
		{"listeners", len(c.Server.Listen), 3},
		{"tls listener", []any{tls.Transport, tls.Certificate != nil, tls.ClientCAs != nil}, []any{"tls", true, true}},
		{"tls client", []any{rt.TLSClient.RootCAs != nil, rt.TLSClient.Certificate != nil}, []any{true, true}},
		{"voicemail over TLS", rt.Voicemail[0].String(), "sip:um.contoso.com:5066;transport=tls"},
		{"peers", []string{c.Peers[0].Name, c.Peers[1].Name}, []string{"exchange-um", "pstn-gateway"}},
		{"routes", []string{c.Routes[0].Domain, c.Routes[1].Domain}, []string{"fabrikam.com", "*"}},
		{"rules file", c.Forwarding.RulesFile, filepath.Join(dir, "rules.example.yaml")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !equal(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}

	t.Run("without certificates", func(t *testing.T) {
		if err := os.RemoveAll(filepath.Join(dir, "tls")); err != nil {
			t.Fatal(err)
		}
		_, err := Load(filepath.Join(dir, "config.example.yaml"))
		if err == nil {
			t.Fatal("loaded without its certificate files")
		}
		if msg := err.Error(); !strings.Contains(msg, "tls/server.crt: no such file or directory") {
			t.Errorf("error does not name the missing certificate:\n%s", msg)
		}
	})
}

// TestDocumentedKeys checks that docs/configuration.md documents every key
// a configuration file can hold, written as `server.listen[].addr`.
func TestDocumentedKeys(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	keys := keyPaths(reflect.TypeFor[Config](), "")
	if len(keys) < 40 {
		t.Fatalf("only %d keys found: %q", len(keys), keys)
	}
	for _, k := range keys {
		if !strings.Contains(string(data), "`"+k+"`") {
			t.Errorf("docs/configuration.md does not document `%s`", k)
		}
	}
}

// keyPaths lists the YAML key paths of t; list items are written "[]".
func keyPaths(t reflect.Type, prefix string) []string {
	var out []string
	fields := yamlFields(t)
	for name, i := range fields {
		path := join(prefix, name)
		ft := t.Field(i).Type
		switch {
		case ft == durationType:
			out = append(out, path)
		case ft.Kind() == reflect.Struct:
			out = append(out, path)
			out = append(out, keyPaths(ft, path)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, path)
			out = append(out, keyPaths(ft.Elem(), path+"[]")...)
		default:
			out = append(out, path)
		}
	}
	return out
}
