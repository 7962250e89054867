// Package state is the proxy's state that outlives a process: registrar
// bindings and the dialogs record-routed through the proxy.
//
// One Store interface has three backends, chosen by the `state:` section of
// the configuration:
//
//   - memory: a go-memdb store in this process; state ends with it (the
//     embedded demo's choice).
//   - file: the same in-memory store, written through to an embedded bbolt
//     file before a write returns; on open the file is loaded and expired
//     records are dropped. A file that cannot be read is renamed aside
//     (<path>.corrupt-<timestamp>) and the store starts empty with a
//     warning, never an error that stops the proxy.
//   - redis: the same in-memory store as a read cache, written through to
//     Redis (standalone, Sentinel or Cluster) and shared by every instance
//     of a pool. Each write is published on a channel; every other
//     instance applies it to its cache, so reads never wait for the
//     network. After a lost connection the cache is reloaded whole.
//
// Reads (ListBindings, Dialog, Load) are always served from the local
// memdb, with no round trip; writes go through to the backend first and
// reach the local cache only once the backend has them. Records carry
// absolute expiry times: expired records are never returned, are dropped
// at load, and Sweep removes them.
//
// Changes made by other instances reach the owner of the store through the
// function given to Subscribe, in the order the backend applied them.
package state
