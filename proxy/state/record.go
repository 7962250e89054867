package state

import (
	"time"
)

// Flow is where a REGISTER came from: the connection or address requests
// for the binding go back over (the idea of RFC 5626).
type Flow struct {
	Transport string `json:"transport"` // udp, tcp or tls (lower case)
	Source    string `json:"source"`    // remote "ip:port"
}

// Binding is one contact address registered for an address of record.
type Binding struct {
	AOR string `json:"aor"` // normalised "user@domain"
	// Key identifies the binding within its AOR: the RFC 3261 19.1.4
	// comparison key of the contact URI.
	Key        string    `json:"key"`
	Contact    string    `json:"contact"`     // contact URI as registered
	ContactRaw string    `json:"contact_raw"` // Contact header value without "expires"
	Expires    time.Time `json:"expires"`     // absolute
	Q          float64   `json:"q"`
	CallID     string    `json:"call_id"`
	CSeq       uint32    `json:"cseq"`
	Flow       Flow      `json:"flow"`
	Updated    time.Time `json:"updated"`
	// Instance names the proxy instance holding the flow, and InstanceAddr
	// is how other instances reach it (its advertised SIP address on the
	// flow's transport, "host:port"): a request for the binding has to
	// leave through that instance when the flow is a connection.
	Instance     string `json:"instance,omitempty"`
	InstanceAddr string `json:"instance_addr,omitempty"`
}

// Live reports whether the binding has not expired at now.
func (b *Binding) Live(now time.Time) bool { return b.Expires.After(now) }

// Dialog is what the proxy remembers of a call record-routed through it:
// enough to relay in-dialog requests (a BYE) between its parties after a
// restart. It mirrors the proxy's dialog table (proxy/dialogs.go).
type Dialog struct {
	CallID    string   `json:"call_id"`
	CallerTag string   `json:"caller_tag"` // From tag of the initial INVITE
	Confirmed []string `json:"confirmed"`  // callee To tags of the 2xx relayed
	Caller    Party    `json:"caller"`
	Callee    Party    `json:"callee"`
	// Since is the last sign of life; Expires is when the record is
	// forgotten if nothing else happens (Since plus the idle limit).
	Since    time.Time `json:"since"`
	Expires  time.Time `json:"expires"`
	Instance string    `json:"instance,omitempty"`
}

// Live reports whether the dialog record has not expired at now.
func (d *Dialog) Live(now time.Time) bool { return d.Expires.After(now) }

// Party is one side of a dialog.
type Party struct {
	Addrs []string `json:"addrs,omitempty"` // IP addresses its messages come from
	Tags  []string `json:"tags,omitempty"`  // callee side: To tags of its 1xx/2xx
	Hops  []Hop    `json:"hops,omitempty"`  // its Contacts and Record-Route entries
}

// Hop identifies a next hop: user, host and port.
type Hop struct {
	User string `json:"user,omitempty"`
	Host string `json:"host"`
	Port int    `json:"port"`
}

// Snapshot is every live record of a store.
type Snapshot struct {
	Bindings []Binding
	Dialogs  []Dialog
}

// BindingChange is what one REGISTER does to one address of record: the
// bindings written and the keys of the bindings removed, applied together.
type BindingChange struct {
	AOR    string    `json:"aor"`
	Put    []Binding `json:"put,omitempty"`
	Delete []string  `json:"delete,omitempty"` // binding keys
}

// EventKind says what an Event carries.
type EventKind int

const (
	// BindingsChanged: Change was applied by another instance.
	BindingsChanged EventKind = iota + 1
	// DialogPut: Dialog was written by another instance.
	DialogPut
	// DialogDeleted: the dialog CallID was removed by another instance.
	DialogDeleted
	// Resynced: the store reloaded its cache whole (after a lost
	// connection some events may have been missed); Snapshot is the new
	// state, which replaces everything the subscriber holds.
	Resynced
)

// Event is a change the store learned of from outside this process.
type Event struct {
	Kind     EventKind
	Change   BindingChange // BindingsChanged
	Dialog   Dialog        // DialogPut
	CallID   string        // DialogDeleted
	Snapshot Snapshot      // Resynced
}
