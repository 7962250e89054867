package state

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

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
