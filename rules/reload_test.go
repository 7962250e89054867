package rules

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type report struct {
	ok    bool
	rules int
	at    time.Time
}

// reporter records Reloaded calls and hands them to the test one by one.
type reporter struct{ c chan report }

func newReporter() *reporter { return &reporter{c: make(chan report, 64)} }

func (r *reporter) Reloaded(ok bool, rules int, at time.Time) { r.c <- report{ok, rules, at} }

func (r *reporter) next(t *testing.T) report {
	t.Helper()
	select {
	case rep := <-r.c:
		return rep
	case <-time.After(5 * time.Second):
		t.Fatal("no reload reported within 5s")
		return report{}
	}
}

func (r *reporter) none(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case rep := <-r.c:
		t.Fatalf("unexpected reload reported: %+v", rep)
	case <-time.After(wait):
	}
}

// syncBuffer is a log sink safe for the watcher goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const badFile = `rules:
  - user: sip:alice@contoso.com
    immediate: sip:alice@contoso.com
  - user: sip:bob@contoso.com
    unanswered: {target: sip:x@contoso.com, after: 1h}
`

// writeRename replaces path the way editors do: write a temp file in the
// same directory, then rename it over the original.
func writeRename(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".rules.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newTestReloader(t *testing.T, content string) (string, *Store, *Reloader, *reporter, *syncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	store, rep, logs := New(), newReporter(), &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return path, store, NewReloader(path, store, defaultAfter, log, rep), rep, logs
}

func TestReloaderLoadAndReload(t *testing.T) {
	path, store, r, rep, logs := newTestReloader(t, fileV1)
	if err := r.Load(); err != nil {
		t.Fatal(err)
	}
	if got := rep.next(t); !got.ok || got.rules != 2 || got.at.IsZero() {
		t.Errorf("Load reported %+v, want ok with 2 rules", got)
	}

	// A bad file: errors returned and logged, old rules kept, ok=false.
	if err := os.WriteFile(path, []byte(badFile), 0o644); err != nil {
		t.Fatal(err)
	}
	err := r.Reload()
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 2 {
		t.Fatalf("Reload of a bad file returned %v, want 2 errors", err)
	}
	if got := rep.next(t); got.ok || got.rules != 2 {
		t.Errorf("bad reload reported %+v, want not ok with the old 2 rules", got)
	}
	if _, ok := store.Snapshot().Lookup("alice@contoso.com"); !ok {
		t.Error("bad reload dropped the old rules")
	}
	for _, want := range []string{"line=3", "forwards to themselves", "line=5", "outside 1s..5m0s", "keeping the old rules"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}

	// A good file again.
	if err := os.WriteFile(path, []byte(fileV2), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := rep.next(t); !got.ok || got.rules != 2 {
		t.Errorf("good reload reported %+v", got)
	}
	if _, ok := store.Snapshot().Lookup("dave@contoso.com"); !ok {
		t.Error("good reload not installed")
	}

	// SIGHUP reloads even an unchanged file.
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	rep.next(t)
}

func TestReloaderLoadErrors(t *testing.T) {
	path, store, r, rep, logs := newTestReloader(t, badFile)
	err := r.Load()
	var list ErrorList
	if !errors.As(err, &list) || !strings.HasPrefix(err.Error(), path+":3: ") {
		t.Errorf("Load of a bad file: %v", err)
	}
	if got := rep.next(t); got.ok || got.rules != 0 || store.Snapshot().Count() != 0 {
		t.Errorf("Load of a bad file reported %+v", got)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("Load logged errors it returns:\n%s", logs)
	}

	missing := NewReloader(filepath.Join(t.TempDir(), "nope.yaml"), New(), defaultAfter, nil, nil)
	if err := missing.Load(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func TestReloaderLogsBoundedErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n")
	for range maxLoggedErrors + 50 {
		b.WriteString("  - user: nope\n    busy: sip:x@contoso.com\n")
	}
	path, _, r, _, logs := newTestReloader(t, "")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	err := r.Reload()
	var list ErrorList
	if !errors.As(err, &list) || len(list) != maxLoggedErrors+50 {
		t.Fatalf("Reload returned %d errors, want all %d", len(list), maxLoggedErrors+50)
	}
	if got := strings.Count(logs.String(), `msg="rules file error"`); got != maxLoggedErrors {
		t.Errorf("logged %d errors, want %d", got, maxLoggedErrors)
	}
	if !strings.Contains(logs.String(), "not_logged=50") {
		t.Errorf("log does not say how many errors were left out:\n%.500s", logs)
	}
}

// TestReloaderRun edits the file the ways operators do and checks that the
// watcher reloads it, keeps old rules on a bad file, and ignores other files.
func TestReloaderRun(t *testing.T) {
	path, store, r, rep, _ := newTestReloader(t, fileV1)
	if err := r.Load(); err != nil {
		t.Fatal(err)
	}
	rep.next(t)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// Editor style: temp file renamed over the rules file. Repeated until
	// seen, as the watch may not have started yet; once loaded, repeats
	// leave the bytes unchanged and are not reloaded.
	var got report
	for seen := false; !seen; {
		writeRename(t, path, fileV2)
		select {
		case got, seen = <-rep.c:
		case <-time.After(10 * debounce):
		}
	}
	if !got.ok || got.rules != 2 {
		t.Fatalf("rename-write reported %+v", got)
	}
	if _, ok := store.Snapshot().Lookup("dave@contoso.com"); !ok {
		t.Fatal("rename-write not loaded")
	}

	// A broken file leaves v2 serving.
	writeRename(t, path, badFile)
	if got := rep.next(t); got.ok || got.rules != 2 {
		t.Fatalf("bad file reported %+v", got)
	}
	if _, ok := store.Snapshot().Lookup("dave@contoso.com"); !ok {
		t.Fatal("bad file dropped the old rules")
	}

	// In-place write, as `cat > rules.yaml` does.
	if err := os.WriteFile(path, []byte(fileV1), 0o644); err != nil {
		t.Fatal(err)
	}
	if got = rep.next(t); !got.ok {
		t.Fatalf("in-place write reported %+v", got)
	}
	if _, ok := store.Snapshot().Lookup("alice@contoso.com"); !ok {
		t.Fatal("in-place write not loaded")
	}

	// Other files in the directory, and a touch that changes nothing, do
	// not reload.
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), "config.yaml"), []byte("x: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	writeRename(t, path, fileV1)
	rep.none(t, 5*debounce)
}

func TestReloaderRunDebounces(t *testing.T) {
	path, _, r, rep, _ := newTestReloader(t, fileV1)
	if err := r.Load(); err != nil {
		t.Fatal(err)
	}
	rep.next(t)
	r.quiet = time.Second // generous, so that a loaded machine cannot split the burst
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = r.Run(ctx) }()
	for seen := false; !seen; { // until the watch runs
		writeRename(t, path, fileV2)
		select {
		case <-rep.c:
			seen = true
		case <-time.After(3 * r.quiet):
		}
	}

	// A burst of writes closer together than the debounce: one reload, of
	// the last content.
	for i := range 6 {
		content := fileV2
		if i%2 == 1 {
			content = fileV1
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := rep.next(t); !got.ok {
		t.Fatalf("burst reported %+v", got)
	}
	if _, ok := r.store.Snapshot().Lookup("alice@contoso.com"); !ok {
		t.Error("burst did not end with the last content loaded")
	}
	rep.none(t, 2*r.quiet)
}

func TestReloaderRunStopsAndFails(t *testing.T) {
	_, _, r, _, _ := newTestReloader(t, fileV1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Run(ctx); err != nil {
		t.Errorf("Run with a cancelled context: %v", err)
	}
	gone := NewReloader(filepath.Join(t.TempDir(), "no-such-dir", "rules.yaml"), New(), defaultAfter, nil, nil)
	if err := gone.Run(context.Background()); err == nil {
		t.Error("Run on a missing directory returned nil")
	}
}
