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
// for.
//
// Invariants:
//   - Proxies are grouped by locality (region and zone from their node): each group
//     shares one snapshot, so cost grows with localities, not with proxies.
//   - A snapshot is built whole, checked with Consistent and ValidateAll, and only then
//     set: a proxy never gets a resource that fails validation, or a route to a cluster
//     it cannot resolve.
//   - Versions move per resource type: an endpoint change pushes load assignments, not
//     listeners, routes or clusters.
//   - Building is pure (Targets, Build); only Server does I/O.
package xds
