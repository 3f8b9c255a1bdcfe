// Package etcdcluster runs a real N-member etcd cluster on 127.0.0.1 from the cached
// etcd binary (localkube.Assets), for the HA hub's tests and sandbox.
//
// Invariants:
//   - Every member speaks TLS to clients and to peers with certificates from one CA of
//     its own (package pki), and requires client certificates on both: the cluster is
//     configured as a production one would be, so the hub's and agents' mTLS and etcd
//     auth are exercised exactly as in production.
//   - Every process runs under package proc: nothing outlives the process that started
//     the cluster, and Stop ends them all.
//   - A killed member keeps its data directory; Restart brings the same member back
//     with the same name, ports and data, as a rescheduled pod with its volume would.
//   - Members run with --unsafe-no-fsync: a killed process loses nothing the kernel
//     already has, and only a machine crash would need the fsync. Tests kill processes,
//     never machines.
//
// Dev tooling: product code never imports it.
package etcdcluster
