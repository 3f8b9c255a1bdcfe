// Package controllers holds the hub's reconcilers: they write MeshClusters,
// GlobalServices, FailoverPolicies, TrafficPolicies and AuthorizationPolicies from the hub's API server into the hub's etcd, and
// write status back from what the agents publish.
//
// Every reconciler is level-based: one pass reads the object and the current etcd and
// view state, converges etcd to the object, and writes status only when it changed,
// with conditions stamped with the object's generation. A finalizer makes deletes
// reach etcd; the Collector removes whatever etcd holds that no object accounts for
// (deletes that happened while the hub was down, finalizers removed by hand), so etcd
// converges to the CRDs after any restart.
//
// Status tells what is served, computed by the rules the agents route by: a
// GlobalService counts only endpoints serving one of its ports (model.MemberPort,
// model.PortOf) and lists the clusters excluded from a port; a FailoverPolicy's
// ResolvedRefs is False when a rule names an unregistered cluster or a locality no
// registered cluster matches (model.ParsePattern). Every reconciler ends in the same
// two helpers, setConditions (stamped with the generation) and writeStatus (write only
// if changed). Condition types and reasons are the constants of api/v1alpha1.
//
// A member's records are claims: the MeshCluster's spec.addressRanges and spec.limits go
// into its ClusterInfo for every reader to check against, and PublishedDataValid
// reports what the hub's own View refuses of the cluster (view.Rejections), read on
// every reconcile, which every change of the cluster's keys triggers. A hostname
// belongs to the oldest GlobalService claiming it (claimsFirst); the others get
// HostnameConflict and are kept out of etcd, and a field index on the claimed
// hostname wakes them when the owner goes.
//
// Events go out only for transitions an operator acts on (Connected lost or regained,
// ResolvedRefs going False or back, PublishedDataValid turning False or back,
// HostnameConflict starting or ending), and only after the status holding the
// transition was written, so a repeated reconcile repeats no Event.
//
// The hub's etcd is the only store written here; member clusters are never contacted.
package controllers
