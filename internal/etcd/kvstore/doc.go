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
//   - A Writer never reads or deletes keys it was not told about, except
//     under Options.OwnedPrefixes (see below).
//   - Failed lease grants are retried at most RetryMaxDelay (default 2s)
//     apart; a grant, like every request, waits for the connection up to
//     WriteTimeout, so the lease comes back as soon as etcd and the client's
//     connection do (etcdconn reconnects at least every second).
//
// # A store that comes back different
//
// The hub's etcd may come back as another history: a new cluster (its disk
// lost, a new external etcd), or the same cluster restored from a backup, its
// revisions back where the backup left them. The client reconnects and
// resumes watches by itself without telling anyone, so a Reader would go on
// waiting for revisions the new history reaches much later (or never
// carries), and a Writer would believe its keys written. Both track the
// store's identity (storeID: cluster ID and highest revision seen, from every
// response header) and take any of these as proof of another history:
//
//   - another cluster ID;
//   - a revision lower than one already seen (a header, or a list);
//   - for a Reader, a key listed or watched at an older ModRevision than the
//     one it processed, or at the same ModRevision with another value (the
//     Reader keeps a hash of each key's value);
//   - for a Writer, its latest write (put or delete) missing, or the key at
//     another ModRevision, when read back.
//
// Readers check the store every CheckInterval (default 5s: one single-key Get
// per watching Reader) while they watch; Writers read back their latest write
// as often (one single-key Get per Writer that has written). Both then
// converge without a restart:
//
//   - The Reader ends its watch and re-lists. The re-list delivers every key
//     whose (ModRevision, value) differs from what the Observer holds (a lower
//     ModRevision included), prunes the rest, and replaces the Reader's
//     revision bookkeeping with the new history's, so no state of the old
//     history swallows a later event: the Observer holds exactly the new
//     store. A version that already reached the Observer with the same value
//     is not delivered again.
//   - The Writer forgets what it had written and rewrites every desired key,
//     the synced marker after all of them (WaitSynced blocks again until
//     then). With a lease it drops the session without revoking it and
//     rewrites everything under a newly granted lease. With OwnedPrefixes it
//     then deletes every key under them that it does not hold (a backup
//     brings back keys deleted since), before the marker.
//
// These are counted in meshfed_kvstore_relists_total{reason} (cluster_changed,
// revision_backwards, history_differs) and
// meshfed_kvstore_writer_republishes_total{reason} (the same, and write_lost).
// What a check cannot see: a new cluster with the same cluster ID (same
// member name, peer URLs and token) whose revision has overtaken the old one
// before the check ran, with none of the Writer's or Reader's keys touched.
//
// # Reader invariants
//
//   - The Observer first receives the state of the prefix at one revision
//     (a paginated, consistent List), then OnSynced, then every later change
//     from a Watch that starts right after that revision.
//   - When the watch fails (compaction, lost leader, closed or cancelled
//     stream, any Err()), the Reader re-lists: every key it knows is stale until
//     the new list sees it; keys the list returns are delivered only if their
//     ModRevision (or, in another history, their value) changed; keys still
//     stale once the list is complete are deleted; then OnSynced, then a new
//     watch. So after a reconnect the
//     Observer holds exactly the store's state: no change lost, and no
//     (key, ModRevision) of one history delivered twice.
//   - A value Decode rejects is skipped, logged with its key, and counted in
//     meshfed_kvstore_decode_errors_total; the Observer keeps the last good
//     value of that key, and the key is not pruned by a re-list.
//   - Watches require a leader (clientv3.WithRequireLeader): a member cut off
//     from its cluster ends the watch instead of serving stale data forever.
//   - Failed lists are retried with exponential backoff capped at
//     RetryMaxDelay (default 2s); the Reader never busy-loops and never exits
//     before its context is done.
//   - Observer methods are called from the Run goroutine only, one at a time,
//     in revision order. They must not block for long: the Reader does not read
//     ahead while the Observer works.
//
// # Digests and Resync
//
// A Digest sums a hash of (key, ModRevision) over a set of keys: independent of
// order and kept incrementally, so an Observer that implements VersionObserver
// (OnVersion for every version processed, decoded or not; OnRevision when it
// holds exactly the prefix at a revision; OnResync) can be compared with the
// store's DigestAt of the same revision, a keys-only read. Reader.Resync is the
// way back for an Observer found to differ: the Reader forgets its dedupe state,
// re-lists and delivers every key; the Observer drops, at OnSynced, what the
// list did not deliver. Counted in meshfed_kvstore_relists_total{reason="resync"}.
//
// # Who may call what
//
// Reader.Resync, Writer.Upsert, Delete, MarkSynced and WaitSynced are safe from any goroutine,
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
// meshfed_kvstore_writer_republishes_total{writer,reason},
// meshfed_kvstore_write_duration_seconds{writer,op}.
package kvstore
