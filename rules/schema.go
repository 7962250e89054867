package rules

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// Table and index names of the rule store.
const (
	tableRules = "rules"
	indexID    = "id" // the rule's normalised address of record (Rule.User)
)

// schema is the rule store's database schema: one function per table, in
// the manner of the Nomad and Consul state stores.
func schema() *memdb.DBSchema {
	return &memdb.DBSchema{
		Tables: map[string]*memdb.TableSchema{
			tableRules: rulesTableSchema(),
		},
	}
}

// rulesTableSchema holds one *Rule per user, keyed by normalised AOR. The
// user part stays case-sensitive (RFC 3261 19.1.4); internal/aor has
// already lower-cased the host.
func rulesTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableRules,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: aorIndex{},
			},
		},
	}
}

// aorIndex indexes a *Rule by its User field. It does what
// memdb.StringFieldIndex{Field: "User"} does without reflection, which
// matters when a reload inserts 100,000 rules.
type aorIndex struct{}

var (
	_ memdb.SingleIndexer = aorIndex{}
	_ memdb.PrefixIndexer = aorIndex{}
)

func (aorIndex) FromObject(obj any) (bool, []byte, error) {
	r, ok := obj.(*Rule)
	if !ok {
		return false, nil, fmt.Errorf("rules: index %s: want *Rule, got %T", indexID, obj)
	}
	if r.User == "" {
		return false, nil, nil
	}
	return true, indexKey(r.User), nil
}

func (aorIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("rules: index %s: want one argument, got %d", indexID, len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("rules: index %s: want a string, got %T", indexID, args[0])
	}
	return indexKey(s), nil
}

// PrefixFromArgs makes the key prefix of "id_prefix" scans, which Replace
// uses with "" to delete the whole table.
func (aorIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	k, err := aorIndex{}.FromArgs(args...)
	if err != nil {
		return nil, err
	}
	return k[:len(k)-1], nil // without the terminating NUL
}

// indexKey is s NUL-terminated, as memdb's string indexes store keys, so
// that no key is a prefix of another.
func indexKey(s string) []byte {
	k := make([]byte, len(s)+1)
	copy(k, s)
	return k
}
