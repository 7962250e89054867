package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

type upGauge struct{ v float64 }

func (g *upGauge) Set(v float64) { g.v = v }

func TestFileReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "state.db") // the directory is created
	c := newClock()
	s, warn := OpenFile(path, Options{Now: c.Now})
	if warn != nil {
		t.Fatal(warn)
	}
	if err := s.WriteBindings(ctx, BindingChange{AOR: "alice@a.test", Put: []Binding{
		binding("", "short", c.Now().Add(time.Minute)), binding("", "long", c.Now().Add(time.Hour))}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutDialog(ctx, Dialog{CallID: "d1", Expires: c.Now().Add(time.Hour), Confirmed: []string{"t"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutDialog(ctx, Dialog{CallID: "d2", Expires: c.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	c.Advance(2 * time.Minute) // "short" and "d2" expire while the proxy is down
	s, warn = OpenFile(path, Options{Now: c.Now})
	if warn != nil {
		t.Fatal(warn)
	}
	snap := s.Load()
	if got := keys(snap.Bindings); !slices.Equal(got, []string{"alice@a.test/long"}) {
		t.Fatalf("bindings after reopen: %v", got)
	}
	if len(snap.Dialogs) != 1 || snap.Dialogs[0].CallID != "d1" || snap.Dialogs[0].Confirmed[0] != "t" {
		t.Fatalf("dialogs after reopen: %+v", snap.Dialogs)
	}
	s.Close()

	// The expired ones were deleted from the file at load, not only hidden.
	c2 := &clock{now: c.Now().Add(-time.Hour)}
	s, _ = OpenFile(path, Options{Now: c2.Now})
	defer s.Close()
	if n := len(s.Load().Bindings); n != 1 {
		t.Fatalf("expired binding still in the file (%d bindings)", n)
	}
}

func TestFileCorrupt(t *testing.T) {
	cases := []struct {
		name    string
		content []byte
	}{
		{"garbage", []byte(strings.Repeat("not a bbolt file\n", 1000))},
		{"truncated header", []byte{0xed, 0xda, 0x0c, 0xed}},
		{"zeroed pages", make([]byte, 64*1024)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.db")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			g := &upGauge{v: -1}
			s, warn := OpenFile(path, Options{Up: g})
			var ce *CorruptError
			if !errors.As(warn, &ce) || ce.Aside == "" {
				t.Fatalf("warning %v is not a *CorruptError with the file moved aside", warn)
			}
			t.Logf("warning: %v", warn)
			defer s.Close()
			if !s.Up() || g.v != 1 {
				t.Fatalf("Up = %v, gauge %v; a fresh file should be in use", s.Up(), g.v)
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 || !strings.Contains(warn.Error(), aside[0]) {
				t.Fatalf("renamed aside: %v; warning %q", aside, warn)
			}
			if kept, _ := os.ReadFile(aside[0]); !slices.Equal(kept, tc.content) {
				t.Fatal("the corrupt file was not kept as it was")
			}
			if len(s.Load().Bindings) != 0 {
				t.Fatal("not empty")
			}
			if err := PutBinding(context.Background(), s, binding("alice@a.test", "k", time.Now().Add(time.Hour))); err != nil {
				t.Fatalf("write to the fresh file: %v", err)
			}
		})
	}
}

func TestFileUnusable(t *testing.T) {
	// A path below a regular file: not writable even for root.
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	g := &upGauge{v: -1}
	s, warn := OpenFile(filepath.Join(file, "state.db"), Options{Up: g})
	if warn == nil || !strings.Contains(warn.Error(), "memory only") {
		t.Fatalf("warning = %v", warn)
	}
	defer s.Close()
	if s.Up() || g.v != 0 {
		t.Fatalf("Up = %v, gauge %v", s.Up(), g.v)
	}
	// The proxy still works, from memory.
	if err := PutBinding(context.Background(), s, binding("alice@a.test", "k", time.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if len(s.ListBindings("alice@a.test")) != 1 {
		t.Fatal("binding not kept in memory")
	}
}

func TestFileLockedByAnotherStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	first, warn := OpenFile(path, Options{})
	if warn != nil {
		t.Fatal(warn)
	}
	defer first.Close()
	second, warn := OpenFile(path, Options{})
	if warn == nil || !strings.Contains(warn.Error(), "locked") {
		t.Fatalf("warning = %v", warn)
	}
	defer second.Close()
	if second.Up() {
		t.Fatal("second store claims the file")
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 0 {
		t.Fatalf("a locked file was renamed aside: %v", aside)
	}
}

// A valid bbolt file whose data pages (not its meta pages) were damaged:
// bbolt opens it, then fails or panics while reading; either way the store
// starts empty with a warning.
func TestFileCorruptDataPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, warn := OpenFile(path, Options{})
	if warn != nil {
		t.Fatal(warn)
	}
	for i := range 200 {
		if err := PutBinding(context.Background(), s, binding(fmt.Sprintf("u%d@a.test", i), "k", time.Now().Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	for i := 2 * page; i < len(data); i++ { // keep the two meta pages
		data[i] = byte(i*7 + 3)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, warn = OpenFile(path, Options{})
	if warn == nil {
		t.Fatal("no warning")
	}
	t.Logf("warning: %v", warn)
	defer s.Close()
	if !s.Up() || len(s.Load().Bindings) != 0 {
		t.Fatalf("Up %v, %d bindings", s.Up(), len(s.Load().Bindings))
	}
}

// TestFileWriteDialogs: many dialog changes in one transaction, in memory
// at once and in the file after a reopen.
func TestFileWriteDialogs(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	c := newClock()
	s, warn := OpenFile(path, Options{Now: c.Now})
	if warn != nil {
		t.Fatal(warn)
	}
	exp := c.Now().Add(time.Hour)
	if err := s.PutDialog(ctx, Dialog{CallID: "gone", Expires: exp}); err != nil {
		t.Fatal(err)
	}
	var puts []Dialog
	for i := range 300 {
		puts = append(puts, Dialog{CallID: fmt.Sprintf("call-%03d", i), Expires: exp})
	}
	if err := s.WriteDialogs(ctx, puts, []string{"gone"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Dialog("gone"); ok {
		t.Fatal("deleted dialog still in memory")
	}
	if _, ok := s.Dialog("call-299"); !ok {
		t.Fatal("written dialog not in memory")
	}
	s.Close()
	s, warn = OpenFile(path, Options{Now: c.Now})
	if warn != nil {
		t.Fatal(warn)
	}
	defer s.Close()
	if n := len(s.Load().Dialogs); n != 300 {
		t.Fatalf("%d dialogs in the file after reopen, want 300", n)
	}
}
