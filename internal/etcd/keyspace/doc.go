// Package keyspace is the one place that builds and parses meshfed's etcd keys.
//
// The key layout is a versioned API: hubs and agents of different releases read
// each other's keys, and etcd RBAC roles are written against these prefixes. The
// layout lives under the root "/meshfed/v1/" and is documented in docs/keyspace.md.
// A golden test pins every key string; changing the layout means a new version
// root ("/meshfed/v2/"), never an edit in place.
//
//	/meshfed/v1/clusters/<cluster>/info                    registration (hub)
//	/meshfed/v1/clusters/<cluster>/heartbeat               liveness, lease-bound (agent)
//	/meshfed/v1/clusters/<cluster>/services/<ns>/<name>    endpoints (agent)
//	/meshfed/v1/clusters/<cluster>/synced                  initial publish done (agent)
//	/meshfed/v1/clusters/<cluster>/intermediate-csr        intermediate CA request (agent)
//	/meshfed/v1/clusters/<cluster>/intermediate            signed intermediate (hub)
//	/meshfed/v1/global/services/<ns>/<name>                GlobalService (hub)
//	/meshfed/v1/global/policies/<ns>/<name>                FailoverPolicy (hub)
//	/meshfed/v1/global/traffic/<ns>/<name>                 TrafficPolicy (hub)
//	/meshfed/v1/global/authz/<ns>/<name>                   AuthorizationPolicy (hub)
//	/meshfed/v1/trust/bundle                               trust bundle (hub)
//	/meshfed/v1/hub/ready                                  every hub record written (hub)
//
// # Invariants
//
//   - Every key or prefix meshfed reads or writes comes from this package; no
//     other package concatenates key strings.
//   - Builders never produce an ambiguous key. Each path segment is validated:
//     a cluster name and a namespace are DNS-1123 labels, an object name is a
//     DNS-1123 subdomain (the same rules the Kubernetes API server applies to
//     those names), so a segment is never empty and never contains '/'.
//   - Prefixes end in '/', so the prefix of cluster "a" never matches keys of
//     cluster "ab".
//   - Parse(Build(x)) == x for every valid x, and Parse rejects everything else
//     (foreign keys, other versions, malformed segments, trailing parts) with an
//     error that wraps ErrUnknownKey.
//
// # Invalid input
//
// Builders panic on an invalid segment: the names they take come from objects the
// Kubernetes API server has already validated, or from input the caller has
// checked with ValidateCluster, ValidateNamespace or ValidateName at its edge
// (flags, CSRs, the CLI). An invalid name reaching a builder is a programmer
// error, and a panic is safer than writing a key another component would
// misread. Parse never panics; it is safe on any input, including keys written
// by someone else.
//
// The package is pure: no I/O, no clocks, no globals that change. Any goroutine
// may call it.
package keyspace
