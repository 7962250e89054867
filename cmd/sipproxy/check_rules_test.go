package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckWarnsRuleOutsideDomains: a rule for a user outside
// server.domains never applies; check says so with file:line and still
// passes the configuration.
func TestCheckWarnsRuleOutsideDomains(t *testing.T) {
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesPath, []byte(`rules:
  - user: sip:alice@contoso.com
    immediate: sip:bob@contoso.com
  - user: sip:carol@fabrikam.com
    immediate: sip:bob@contoso.com
`), 0o600)
	cfg := filepath.Join(dir, "sipproxy.yaml")
	os.WriteFile(cfg, []byte(`server:
  domains: [contoso.com]
  listen:
    - {transport: tcp, addr: "127.0.0.1:0"}
voicemail:
  uri: "sip:um.contoso.com:5066;transport=tcp"
forwarding:
  rules_file: rules.yaml
`), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	want := "warning: " + rulesPath + ":4: rule for carol@fabrikam.com: fabrikam.com is not one of server.domains (contoso.com)"
	if !strings.Contains(errb.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, errb.String())
	}
	if strings.Contains(errb.String(), "alice@contoso.com") {
		t.Errorf("warned about a rule in our domain:\n%s", errb.String())
	}
	if !strings.Contains(out.String(), cfg+": ok") {
		t.Errorf("stdout: %s", out.String())
	}
}
