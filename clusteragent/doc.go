// Package clusteragent is meshfed's agent in a member cluster. It publishes the
// cluster's exported services to the hub's etcd and imports the whole federation into
// an in-memory view that the cluster's xDS server serves from.
//
// Run starts, in one process:
//   - the import side, in every replica: a restartable list+watch of the hub's keyspace
//     into a view.View (package internal/etcd/view), kept across hub outages, so a replica
//     always serves its last known view;
//   - the sync side, in the elected leader only (a Lease in the agent's namespace): the
//     publisher (clusteragent/internal/publish), which writes this cluster's exported
//     services under its own etcd prefix and the synced marker after its first full
//     pass, and the heartbeat, a record bound to an etcd lease that the hub and the
//     other agents read as this cluster's liveness;
//   - an HTTP server with /healthz, /readyz (the view is synced), /metrics and
//     /debug/view (the imported view as JSON).
//
// The agent authenticates to etcd with the client certificate in its credentials
// Secret (package agentcreds); etcd lets it write only under its own cluster's prefix.
package clusteragent
