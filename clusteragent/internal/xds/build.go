package xds

import (
	"cmp"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/meshfed/meshfed/internal/etcd/view"
)

// targetResources are the shared resources of one target, and the accounts its
// cluster's SAN matchers were built from.
type targetResources struct {
	accounts                 []Account
	listener, route, cluster types.Resource
}

// buildShared makes the resources every group gets: per target a client listener,
// route and cluster, and the server listeners of this cluster's endpoints (servers).
// It reuses from prev (nil for none) every resource whose inputs did not change, so
// that a change of one service's accounts serializes that service's SAN matchers
// only, once for every group. changed are the targets, reused from prev, whose SAN
// matchers changed.
func buildShared(prev *sharedResources, targets []Target, servers []serverAddr, version, trustDomain string) (sh *sharedResources, changed []Target) {
	sh = &sharedResources{version: version, servers: servers,
		byTarget: make(map[string]*targetResources, len(targets)), byServer: make(map[string]types.Resource, len(servers))}
	for _, a := range servers {
		name := ServerListenerName(a.Address, a.Port)
		r, ok := prev.server(name)
		if !ok {
			r = serverListener(a.Address, a.Port, trustDomain != "")
		}
		sh.byServer[name] = r
		sh.listeners = append(sh.listeners, r)
	}
	for _, t := range targets {
		name := ListenerName(t.Hostname, t.Port)
		r := prev.target(name)
		switch {
		case r == nil:
			r = &targetResources{accounts: t.Accounts, listener: clientListener(t.Hostname, t.Port),
				route: routeConfig(t.Hostname, t.Port), cluster: edsCluster(t.Hostname, t.Port, trustDomain, t.Accounts)}
		case trustDomain != "" && !slices.Equal(r.accounts, t.Accounts):
			changed = append(changed, t)
			r = &targetResources{accounts: t.Accounts, listener: r.listener, route: r.route,
				cluster: edsCluster(t.Hostname, t.Port, trustDomain, t.Accounts)}
		}
		sh.byTarget[name] = r
		sh.listeners = append(sh.listeners, r.listener)
		sh.routes = append(sh.routes, r.route)
		sh.clusters = append(sh.clusters, r.cluster)
	}
	// The east-west gateway's resources have names of their own: every proxy asks
	// only for what it uses.
	gwListener, gwClusters := gatewayResources(targets)
	sh.listeners = append(sh.listeners, gwListener)
	sh.clusters = append(sh.clusters, gwClusters...)
	return sh, changed
}

func (sh *sharedResources) target(name string) *targetResources {
	if sh == nil {
		return nil
	}
	return sh.byTarget[name]
}

func (sh *sharedResources) server(name string) (types.Resource, bool) {
	if sh == nil {
		return nil, false
	}
	r, ok := sh.byServer[name]
	return r, ok
}

// sameShared reports whether the shared resources built for prevTargets and
// prevServers serve targets and servers too: the same hostnames and ports (their
// endpoints may differ), with mTLS the same accounts, and the same server addresses.
func sameShared(prev *sharedResources, prevTargets, targets []Target, servers []serverAddr, mtls bool) bool {
	return prev != nil && slices.Equal(prev.servers, servers) &&
		slices.EqualFunc(prevTargets, targets, func(x, y Target) bool {
			return x.Hostname == y.Hostname && x.Port == y.Port && (!mtls || slices.Equal(x.Accounts, y.Accounts))
		})
}

// serverAddr is an address:port a proxyless gRPC server of this cluster listens on.
type serverAddr struct {
	Address string
	Port    uint32
}

// serverAddrsOf returns every distinct address:port of the cluster's published
// endpoints, sorted: each gets a server listener.
func serverAddrsOf(c view.Cluster) []serverAddr {
	var out []serverAddr
	for _, s := range c.Services {
		for _, e := range s.Endpoints {
			for _, p := range e.Ports {
				out = append(out, serverAddr{Address: e.Address, Port: uint32(p.Port)})
			}
		}
	}
	slices.SortFunc(out, func(a, b serverAddr) int {
		return cmp.Or(strings.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
	})
	return slices.Compact(out)
}
