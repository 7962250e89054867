package registrar

import (
	"slices"

	"github.com/emiago/sipgo/sip"
	"github.com/hashicorp/go-memdb"
)

// Table and index names of the registrar's state store.
const (
	tableBindings = "bindings"

	indexID      = "id"      // unique: AOR + contact key
	indexAOR     = "aor"     // all bindings of one address of record
	indexExpires = "expires" // ordered by expiry time, for Sweep and Count
)

// stateStoreSchema returns the memdb schema of the registrar: one table per
// schema function, in the style of Nomad's state store.
func stateStoreSchema() *memdb.DBSchema {
	tables := []*memdb.TableSchema{
		bindingsTableSchema(),
	}
	db := &memdb.DBSchema{Tables: make(map[string]*memdb.TableSchema, len(tables))}
	for _, t := range tables {
		db.Tables[t.Name] = t
	}
	return db
}

// bindingsTableSchema returns the schema of the "bindings" table, which holds
// *bindingRow objects. Rows are immutable once inserted: every change inserts
// a new row.
func bindingsTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableBindings,
		Indexes: map[string]*memdb.IndexSchema{
			// A binding is identified by its AOR and the RFC 3261 19.1.4
			// comparison key of its contact URI.
			indexID: {
				Name:   indexID,
				Unique: true,
				Indexer: &memdb.CompoundIndex{
					Indexes: []memdb.Indexer{
						&memdb.StringFieldIndex{Field: "AOR"},
						&memdb.StringFieldIndex{Field: "Key"},
					},
				},
			},
			indexAOR: {
				Name:    indexAOR,
				Indexer: &memdb.StringFieldIndex{Field: "AOR"},
			},
			// memdb encodes int64 big-endian with the sign bit flipped,
			// so iterating this index visits bindings in expiry order.
			indexExpires: {
				Name:    indexExpires,
				Indexer: &memdb.IntFieldIndex{Field: "ExpiresAt"},
			},
		},
	}
}

// bindingRow is what the "bindings" table stores: the public Binding plus
// the values its indexes are built from.
type bindingRow struct {
	Binding

	// Key is contactKey(Binding.Contact).
	Key string
	// ExpiresAt is Binding.Expires in Unix nanoseconds.
	ExpiresAt int64
	// params are the Contact header parameters as registered, without
	// "expires"; they are echoed in the 200 OK.
	params sip.HeaderParams
}

// live reports whether the binding has not yet expired at now (Unix nanoseconds).
func (b *bindingRow) live(now int64) bool { return b.ExpiresAt > now }

// binding returns a copy of the public binding that shares no mutable
// memory with the stored row (sip.HeaderParams are slices and sipgo edits
// them in place).
func (b *bindingRow) binding() Binding {
	out := b.Binding
	if out.Contact.UriParams != nil {
		out.Contact.UriParams = slices.Clone(out.Contact.UriParams)
	}
	if out.Contact.Headers != nil {
		out.Contact.Headers = slices.Clone(out.Contact.Headers)
	}
	return out
}
