package xds

import (
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/policy"
)

// A global service's TrafficPolicy may split a route's calls across subsets of its
// endpoints (policy.SubsetOf decides which endpoint is in which). Each subset a split
// names is a cluster and load assignment of its own (SubsetClusterName), holding the
// subset's endpoints with the priorities and weights the main cluster's would have if
// the subset were the whole service: the same priority table (Table) over the same
// localities, each counting only the subset's endpoints. So a 5% canary in one zone
// stays 5% of the calls wherever the callers are, and fails over across zones,
// regions and clusters within the subset like the rest.
//
// grpc-go picks the cluster of a split once per call and has no fallback between the
// clusters of a split: a subset with no healthy endpoint anywhere is left out of the
// split (the others keep their weights, so their shares grow in proportion), and a
// split none of whose subsets has one sends its calls to the main cluster.

// RestSubset is the part of SubsetClusterName standing for the unnamed subset ""
// (the endpoints in no subset): not a DNS label, so no subset of a policy has it.
const RestSubset = "_rest"

// SubsetClusterName is the cluster (and load assignment) of a subset of a global
// service port, named like Istio's: outbound|<port>|<subset>|<hostname>.
func SubsetClusterName(hostname string, port uint32, subset string) string {
	if subset == "" {
		subset = RestSubset
	}
	return fmt.Sprintf("outbound|%d|%s|%s", port, subset, hostname)
}

// splitSubsets are the subsets some route of tp splits to, sorted ("" included when a
// split names it).
func splitSubsets(tp *model.TrafficPolicy) []string {
	if tp == nil {
		return nil
	}
	var out []string
	for _, r := range tp.Routes {
		for _, w := range r.Split {
			if w.Weight > 0 {
				out = append(out, w.Subset)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// hasSubsets reports whether endpoints of a service under tp need their subset.
func hasSubsets(tp *model.TrafficPolicy) bool {
	return tp != nil && len(tp.Subsets) > 0
}

// subsetOf is the subset of an endpoint of cluster with labels under tp.
func subsetOf(tp *model.TrafficPolicy, cluster string, labels map[string]string) string {
	if !hasSubsets(tp) {
		return ""
	}
	return policy.SubsetOf(tp, cluster, labels)
}

// SubsetTarget is t restricted to the endpoints of subset: every locality counts only
// the subset's endpoints (a locality with none is left out), so that Table gives the
// subset its own priorities by the same rules.
func SubsetTarget(t Target, subset string) Target {
	out := t
	out.Excluded = nil
	out.Localities = make([]Locality, 0, len(t.Localities))
	for _, l := range t.Localities {
		total := l.Totals[subset]
		if total == 0 {
			continue
		}
		sl := l
		sl.Total, sl.Totals = total, nil
		sl.Healthy = nil
		for _, e := range l.Healthy {
			if e.Subset == subset {
				sl.Healthy = append(sl.Healthy, e)
			}
		}
		out.Localities = append(out.Localities, sl)
	}
	return out
}

// liveSubsets are the subsets of t's splits that have a healthy endpoint anywhere
// (reachable: not withheld), sorted.
func liveSubsets(t Target) []string {
	var out []string
	for _, s := range splitSubsets(t.Traffic) {
		if slices.ContainsFunc(t.Localities, func(l Locality) bool {
			return slices.ContainsFunc(l.Healthy, func(e Endpoint) bool { return e.Subset == s })
		}) {
			out = append(out, s)
		}
	}
	return out
}

// liveSplit is split without the subsets not in live, nil if none is left.
func liveSplit(split []model.WeightedSubset, live []string) []model.WeightedSubset {
	var out []model.WeightedSubset
	for _, w := range split {
		if w.Weight > 0 && slices.Contains(live, w.Subset) {
			out = append(out, w)
		}
	}
	return out
}

// targetListener is the client listener of t: with a TrafficPolicy, with the fault
// filter.
func targetListener(t Target) *listenerv3.Listener {
	if t.Traffic == nil {
		return clientListener(t.Hostname, t.Port)
	}
	return clientListener(t.Hostname, t.Port, faultFilter())
}

// targetRoute is the route configuration of t: with a TrafficPolicy, its routes.
func targetRoute(t Target, live []string) *routev3.RouteConfiguration {
	rc := routeConfig(t.Hostname, t.Port)
	if t.Traffic != nil {
		rc.VirtualHosts[0].Routes = policyRoutes(t.Hostname, t.Port, t.Traffic, live)
	}
	return rc
}

// targetCluster is the cluster of t named name (ClusterName: every endpoint, or a
// SubsetClusterName), with the TrafficPolicy's load balancing and outlier detection.
func targetCluster(t Target, trustDomain, name string) *clusterv3.Cluster {
	c := edsCluster(t.Hostname, t.Port, trustDomain, t.Accounts)
	applyTraffic(c, t.Traffic)
	c.Name, c.EdsClusterConfig.ServiceName = name, name
	return c
}

// subsetClusters are the clusters of the subsets t's splits name, by name.
func (b *builder) subsetClusters(t Target, trustDomain string, errs []error) (map[string]*resource, []error) {
	subsets := splitSubsets(t.Traffic)
	if len(subsets) == 0 {
		return nil, errs
	}
	out := make(map[string]*resource, len(subsets))
	for _, s := range subsets {
		name := SubsetClusterName(t.Hostname, t.Port, s)
		c := targetCluster(t, trustDomain, name)
		r, err := b.make(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[name] = r
	}
	return out, errs
}

// subsetAssignments are the load assignments of the subsets t's splits name, for
// client, by name: each from its SubsetTarget's own priority table.
func (b *builder) subsetAssignments(client Client, t Target) (map[string]*resource, []error) {
	subsets := splitSubsets(t.Traffic)
	if len(subsets) == 0 {
		return nil, nil
	}
	out := make(map[string]*resource, len(subsets))
	var errs []error
	for _, s := range subsets {
		st := SubsetTarget(t, s)
		cla := loadAssignment(t.Hostname, t.Port, place(Table(client, st), st))
		cla.ClusterName = SubsetClusterName(t.Hostname, t.Port, s)
		r, err := b.make(cla)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[cla.ClusterName] = r
	}
	return out, errs
}

// setSubsets replaces in g the subsets' load assignments of the target listener
// with subs (nil: none), and returns the names set or removed.
func (g *groupBuilt) setSubsets(listener string, subs map[string]*resource) []string {
	var names []string
	for _, n := range g.subsets[listener] {
		delete(g.cla, n)
		names = append(names, n)
	}
	if len(subs) == 0 {
		delete(g.subsets, listener)
		return names
	}
	if g.subsets == nil {
		g.subsets = map[string][]string{}
	}
	kept := make([]string, 0, len(subs))
	for n, r := range subs {
		g.cla[n] = r
		kept = append(kept, n)
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(kept)
	g.subsets[listener] = kept
	return names
}

// explainSubsets are the tables of t's split subsets for client.
func explainSubsets(client Client, t Target) []SubsetExplanation {
	live := liveSubsets(t)
	var out []SubsetExplanation
	for _, s := range splitSubsets(t.Traffic) {
		out = append(out, SubsetExplanation{Subset: s, Cluster: SubsetClusterName(t.Hostname, t.Port, s),
			Live: slices.Contains(live, s), Text: Table(client, SubsetTarget(t, s)).String()})
	}
	return out
}
