package rules

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// rulesFile generates a rules file of n users mixing the rule kinds:
// immediate only, unanswered with and without after, busy only, and
// unanswered plus busy to the user's own mailbox.
func rulesFile(n int) []byte {
	var b strings.Builder
	b.Grow(n * 120)
	b.WriteString("rules:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - user: sip:user%d@contoso.com\n", i)
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "    immediate: sip:user%d@contoso.com\n", (i+1)%n)
		case 1:
			fmt.Fprintf(&b, "    unanswered: {target: \"sip:user%d@contoso.com;opaque=app:voicemail\", after: 15s}\n", i)
		case 2:
			fmt.Fprintf(&b, "    busy: \"sip:user%d@contoso.com;opaque=app:voicemail\"\n", i)
		case 3:
			fmt.Fprintf(&b, "    unanswered: {target: \"sip:user%d@contoso.com;opaque=app:voicemail\"}\n", i)
			fmt.Fprintf(&b, "    busy: sip:+1425555%04d@gw.contoso.com\n", i%10000)
		}
	}
	return []byte(b.String())
}

func TestRulesFileGenerator(t *testing.T) {
	rules, err := Parse("gen.yaml", rulesFile(1000), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 1000 {
		t.Fatalf("got %d rules, want 1000", len(rules))
	}
}

// BenchmarkLoad100k is issue 4's scale target: read, validate and install
// a 100,000-user file into an empty store in under a second.
func BenchmarkLoad100k(b *testing.B) {
	data := rulesFile(100_000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rules, err := Parse("bench.yaml", data, 20*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if err := New().Replace(rules); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReload100kUnchanged reloads the same 100,000-rule file into a
// full store, as a touch or SIGHUP without edits does.
func BenchmarkReload100kUnchanged(b *testing.B) {
	data := rulesFile(100_000)
	s := benchStore(b)
	b.ReportAllocs()
	for b.Loop() {
		rules, err := Parse("bench.yaml", data, 20*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Replace(rules); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReload100kAllChanged alternates between two files in which every
// rule differs: the worst reload, every rule rewritten in the transaction.
func BenchmarkReload100kAllChanged(b *testing.B) {
	files := [2][]byte{rulesFile(100_000), bytes.ReplaceAll(rulesFile(100_000), []byte("contoso.com"), []byte("fabrikam.com"))}
	s := New()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rules, err := Parse("bench.yaml", files[i%2], 20*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Replace(rules); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkParse100k(b *testing.B) {
	data := rulesFile(100_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("bench.yaml", data, 20*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParse100kOneDocument is Parse without the parallel split.
func BenchmarkParse100kOneDocument(b *testing.B) {
	data := rulesFile(100_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseWhole("bench.yaml", data, 20*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplace100kEmpty installs 100,000 parsed rules into an empty store.
func BenchmarkReplace100kEmpty(b *testing.B) {
	rules, err := Parse("bench.yaml", rulesFile(100_000), 20*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := New().Replace(rules); err != nil {
			b.Fatal(err)
		}
	}
}

func benchStore(b *testing.B) *Store {
	b.Helper()
	rules, err := Parse("bench.yaml", rulesFile(100_000), 20*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	s := New()
	if err := s.Replace(rules); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkLookup is the per-INVITE path: a go-memdb read (4 allocs/op;
// TestLookupAllocations holds the budget).
func BenchmarkLookup(b *testing.B) {
	snap := benchStore(b).Snapshot()
	keys := []string{"user1@contoso.com", "user77777@contoso.com", "nobody@contoso.com"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := snap.Lookup(keys[i%len(keys)]); ok != (i%len(keys) != 2) {
			b.Fatal("wrong lookup result")
		}
		i++
	}
}
