package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sipproxy/sipproxy/proxy/state/statetest"
)

// `sipproxy check` probes the state backend without changing anything: an
// unwritable state path or an unreachable Redis fails it, naming the line
// of the state: section.
func TestCheckStateBackend(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	redis := statetest.StartRedis(t)
	down := statetest.StartRedis(t)
	down.Stop()
	const head = "server:\n  domains: [contoso.com]\n  listen:\n    - {transport: tcp, addr: \"127.0.0.1:5060\"}\n"
	for _, tc := range []struct {
		name  string
		state string
		want  string // "" for exit 0
	}{
		{"memory", "", ""},
		{"file to create", fmt.Sprintf("state: {backend: file, path: %q}\n", filepath.Join(dir, "new", "state.db")), ""},
		{"file below a regular file", fmt.Sprintf("state: {backend: file, path: %q}\n", filepath.Join(plain, "state.db")), ":5: state: state file"},
		{"redis up", fmt.Sprintf("state: {backend: redis, addrs: [%q], timeout: 500ms}\n", redis.Addr), ""},
		{"redis down", fmt.Sprintf("state: {backend: redis, addrs: [%q], timeout: 200ms}\n", down.Addr), ":5: state: redis"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "sipproxy.yaml")
			if err := os.WriteFile(file, []byte(head+tc.state), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			code := run([]string{"check", "-config", file}, &out, &errb)
			switch {
			case tc.want == "" && code != 0:
				t.Fatalf("exit %d: %s", code, errb.String())
			case tc.want != "" && (code != 1 || !strings.Contains(errb.String(), file+tc.want)):
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, errb.String(), file+tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "new")); err == nil {
				t.Fatal("check created the state directory")
			}
		})
	}
}
