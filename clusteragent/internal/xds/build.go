package xds

import (
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
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

// Resources builds, for a group of proxies in cluster self, every resource of the
// targets: the client listeners, routes, clusters and load assignments, and the
// east-west gateway's listener, clusters and load assignments, in target order. It is what the Server serves, without the server: for golden files, the
// debug view and benchmarks.
func Resources(self string, g Group, targets []Target) []types.Resource {
	sh := buildShared(targets, nil, "", v1.DefaultTrustDomain)
	out := append(append(append([]types.Resource{}, sh.listeners...), sh.routes...), sh.clusters...)
	client := Client{Cluster: self, Region: g.Region, Zone: g.Zone}
	for _, t := range targets {
		out = append(out, loadAssignment(t.Hostname, t.Port, Prioritize(client, t)))
	}
	for _, t := range targets {
		out = append(out, gatewayAssignment(self, t))
	}
	return out
}
