// Package federation is the hub: it stores the federation's global state in etcd and
// keeps it equal to the MeshCluster, GlobalService and FailoverPolicy objects on the
// hub's API server.
//
// Run starts, in one process: the hub's etcd (embedded, with its data on disk, unless
// external endpoints are given), etcd authentication with one user per member cluster,
// the reconcilers (package federation/internal/controllers), the signer of the agents'
// etcd client certificates (federation/internal/signer), and a reader of what the
// agents publish, from which the hub writes status (conditions, and Events on the
// transitions an operator cares about).
//
// The hub registers only its own metrics (RegisterMetrics), in controller-runtime's
// registry, which its manager serves on MetricsAddr.
//
// The hub never contacts member clusters: agents come to it, through etcd. If the hub
// is down, agents keep serving their last view; nothing in a member cluster depends on
// the hub answering.
package federation
