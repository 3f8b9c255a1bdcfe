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
// Several replicas may run with Options.LeaderElection, over an external etcd cluster
// only (the embedded etcd would give each replica an etcd and a CA of its own: Run
// refuses it). Then only the holder of the Lease LeaderElectionID writes: the
// reconcilers, the collector, the signer, the mesh CA and the hub ConfigMap run on the
// leader alone. Every replica reads etcd into its view, so a standby takes over with a
// synced one; /readyz is ready once the view has synced, leader or not.
//
// The hub registers only its own metrics (RegisterMetrics), in controller-runtime's
// registry, which its manager serves on MetricsAddr.
//
// The hub never contacts member clusters: agents come to it, through etcd. If the hub
// is down, agents keep serving their last view; nothing in a member cluster depends on
// the hub answering.
package federation
