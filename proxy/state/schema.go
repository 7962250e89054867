package state

import (
	"slices"

	"github.com/hashicorp/go-memdb"
)

// Table and index names of the in-memory store.
const (
	tableBindings = "bindings"
	tableDialogs  = "dialogs"

	indexID      = "id"      // bindings: AOR + key; dialogs: Call-ID
	indexAOR     = "aor"     // bindings of one address of record
	indexExpires = "expires" // ordered by expiry, for Sweep
)

// schema returns the memdb schema: one function per table, in the style of
// Nomad's state store.
func schema() *memdb.DBSchema {
	tables := []*memdb.TableSchema{bindingsTable(), dialogsTable()}
	db := &memdb.DBSchema{Tables: make(map[string]*memdb.TableSchema, len(tables))}
	for _, t := range tables {
		db.Tables[t.Name] = t
	}
	return db
}

// bindingsTable holds *bindingRow, immutable once inserted.
func bindingsTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableBindings,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:   indexID,
				Unique: true,
				Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
					&memdb.StringFieldIndex{Field: "AOR"},
					&memdb.StringFieldIndex{Field: "Key"},
				}},
			},
			indexAOR:     {Name: indexAOR, Indexer: &memdb.StringFieldIndex{Field: "AOR"}},
			indexExpires: {Name: indexExpires, Indexer: &memdb.IntFieldIndex{Field: "ExpiresAt"}},
		},
	}
}

// dialogsTable holds *dialogRow, immutable once inserted.
func dialogsTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableDialogs,
		Indexes: map[string]*memdb.IndexSchema{
			indexID:      {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "CallID"}},
			indexExpires: {Name: indexExpires, Indexer: &memdb.IntFieldIndex{Field: "ExpiresAt"}},
		},
	}
}

type bindingRow struct {
	Binding
	ExpiresAt int64 // Binding.Expires in Unix nanoseconds
}

type dialogRow struct {
	Dialog
	ExpiresAt int64
}

// clone returns a copy sharing no slices with the stored row.
func (d Dialog) clone() Dialog {
	d.Confirmed = slices.Clone(d.Confirmed)
	d.Caller = d.Caller.clone()
	d.Callee = d.Callee.clone()
	return d
}

func (p Party) clone() Party {
	return Party{Addrs: slices.Clone(p.Addrs), Tags: slices.Clone(p.Tags), Hops: slices.Clone(p.Hops)}
}
