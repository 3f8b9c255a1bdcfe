// Package locality decides the priority table a client of a global service gets: which
// localities (zones of member clusters) it may send requests to, in which order it fails
// over between them, and with which weights it balances inside one priority. The xDS
// server turns a Table into an EDS ClusterLoadAssignment (one LocalityLbEndpoints per
// Entry, priority and load_balancing_weight as given); `meshfedctl failover explain`
// prints it with Table.String. The xds package (xds.Table) refines the reason of a
// locality it withheld and adds to Excluded the member clusters that had no candidate
// at all; Prioritize itself only ever excludes its input. docs/failover.md explains
// the rules to operators.
//
// Prioritize is the whole package: a pure function of the client's locality, the
// service's candidate localities with their endpoint counts and cluster state, and the
// FailoverPolicy (nil for the defaults). It does no I/O and reads no clock: the caller
// judges freshness (Fresh, Stale after demoteAfter, Dropped after dropAfter) and health
// (readiness, gateway probes, failback hold) and hands over counts.
//
// # Invariants
//
// Every Table that Prioritize returns satisfies, whatever the input:
//
//   - Priorities are numbered contiguously from 0 and none is empty, as grpc-go
//     requires; an Entry's priority is its index in Table.Priorities.
//   - Every Weight is at least 1 (grpc-go drops a locality with weight 0), and the
//     weights of one priority sum to at most 2^32-1 (Envoy's limit).
//   - Every Entry has at least one healthy endpoint and says in Reason why it is there.
//   - Each input locality appears exactly once: in one priority, or in Excluded with
//     the reason it got no traffic. Candidates that name the same Locality are merged
//     first (counts summed, the worse cluster state kept).
//   - A stale cluster's localities are never in a priority with, or before, a fresh
//     locality: demoted means lowest.
//   - Output is deterministic: entries within a tier are ordered by cluster, zone,
//     region and network, so equal inputs in any order give equal Tables.
//
// Prioritize never modifies its arguments. A Table shares no memory with them except
// Table.Failover and Table.Distribute, which point into the policy (model records are
// never mutated after they are stored, see package view).
package locality
