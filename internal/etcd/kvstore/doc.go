// Package kvstore keeps a set of etcd keys in step with a process's state, in
// both directions, across disconnects, compactions and lease loss.
//
// A Writer owns a set of keys: callers say what each key should hold (Upsert,
// Delete) and the Writer makes etcd agree, in the background. A Reader mirrors
// every key under a prefix into an Observer. Agents publish with a Writer and
// import with Readers; the hub does the same with its own keys. The package
// knows nothing about meshfed's key layout or values: keys come from
// internal/keyspace and values are encoded by the caller.
//
// # Writer invariants
//
//   - Writes are queued and merged per key: only the latest desired value of a
//     key is written, so a burst of updates costs few Puts. A Put whose value
//     equals the last one written (under the current lease) is skipped.
//   - A failed write is retried with per-key exponential backoff until it
//     succeeds or is superseded; the desired state is never dropped.
//   - MarkSynced arranges for Options.SyncedKey to be written only after every
//     update queued before the call has been written. After a lease loss the
//     marker is rewritten only after every key has been rewritten.
//   - With Options.LeaseTTL, every key (marker included) is bound to a lease
//     kept alive by a concurrency.Session. When the session ends (Done), the
//     keys vanished with the lease: the Writer opens a new session and rewrites
//     every desired key bound to the new lease.
//   - Close ends the session: it revokes the lease when Options.RevokeOnClose
//     is set (every bound key disappears at once), and otherwise leaves it to
//     expire after LeaseTTL (a successor can take the keys over without readers
//     seeing them vanish).
//   - A Writer never reads or deletes keys it was not told about.
//
// # Reader invariants
//
//   - The Observer first receives the state of the prefix at one revision
//     (a paginated, consistent List), then OnSynced, then every later change
//     from a Watch that starts right after that revision.
//   - When the watch fails (compaction, lost leader, closed or cancelled
//     stream, any Err()), the Reader re-lists: every key it knows is stale until
//     the new list sees it; keys the list returns are delivered only if their
//     ModRevision changed; keys still stale once the list is complete are
//     deleted; then OnSynced, then a new watch. So after a reconnect the
//     Observer holds exactly the store's state: no change lost, and no
//     (key, ModRevision) delivered twice.
//   - A value Decode rejects is skipped, logged with its key, and counted in
//     meshfed_kvstore_decode_errors_total; the Observer keeps the last good
//     value of that key, and the key is not pruned by a re-list.
//   - Watches require a leader (clientv3.WithRequireLeader): a member cut off
//     from its cluster ends the watch instead of serving stale data forever.
//   - Failed lists are retried with exponential backoff; the Reader never
//     busy-loops and never exits before its context is done.
//   - Observer methods are called from the Run goroutine only, one at a time,
//     in revision order. They must not block for long: the Reader does not read
//     ahead while the Observer works.
//
// # Who may call what
//
// Writer.Upsert, Delete, MarkSynced and WaitSynced are safe from any goroutine,
// before or after Run starts. Run may be called once per Writer or Reader.
// A Writer must be Closed to release its queue and lease; a Reader needs only
// its context cancelled.
//
// # Metrics
//
// RegisterMetrics registers the collectors with the registry of the component that
// runs the store (the hub's, an agent's):
// meshfed_kvstore_decode_errors_total{prefix},
// meshfed_kvstore_relists_total{prefix,reason},
// meshfed_kvstore_writer_queue_depth{writer},
// meshfed_kvstore_write_errors_total{writer,op},
// meshfed_kvstore_write_duration_seconds{writer,op}.
package kvstore
