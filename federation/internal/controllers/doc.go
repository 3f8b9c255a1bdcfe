// Package controllers holds the hub's reconcilers: they write MeshClusters,
// GlobalServices and FailoverPolicies from the hub's API server into the hub's etcd, and
// write status back from what the agents publish.
//
// Every reconciler is level-based: one pass reads the object and the current etcd and
// view state, converges etcd to the object, and writes status only when it changed,
// with conditions stamped with the object's generation. A finalizer makes deletes
// reach etcd; the Collector removes whatever etcd holds that no object accounts for
// (deletes that happened while the hub was down, finalizers removed by hand), so etcd
// converges to the CRDs after any restart.
//
// The hub's etcd is the only store written here; member clusters are never contacted.
package controllers
