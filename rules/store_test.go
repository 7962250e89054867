package rules

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustParse(t testing.TB, file string) []Rule {
	t.Helper()
	rs, err := Parse("rules.yaml", []byte(file), defaultAfter)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

const fileV1 = `rules:
  - user: sip:alice@contoso.com
    immediate: sip:bob@contoso.com
  - user: sip:carol@contoso.com
    unanswered: {target: "sip:carol@contoso.com;opaque=app:voicemail", after: 15s}
`

const fileV2 = `rules:
  - user: sip:carol@contoso.com
    unanswered: {target: "sip:carol@contoso.com;opaque=app:voicemail", after: 15s}
    busy: "sip:carol@contoso.com;opaque=app:voicemail"
  - user: sip:dave@contoso.com
    immediate: sip:erin@contoso.com
`

func users(s *Snapshot) []string {
	var out []string
	for r := range s.All() {
		out = append(out, r.User)
	}
	return out
}

func TestStoreReplace(t *testing.T) {
	s := New()
	empty := s.Snapshot()
	if empty.Count() != 0 || len(users(empty)) != 0 {
		t.Fatalf("new store has %d rules", empty.Count())
	}
	if _, ok := empty.Lookup("alice@contoso.com"); ok {
		t.Fatal("lookup in an empty store found a rule")
	}

	if err := s.Replace(mustParse(t, fileV1)); err != nil {
		t.Fatal(err)
	}
	v1 := s.Snapshot()
	if err := s.Replace(mustParse(t, fileV2)); err != nil {
		t.Fatal(err)
	}
	v2 := s.Snapshot()

	tests := []struct {
		snap      *Snapshot
		name      string
		aor       string
		wantFound bool
		wantBusy  bool
	}{
		{empty, "empty", "alice@contoso.com", false, false},
		{v1, "v1", "alice@contoso.com", true, false},
		{v1, "v1", "carol@contoso.com", true, false},
		{v1, "v1", "dave@contoso.com", false, false},
		{v2, "v2", "alice@contoso.com", false, false},
		{v2, "v2", "carol@contoso.com", true, true},
		{v2, "v2", "dave@contoso.com", true, false},
		{v2, "v2", "Carol@contoso.com", false, false}, // user part is case-sensitive
	}
	for _, tc := range tests {
		r, ok := tc.snap.Lookup(tc.aor)
		if ok != tc.wantFound || (ok && (r.User != tc.aor || (r.Busy != nil) != tc.wantBusy)) {
			t.Errorf("%s.Lookup(%s) = %+v, %v; want found %v busy %v", tc.name, tc.aor, r, ok, tc.wantFound, tc.wantBusy)
		}
	}
	if got, want := users(v1), []string{"alice@contoso.com", "carol@contoso.com"}; !slices.Equal(got, want) {
		t.Errorf("v1 memdb rules = %v, want %v", got, want)
	}
	if got, want := users(v2), []string{"carol@contoso.com", "dave@contoso.com"}; !slices.Equal(got, want) {
		t.Errorf("v2 memdb rules = %v, want %v", got, want)
	}
	if v1.Count() != 2 || v2.Count() != 2 {
		t.Errorf("counts v1 %d v2 %d, want 2 and 2", v1.Count(), v2.Count())
	}

	if err := s.Replace(nil); err != nil {
		t.Fatal(err)
	}
	if n, all := s.Snapshot().Count(), users(s.Snapshot()); n != 0 || len(all) != 0 {
		t.Errorf("after replacing with nothing: count %d, memdb %v", n, all)
	}
}

// TestStoreReplaceAtomic: a Replace that fails part way leaves the old set,
// in memdb and in the lookup map alike.
func TestStoreReplaceAtomic(t *testing.T) {
	good := mustParse(t, fileV1)
	tests := []struct {
		name string
		bad  []Rule
	}{
		{"duplicate user", append(mustParse(t, fileV2), mustParse(t, fileV2)[1])},
		{"empty user", append(mustParse(t, fileV2), Rule{Busy: &Target{URI: "sip:x@y"}})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			if err := s.Replace(good); err != nil {
				t.Fatal(err)
			}
			before := s.Snapshot()
			if err := s.Replace(tc.bad); err == nil {
				t.Fatal("Replace accepted a bad rule set")
			}
			after := s.Snapshot()
			if after != before {
				t.Error("a failed Replace published a new snapshot")
			}
			got := memdbUsers(t, s)
			if want := []string{"alice@contoso.com", "carol@contoso.com"}; !slices.Equal(got, want) {
				t.Errorf("memdb after failed replace = %v, want %v", got, want)
			}
		})
	}
}

// memdbUsers reads the users in the store's memdb afresh, bypassing the
// snapshot and its map.
func memdbUsers(t *testing.T, s *Store) []string {
	t.Helper()
	it, err := s.db.Txn(false).Get(tableRules, indexID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*Rule).User)
	}
	return out
}

// checkConsistent: memdb and the lookup map hold exactly the given rules,
// as the same objects.
func checkConsistent(t *testing.T, s *Store, want []Rule) {
	t.Helper()
	var wantUsers []string
	for _, r := range want {
		wantUsers = append(wantUsers, r.User)
	}
	slices.Sort(wantUsers)
	if got := memdbUsers(t, s); !slices.Equal(got, wantUsers) {
		t.Fatalf("memdb holds %d users, want %d", len(got), len(wantUsers))
	}
	snap := s.Snapshot()
	if snap.Count() != len(want) {
		t.Fatalf("map holds %d rules, want %d", snap.Count(), len(want))
	}
	for r := range snap.All() {
		if m, _ := snap.Lookup(r.User); m != r {
			t.Fatalf("memdb and map disagree on %s", r.User)
		}
	}
	for _, w := range want {
		if r, _ := snap.Lookup(w.User); r == nil || !sameRule(r, &w) {
			t.Fatalf("stored rule for %s differs from the one given", w.User)
		}
	}
}

// TestStoreReplacePaths covers both ways Replace reaches "delete all,
// insert all": a few changes written one by one, and a wholesale rewrite.
func TestStoreReplacePaths(t *testing.T) {
	base := mustParse(t, string(rulesFile(100)))
	s := New()
	if err := s.Replace(base); err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, s, base)
	before := s.Snapshot()

	// Same rules again: nothing written, the snapshot stays.
	if err := s.Replace(slices.Clone(base)); err != nil {
		t.Fatal(err)
	}
	if s.Snapshot() != before {
		t.Error("replacing with the same rules published a new snapshot")
	}

	// A few edits: one rule changed, one moved to another line, one
	// removed, one added.
	edited := slices.Clone(base)
	edited[3].Busy = &Target{URI: "sip:z@contoso.com", AOR: "z@contoso.com"}
	edited[4].Line++
	removed := edited[7].User
	edited = slices.Delete(edited, 7, 8)
	edited = append(edited, Rule{User: "new@contoso.com", UserURI: "sip:new@contoso.com", Busy: &Target{URI: "sip:z@contoso.com", AOR: "z@contoso.com"}, Line: 999})
	if err := s.Replace(edited); err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, s, edited)
	after := s.Snapshot()
	for i, r := range edited {
		old, _ := before.Lookup(r.User)
		cur, _ := after.Lookup(r.User)
		wantReused := i != 3 && i != 4 && r.User != "new@contoso.com"
		if reused := old == cur; reused != wantReused {
			t.Errorf("rule %d (%s): object reused %v, want %v", i, r.User, reused, wantReused)
		}
	}
	if _, ok := after.Lookup(removed); ok {
		t.Errorf("removed rule %s still found", removed)
	}
	if got := users(before); len(got) != 100 || !slices.Contains(got, removed) {
		t.Error("the edit changed the earlier snapshot")
	}

	// Everything changed: the whole table rewritten, nothing left over.
	other := mustParse(t, strings.ReplaceAll(string(rulesFile(100)), "contoso.com", "fabrikam.com"))
	if err := s.Replace(other); err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, s, other)
	if got := users(after); len(got) != 100 || !slices.Contains(got, "new@contoso.com") {
		t.Error("the rewrite changed the earlier snapshot")
	}
}

func TestStoreReplaceCopiesInput(t *testing.T) {
	rs := mustParse(t, fileV1)
	s := New()
	if err := s.Replace(rs); err != nil {
		t.Fatal(err)
	}
	rs[0].User = "mallory@contoso.com"
	if _, ok := s.Snapshot().Lookup("alice@contoso.com"); !ok {
		t.Error("changing the caller's slice changed the store")
	}
}

// TestLookupReadsMemdb: a snapshot answers from go-memdb's committed state
// and from nothing else: a rule committed straight into memdb is found.
func TestLookupReadsMemdb(t *testing.T) {
	s := New()
	txn := s.db.Txn(true)
	if err := txn.Insert(tableRules, &Rule{User: "zed@contoso.com", UserURI: "sip:zed@contoso.com", Line: 9}); err != nil {
		t.Fatal(err)
	}
	txn.Commit()
	snap := &Snapshot{txn: s.db.Txn(false)}
	if r, ok := snap.Lookup("zed@contoso.com"); !ok || r.Line != 9 {
		t.Fatalf("Lookup of a rule committed to memdb = %+v, %v", r, ok)
	}
	if _, ok := snap.Lookup("zed@contoso.co"); ok {
		t.Error("Lookup matched a prefix of a key")
	}
	if _, ok := s.Snapshot().Lookup("zed@contoso.com"); ok {
		t.Error("a snapshot taken before the commit sees it")
	}
}

// TestLookupAllocations pins what a lookup costs: go-memdb's Txn.First
// allocates four times (the boxed argument, the index key, the index path,
// a radix transaction), which is the price of reading the store the design
// names instead of a map beside it. The map read allocated nothing.
func TestLookupAllocations(t *testing.T) {
	s := New()
	if err := s.Replace(mustParse(t, fileV1)); err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	key := "carol@contoso.com"
	if allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := snap.Lookup(key); !ok {
			t.Fatal("not found")
		}
	}); allocs > 4 {
		t.Errorf("Lookup allocates %v times per call, budget 4", allocs)
	}
}

// TestStoreConcurrent runs readers against replaces under -race: every
// snapshot a reader takes is one of the whole sets, never a mix.
func TestStoreConcurrent(t *testing.T) {
	s := New()
	v1, v2 := mustParse(t, fileV1), mustParse(t, fileV2)
	if err := s.Replace(v1); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				snap := s.Snapshot()
				_, alice := snap.Lookup("alice@contoso.com")
				_, dave := snap.Lookup("dave@contoso.com")
				if alice == dave {
					t.Error("snapshot mixes two rule sets")
					return
				}
			}
		})
	}
	deadline := time.Now().Add(200 * time.Millisecond)
	for i := 0; time.Now().Before(deadline); i++ {
		next := v1
		if i%2 == 0 {
			next = v2
		}
		if err := s.Replace(next); err != nil {
			t.Error(err)
			break
		}
	}
	close(stop)
	wg.Wait()
}
