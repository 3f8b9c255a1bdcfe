// Package etcdmaint keeps the hub's etcd able to take writes: it compacts its
// history, defragments its members when fragmentation pays for it, recovers
// from the NOSPACE alarm, and reports the database's size, fragmentation,
// quota and alarms as metrics, Kubernetes Events and logs.
//
// # What it does, and when
//
//   - Compaction (only when Options.CompactInterval is set: an external etcd).
//     Every interval the Maintainer compacts to the revision it observed one
//     interval earlier, as kube-apiserver does, so a watcher at most one
//     interval behind can resume without ErrCompacted. An embedded etcd
//     compacts itself (etcd's periodic auto-compaction, package embedetcd):
//     then the Maintainer never compacts, except to recover from NOSPACE.
//   - Every Options.CheckInterval (and once at start) it reads each
//     endpoint's status and the cluster's alarms. With a NOSPACE alarm it
//     recovers: compact to the current revision, defragment every endpoint,
//     and disarm the alarm once the database fits the quota again. Otherwise
//     it defragments each endpoint whose free space is at least
//     Options.DefragMinFreeBytes and at least Options.DefragMinRatio of its
//     database file.
//
// # Invariants
//
//   - It never deletes or rewrites a key: compaction drops only superseded
//     revisions, so the latest value of every key survives every step,
//     including NOSPACE recovery.
//   - It defragments one endpoint at a time, the etcd leader last: a
//     defragmenting member serves nothing (reads, writes, watches) until it
//     is done, and the others keep the cluster's quorum meanwhile.
//   - It disarms NOSPACE only after compaction and defragmentation have
//     brought every endpoint's database below the quota's headroom line; if
//     live data alone fills the quota it leaves the alarm raised and says so
//     (a Warning Event): disarming would only let the next write raise it
//     again.
//   - It runs only on the leading hub replica (NeedLeaderElection): two
//     replicas never defragment at once. Its metrics therefore come from the
//     leader alone.
//   - A failed step is logged, counted and retried at the next interval; it
//     never stops the hub.
//
// # Who may call it
//
// The hub (package federation) adds a Maintainer to its manager. It needs etcd's
// root user: other users may not compact, defragment or disarm alarms.
package etcdmaint
