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

// ProgrammedPolicies is cluster's report on what its proxies did with each policy
// generation, admitted: entries naming a policy the view does not hold are dropped
// (a member cannot make the hub show results for policies that do not exist), and
// nil without a report. The report's record itself was checked on decode (its
// size against the cluster's limits, its bounds, and that it is the cluster's own).
func (v *View) ProgrammedPolicies(cluster string) []model.PolicyProgrammed {
	v.mu.RLock()
	defer v.mu.RUnlock()
	c := v.clusters[cluster]
	if c == nil || c.Programmed == nil {
		return nil
	}
	out := make([]model.PolicyProgrammed, 0, len(c.Programmed.Policies))
	for _, e := range c.Programmed.Policies {
		nn := NamespacedName{e.Ref.Namespace, e.Ref.Name}
		known := false
		switch e.Ref.Kind {
		case model.PolicyKindTraffic:
			_, known = v.traffic[nn]
		case model.PolicyKindAuthorization:
			_, known = v.authz[nn]
		}
		if known {
			out = append(out, e)
		}
	}
	return out
}
