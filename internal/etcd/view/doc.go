// Package view holds a process's in-memory copy of the federation as stored in the hub's
// etcd: registered clusters with their heartbeats, synced markers and published
// services, and the global services and policies (failover, traffic and
// authorization: hub-written, so admission does not apply to them; etcd roles keep
// agents from writing them, and model.Decode refuses what the CRDs refuse).
//
// A View is a kvstore.Observer of model.Record: a kvstore.Reader feeds it, so it holds
// exactly what etcd holds (as of the reader's last event), minus malformed values,
// which the reader skips while keeping the last good one. The hub mirrors the clusters
// prefix, an agent the whole keyspace.
//
// Invariants: records in a View are never mutated after they are stored, so the
// accessors hand them out without copying; maps and slices the accessors return are
// the caller's own. Freshness is judged on the local clock by when a heartbeat was last
// seen, never by timestamps another machine wrote. Subscribers are called after every
// change, outside the View's lock, in the reader's goroutine: they must not block.
//
// A View is also a kvstore.VersionObserver: it knows the version of every record it
// holds and the revision its state reflects, and Digest covers what it serves (each
// record with the version it was delivered as), so that it can be compared with the
// store's digest at that revision; after OnResync, the next OnSynced drops whatever
// the Resync's list did not deliver. Only test builds (tag meshfedtesthooks) can
// change a View behind its Reader's back (DropForTest).
package view
