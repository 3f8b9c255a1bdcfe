package xds

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/internal/xdsnames"
)

// builder makes resources: it validates each once, marshals it once, and stamps it
// with the next version. It belongs to Run's loop.
type builder struct {
	version uint64
}

// next is a new version, higher than every earlier one.
func (b *builder) next() uint64 {
	b.version++
	return b.version
}

// make validates and marshals m as a resource at a new version.
func (b *builder) make(m proto.Message) (*resource, error) {
	if err := validate(m); err != nil {
		return nil, fmt.Errorf("%s fails validation: %w", resourceName(m), err)
	}
	r, err := marshal(m, b.next())
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", resourceName(m), err)
	}
	return r, nil
}

func resourceName(m proto.Message) string {
	if n, ok := m.(interface{ GetName() string }); ok && n.GetName() != "" {
		return n.GetName()
	}
	if n, ok := m.(interface{ GetClusterName() string }); ok {
		return n.GetClusterName()
	}
	return "resource"
}

// targetResources are the shared resources of one target, and the accounts its
// cluster's SAN matchers were built from.
type targetResources struct {
	accounts                 []Account
	listener, route, cluster *resource
	gatewayCluster           *resource
	// traffic and live are the TrafficPolicy and live subsets (liveSubsets) the
	// listener, route and clusters were built with; subsets its subsets' clusters.
	traffic *model.TrafficPolicy
	live    []string
	subsets map[string]*resource
}

// sharedResources are the listeners, routes and clusters every group gets, and what
// they were built from, by name, for the next build to reuse (see buildShared).
type sharedResources struct {
	targets                     []Target // Hostname, Port and Accounts are what counts
	servers                     []serverAddr
	byTarget                    map[string]*targetResources
	byServer                    map[string]*resource
	listeners, routes, clusters *resources
	// authz are the server route configurations and what each was built from.
	authz *inboundResources
}

// buildShared makes the resources every group gets: per target a client listener,
// route and cluster, the east-west gateway's listener and clusters, and the server
// listeners of this cluster's endpoints (servers). It reuses from prev (nil for none)
// every resource whose inputs did not change, so that a change of one service's
// accounts serializes that service's cluster only, once for every group. changed are
// the targets whose SAN matchers changed. Each server address gets its route
// configuration (InboundRouteName), with the authorization of the global services it
// serves (authz). A resource that fails validation is left out, with the error.
func (b *builder) buildShared(prev *sharedResources, targets []Target, servers []serverAddr, authz map[serverAddr]inbound, trustDomain string) (sh *sharedResources, changed []Target, errs []error) {
	sh = &sharedResources{targets: targets, servers: servers,
		byTarget: make(map[string]*targetResources, len(targets)), byServer: make(map[string]*resource, len(servers)),
		listeners: &resources{byName: map[string]*resource{}}, routes: &resources{byName: map[string]*resource{}},
		clusters: &resources{byName: map[string]*resource{}}}
	add := func(rs *resources, name string, r *resource, err error) *resource {
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		rs.byName[name] = r
		return r
	}
	for _, a := range servers {
		name := ServerListenerName(a.Address, a.Port)
		r, ok := prev.server(name)
		var err error
		if !ok {
			r, err = b.make(serverListener(a.Address, a.Port, trustDomain != ""))
		}
		if add(sh.listeners, name, r, err) != nil {
			sh.byServer[name] = r
		}
	}
	var e []error
	sh.authz, e = b.serverRoutes(prev, servers, authz, trustDomain, sh.routes)
	errs = append(errs, e...)
	for _, t := range targets {
		name, cluster, sni := ListenerName(t.Hostname, t.Port), ClusterName(t.Hostname, t.Port), xdsnames.SNI(t.Hostname, t.Port)
		r := prev.target(name)
		live := liveSubsets(t)
		sameTraffic := r != nil && sameTrafficPolicy(r.traffic, t.Traffic) && slices.Equal(r.live, live)
		accountsChanged := r != nil && trustDomain != "" && !slices.Equal(r.accounts, t.Accounts)
		if !sameTraffic || accountsChanged {
			next := &targetResources{accounts: t.Accounts, traffic: t.Traffic, live: live}
			var err error
			if accountsChanged {
				changed = append(changed, t)
			}
			if sameTraffic {
				next.listener, next.route, next.gatewayCluster = r.listener, r.route, r.gatewayCluster
			} else {
				if next.listener, err = b.make(targetListener(t)); err != nil {
					errs = append(errs, err)
				}
				if next.route, err = b.make(targetRoute(t, live)); err != nil {
					errs = append(errs, err)
				}
				if next.gatewayCluster, err = b.make(gatewayCluster(t)); err != nil {
					errs = append(errs, err)
				}
			}
			if next.cluster, err = b.make(targetCluster(t, trustDomain, cluster)); err != nil {
				errs = append(errs, err)
			}
			next.subsets, errs = b.subsetClusters(t, trustDomain, errs)
			r = next
		}
		sh.byTarget[name] = r
		for n, c := range r.subsets {
			sh.clusters.byName[n] = c
		}
		for _, x := range []struct {
			rs   *resources
			name string
			r    *resource
		}{{sh.listeners, name, r.listener}, {sh.routes, name, r.route}, {sh.clusters, cluster, r.cluster}, {sh.clusters, sni, r.gatewayCluster}} {
			if x.r != nil {
				x.rs.byName[x.name] = x.r
			}
		}
	}
	// The east-west gateway's resources have names of their own: every proxy asks
	// only for what it uses.
	gw, err := b.make(gatewayListener(targets, xdsnames.GatewayPort))
	add(sh.listeners, xdsnames.GatewayListener, gw, err)
	v := b.next()
	sh.listeners.version, sh.routes.version, sh.clusters.version = v, v, v
	return sh, changed, errs
}

func (sh *sharedResources) target(name string) *targetResources {
	if sh == nil {
		return nil
	}
	return sh.byTarget[name]
}

func (sh *sharedResources) server(name string) (*resource, bool) {
	if sh == nil {
		return nil, false
	}
	r, ok := sh.byServer[name]
	return r, ok
}

// sameShared reports whether the shared resources prev serve targets and servers
// too: the same hostnames and ports (their endpoints may differ), with mTLS the same
// accounts, and the same server addresses.
func sameShared(prev *sharedResources, targets []Target, servers []serverAddr, mtls bool) bool {
	return prev != nil && slices.Equal(prev.servers, servers) &&
		slices.EqualFunc(prev.targets, targets, func(x, y Target) bool {
			return x.Hostname == y.Hostname && x.Port == y.Port && (!mtls || slices.Equal(x.Accounts, y.Accounts)) &&
				sameTrafficPolicy(x.Traffic, y.Traffic) && slices.Equal(liveSubsets(x), liveSubsets(y))
		})
}

// sameTrafficPolicy reports whether a and b make the same resources: equal but for
// their generation (a new generation of the same content serves the same bytes at the
// same version, which proxies that ACKed it have).
func sameTrafficPolicy(a, b *model.TrafficPolicy) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	x.Generation, y.Generation = 0, 0
	return reflect.DeepEqual(x, y)
}

// publish hands the shared resources to the cache.
func (sh *sharedResources) publish(c *cache) {
	c.setShared(resourcev3.ListenerType, sh.listeners)
	c.setShared(resourcev3.RouteType, sh.routes)
	c.setShared(resourcev3.ClusterType, sh.clusters)
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
