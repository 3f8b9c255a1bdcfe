package xds

import (
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/meshfed/meshfed/internal/etcd/view"
)

// buildShared makes the resources every group gets: per target a client listener,
// route and cluster, and the server listeners of this cluster's endpoints.
func buildShared(targets []Target, serverListeners []types.Resource, version, trustDomain string) *sharedResources {
	sh := &sharedResources{version: version, listeners: slices.Clone(serverListeners)}
	for _, t := range targets {
		sh.listeners = append(sh.listeners, clientListener(t.Hostname, t.Port))
		sh.routes = append(sh.routes, routeConfig(t.Hostname, t.Port))
		sh.clusters = append(sh.clusters, edsCluster(t.Hostname, t.Port, trustDomain))
	}
	// The east-west gateway's resources have names of their own: every proxy asks
	// only for what it uses.
	gwListener, gwClusters := gatewayResources(targets)
	sh.listeners = append(sh.listeners, gwListener)
	sh.clusters = append(sh.clusters, gwClusters...)
	return sh
}

// sameServices reports whether two target lists name the same hostnames and ports
// (their endpoints may differ): then listeners, routes and clusters stay as they are.
func sameServices(a, b []Target) bool {
	return slices.EqualFunc(a, b, func(x, y Target) bool { return x.Hostname == y.Hostname && x.Port == y.Port })
}

// serverListenersOf returns one listener per distinct address:port of the cluster's
// published endpoints.
func serverListenersOf(c view.Cluster) []types.Resource {
	seen := map[string]bool{}
	var out []types.Resource
	var names []string
	byName := map[string]types.Resource{}
	for _, s := range c.Services {
		for _, e := range s.Endpoints {
			for _, p := range e.Ports {
				name := ServerListenerName(e.Address, uint32(p.Port))
				if seen[name] {
					continue
				}
				seen[name] = true
				names = append(names, name)
				byName[name] = serverListener(e.Address, uint32(p.Port))
			}
		}
	}
	slices.SortFunc(names, strings.Compare)
	for _, n := range names {
		out = append(out, byName[n])
	}
	return out
}
