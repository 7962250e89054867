// Package state is the proxy's state that outlives a process: registrar
// bindings and the dialogs record-routed through the proxy.
//
// One Store interface has three backends, chosen by the `state:` section of
// the configuration:
//
//   - memory (NewMemory): a go-memdb store in this process; state ends with
//     it. It is also the local cache of the other two.
//   - file (OpenFile): the in-memory store written through to an embedded
//     bbolt file before a write returns (concurrent writes share one
//     commit); on open the file is loaded and expired records are deleted.
//     A file that cannot be read is renamed aside (<path>.corrupt-<time>,
//     a *CorruptError warning) and the store starts empty; a file that
//     cannot be used at all leaves the store in memory only, Up false.
//     Never an error that stops the proxy.
//   - redis (OpenRedis): the in-memory store as a read cache, written
//     through to Redis (standalone, Sentinel or Cluster, go-redis v9's
//     UniversalClient) and shared by every instance of a pool. Each write
//     is one script that changes the key and publishes the change on a
//     channel; every other instance applies it to its cache and hands it to
//     its subscribers (the registrar's memdb), within milliseconds. A
//     binding hash expires with its last binding (key TTL). While Redis is
//     unreachable or slower than the timeout, Up is false, binding writes
//     fail at once (the registrar answers 503), dialog writes are kept and
//     written later; after every (re)connection the cache is reloaded
//     whole, this instance's records that Redis lost are written back, and
//     subscribers get a Resynced event.
//
// Reads (ListBindings, Dialog, Load) are always served from the local
// memdb: no round trip on the call path. Records carry absolute expiry
// times: expired records are never returned, are dropped at load, and
// Sweep removes them.
//
// Check probes a configured backend for `sipproxy check` without changing
// anything. statetest starts real redis-server processes for tests.
package state
