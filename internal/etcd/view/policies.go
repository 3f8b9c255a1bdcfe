package view

import (
	"slices"
	"strings"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

// The hub's TrafficPolicy and AuthorizationPolicy records, for the agents' xDS and
// explanations. A change to one is notified with its own key (keyspace.KindTrafficPolicy
// or KindAuthorizationPolicy, the policy's namespace and name): it may change what
// any global service of that namespace serves, including the one a deleted or
// retargeted policy applied to, so a subscriber marks the namespace dirty.

// setOrDelete stores rec at nn in m, or deletes nn when rec is nil.
func setOrDelete[R any](m map[NamespacedName]*R, nn NamespacedName, rec any) {
	if r, ok := rec.(*R); ok && r != nil {
		m[nn] = r
		return
	}
	delete(m, nn)
}

// TrafficPolicy returns the traffic policy of the global service namespace/name, nil
// if none. When several name the service (the hub marks all but the first
// Conflicted), the first by name applies.
func (v *View) TrafficPolicy(namespace, globalService string) *model.TrafficPolicy {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out *model.TrafficPolicy
	for nn, p := range v.traffic {
		if nn.Namespace == namespace && p.GlobalService == globalService && (out == nil || p.Name < out.Name) {
			out = p
		}
	}
	return out
}

// TrafficPolicies returns every traffic policy, sorted by namespace/name.
func (v *View) TrafficPolicies() []*model.TrafficPolicy {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return sortedValues(v.traffic)
}

// AuthorizationPolicies returns the authorization policies that apply to the global
// service namespace/name: those naming it and the namespace-wide ones of its
// namespace, sorted by name. Package policy decides calls by them.
func (v *View) AuthorizationPolicies(namespace, globalService string) []*model.AuthorizationPolicy {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []*model.AuthorizationPolicy
	for nn, p := range v.authz {
		if nn.Namespace == namespace && (p.GlobalService == "" || p.GlobalService == globalService) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *model.AuthorizationPolicy) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// AllAuthorizationPolicies returns every authorization policy, sorted by namespace/name.
func (v *View) AllAuthorizationPolicies() []*model.AuthorizationPolicy {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return sortedValues(v.authz)
}

// sortedValues returns m's values sorted by key. The caller holds v.mu.
func sortedValues[R any](m map[NamespacedName]*R) []*R {
	keys := make([]NamespacedName, 0, len(m))
	for nn := range m {
		keys = append(keys, nn)
	}
	slices.SortFunc(keys, compareNN)
	out := make([]*R, 0, len(keys))
	for _, nn := range keys {
		out = append(out, m[nn])
	}
	return out
}

// ClusterProgrammed is one registered cluster's report on one policy.
type ClusterProgrammed struct {
	Cluster string
	// Connected: the cluster holds a live heartbeat (its report is current).
	Connected bool
	model.PolicyProgrammed
}

// Programmed returns what each registered cluster reports of the policy of kind
// (model.PolicyKindTraffic or PolicyKindAuthorization) namespace/name, sorted by
// cluster. Readers look reports up by policy, so a ref to a policy that does not
// exist is never read, and a cluster that is not registered (no info) is not heard.
// Each report was checked on decode: its size against the cluster's limits, its
// bounds, and that it is the cluster's own.
func (v *View) Programmed(kind, namespace, name string) []ClusterProgrammed {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []ClusterProgrammed
	for cname, c := range v.clusters {
		if c.Info == nil || c.Programmed == nil {
			continue
		}
		ps := c.Programmed.Policies
		i, found := slices.BinarySearchFunc(ps, model.PolicyRef{Kind: kind, Namespace: namespace, Name: name}, func(p model.PolicyProgrammed, r model.PolicyRef) int {
			r.Generation = p.Ref.Generation // any generation: a report lists a policy once
			return model.ComparePolicyRefs(p.Ref, r)
		})
		if found {
			out = append(out, ClusterProgrammed{Cluster: cname, Connected: c.Connected(), PolicyProgrammed: ps[i]})
		}
	}
	slices.SortFunc(out, func(a, b ClusterProgrammed) int { return strings.Compare(a.Cluster, b.Cluster) })
	return out
}

// ProgrammedReport is cluster's programmed report as written (nil if none): which
// policies it lists, without copying the cluster.
func (v *View) ProgrammedReport(cluster string) *model.Programmed {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if c := v.clusters[cluster]; c != nil {
		return c.Programmed
	}
	return nil
}
