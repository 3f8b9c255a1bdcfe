// Package xds is the agent's xDS server: it turns the agent's view of the federation
// into Envoy xDS resources (state-of-the-world ADS, v3) for the proxies of its cluster,
// proxyless gRPC clients and servers and Envoy sidecars alike.
//
// For every port of every global service it serves a client Listener (an API listener
// named <hostname>:<port>, so that xds:///<hostname>:<port> works), a
// RouteConfiguration of the same name, an EDS Cluster and a ClusterLoadAssignment
// named outbound|<port>||<hostname>, whose localities carry the priorities and weights
// that package locality computes for the proxy's own locality. For every endpoint of
// this cluster it also serves the Listener a proxyless gRPC server on that address asks
// for, with its RouteConfiguration inbound|<port>||<ip> carrying the
// AuthorizationPolicies of the global services served there as RBAC overrides
// (authz.go: a policy change updates the route configuration, never the Listener, so
// no connection drains), and this cluster's east-west gateway gets its SNI listener,
// clusters and load assignments.
//
// A global service with a TrafficPolicy gets its routes, retries, timeouts, faults,
// load balancing and outlier detection in those resources (policyroutes.go), and a
// Cluster and load assignment outbound|<port>|<subset>|<hostname> per subset its
// splits name, each prioritized like the main one over the subset's endpoints alone
// (subsets.go; policy.SubsetOf decides an endpoint's subset).
//
// The path from view to proxy is: Targets (the view's global service ports with their
// localities and the member clusters that serve them nothing, pure), the failback hold
// (localities that recovered too recently are withheld), then per group of proxies
// Table (package locality's priority table, with every exclusion explained) and the
// load assignment made from it. Explain runs the same Table on the targets of the last
// rebuild, so what it prints is what was served. The server runs this path
// incrementally (rebuild.go): a change recomputes the global services its view key can
// affect, and of those only the changed cluster's share (globalTargetsFrom, the same
// function Targets uses), and builds the load assignments of the targets whose served
// form changed. The golden files pin what the server serves.
//
// Invariants:
//   - Proxies are grouped by locality: each group shares one snapshot, so cost grows
//     with localities, not with proxies. The server, not the proxy, decides the
//     locality: this cluster's region, and the claimed zone only if the cluster
//     declares it, else the default group (zone ""). So groups are bounded by the
//     cluster's declared zones plus one, whatever proxies claim. The decision is
//     written into every request's node before the cache's (pure) node hash reads it.
//   - A group lives while it has streams: when its last stream closes, its load
//     assignments are dropped. Only state-of-the-world streams are served (delta streams and unary
//     fetches are refused: they would bypass the stream callbacks).
//   - With Options.TLS the port serves only clients the TLS configuration accepts;
//     refused handshakes are counted, and a refused client never reaches a callback.
//   - Every resource is validated (the generated ValidateAll rules) and serialized
//     once, when it is built, into bytes every stream's response shares (cache.go,
//     assignment.go, codec.go): a proxy never gets a resource that fails validation,
//     and fan-out costs a write per stream, not a serialization. A stream is answered
//     only when a resource it subscribes to changed; a NACK waits for the next version.
//   - A heartbeat that changes no cluster's freshness state (fresh, stale, dropped)
//     rebuilds nothing: freshness transitions are found by the loop (on a heartbeat,
//     and every Options.Refresh for lapses), not by rebuilding on every heartbeat.
//   - Versions move per resource: an endpoint change pushes the load assignments of
//     its service, not listeners, routes or clusters, and only to the streams that
//     subscribe to them. A change that only alters an explanation (a reason) pushes
//     nothing.
//   - Every member cluster of a global service either has localities in a port's
//     table or is listed as excluded from it with a reason.
//   - Building is pure (Targets, Table, Prioritize); only Server does I/O, and which of
//     its goroutines owns which field is written on Server.
//   - The package registers no metrics at init: the component running the server calls
//     RegisterMetrics on its registry.
package xds
