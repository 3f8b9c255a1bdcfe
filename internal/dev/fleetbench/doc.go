// Package fleetbench is meshfed's fleet benchmark (make bench-fleet, meshfedctl dev
// bench-fleet): it simulates a fleet of member clusters writing their records through a
// real etcd of the hub's kind (embedetcd, client mTLS), runs one real `meshfed agent`
// process against a local kube-apiserver, opens real ADS streams to it, and prints one
// table of what it measured beside the budgets of issue 11 (Budgets).
//
// The simulated clusters write what the hub and their agents would write: each
// cluster's ClusterInfo (with zones and address ranges, so that admission accepts its
// endpoints), a GlobalService per service, a ServiceEndpoints record per cluster and
// service, and a heartbeat bound to a lease, rewritten every HeartbeatInterval. Churn
// flips the readiness of one endpoint per change. A change's latency runs from the
// etcd write that carries it to each ADS stream's receipt of the load assignment that
// shows it (tracked per endpoint address).
//
// The publisher side (EndpointSlice → etcd) is not in this benchmark: the propagation
// benchmark across two real clusters (make bench, e2e BenchmarkPropagation) measures it.
package fleetbench
