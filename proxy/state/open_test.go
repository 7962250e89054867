package state

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipproxy/sipproxy/internal/config"
	"github.com/sipproxy/sipproxy/proxy/state/statetest"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, nil, 0o600)
	corrupt := filepath.Join(dir, "corrupt.db")
	os.WriteFile(corrupt, []byte(strings.Repeat("x", 8192)), 0o600)
	valid := filepath.Join(dir, "valid.db")
	s, warn := OpenFile(valid, Options{})
	if warn != nil {
		t.Fatal(warn)
	}
	PutBinding(context.Background(), s, binding("alice@a.test", "k", time.Now().Add(time.Hour)))
	s.Close()
	srv := statetest.StartRedis(t)
	down := statetest.StartRedis(t)
	down.Stop()
	second := time.Second / 4

	tests := []struct {
		name    string
		cfg     config.State
		wantErr string // "" for none
	}{
		{"memory", config.State{Backend: "memory"}, ""},
		{"new file in an existing directory", config.State{Backend: "file", Path: filepath.Join(dir, "state.db")}, ""},
		{"new file below missing directories", config.State{Backend: "file", Path: filepath.Join(dir, "a", "b", "state.db")}, ""},
		{"existing state file", config.State{Backend: "file", Path: valid}, ""},
		{"empty file", config.State{Backend: "file", Path: plain}, ""},
		{"below a regular file", config.State{Backend: "file", Path: filepath.Join(plain, "state.db")}, "not a directory"},
		{"a directory", config.State{Backend: "file", Path: dir}, "not a regular file"},
		{"corrupt file", config.State{Backend: "file", Path: corrupt}, "set it aside"},
		{"redis up", config.State{Backend: "redis", Addrs: []string{srv.Addr}, Timeout: config.Duration{Duration: second}}, ""},
		{"redis down", config.State{Backend: "redis", Addrs: []string{down.Addr}, Timeout: config.Duration{Duration: second}}, "does not answer PING"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := listTree(t, dir)
			err := Check(context.Background(), tc.cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Check = %v, want an error with %q", err, tc.wantErr)
			}
			if after := listTree(t, dir); after != before {
				t.Fatalf("Check changed the tree:\n%s\nbecame\n%s", before, after)
			}
		})
	}
}

// listTree lists names, sizes and modification times under dir.
func listTree(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			b.WriteString(p + " " + fi.ModTime().String() + " " + string(rune('0'+fi.Size()%10)) + "\n")
		}
		return nil
	})
	return b.String()
}

func TestOpenFromConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  config.State
		want string
	}{
		{"memory", config.State{Backend: "memory"}, "*state.Memory"},
		{"file", config.State{Backend: "file", Path: filepath.Join(t.TempDir(), "s.db")}, "*state.File"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, warn := Open(tc.cfg, Options{})
			if warn != nil {
				t.Fatal(warn)
			}
			defer s.Close()
			if got := typeName(s); got != tc.want {
				t.Fatalf("%s, want %s", got, tc.want)
			}
		})
	}
}

func typeName(s Store) string {
	switch s.(type) {
	case *Memory:
		return "*state.Memory"
	case *File:
		return "*state.File"
	case *Redis:
		return "*state.Redis"
	}
	return "?"
}
