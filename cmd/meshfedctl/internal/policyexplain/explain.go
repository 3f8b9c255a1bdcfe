package policyexplain

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/clusteragent"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/policy"
)

// Request is the call to explain.
type Request struct {
	From policy.Identity
	// Namespace and Service name the global service called.
	Namespace, Service string
	// Method is the full gRPC method, "/pkg.Service/Method"; "": a method that no
	// rule and no route names.
	Method string
	// Headers are the call's metadata, lower-case keys.
	Headers map[string][]string
}

// Hub holds the hub's policy objects, for their conditions.
type Hub struct {
	TrafficPolicies       []v1.TrafficPolicy
	AuthorizationPolicies []v1.AuthorizationPolicy
}

// Result is the explanation of one call.
type Result struct {
	// Caller is <cluster>/<namespace>/<service account>; Service <namespace>/<name>.
	Caller  string              `json:"caller"`
	Service string              `json:"service"`
	Method  string              `json:"method,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
	// View is the agent whose records the explanation is computed from.
	View          ViewSource    `json:"view"`
	Authorization Authorization `json:"authorization"`
	Routing       Routing       `json:"routing"`
	// Policies are the hub's policy objects that apply to the service, with their
	// conditions; empty without the hub's objects.
	Policies []PolicyStatus `json:"policies,omitempty"`
	// Warnings say why proxies may not do what is explained, yet.
	Warnings []string `json:"warnings,omitempty"`
}

// ViewSource is the agent view the explanation comes from (clusteragent.DebugView).
type ViewSource struct {
	Cluster      string `json:"cluster"`
	Source       string `json:"source"`
	HubReachable bool   `json:"hubReachable"`
}

// Authorization is policy.Decide's answer.
type Authorization struct {
	Allowed bool `json:"allowed"`
	// DecidedBy names the rule ("Allow shop/frontend-only rules[0]", "Deny
	// shop/no-staging rules[1]"), the namespace default ("namespace default Deny"), or
	// the Allow policies none of whose rules matched.
	DecidedBy string `json:"decidedBy"`
	// Policies are the AuthorizationPolicies that apply (namespace/name), in the
	// order Decide reads them.
	Policies         []string `json:"policies"`
	NamespaceDefault string   `json:"namespaceDefault"`
}

// Routing is policy.Route's answer, with the service's load balancing and where its
// endpoints are.
type Routing struct {
	// TrafficPolicy is the service's (namespace/name); "": none.
	TrafficPolicy string `json:"trafficPolicy,omitempty"`
	// Route is the route that applies; "": none does, the service's defaults.
	Route            string                  `json:"route,omitempty"`
	Timeout          metav1.Duration         `json:"timeout,omitzero"`
	Retries          *model.Retries          `json:"retries,omitempty"`
	Fault            *model.Fault            `json:"fault,omitempty"`
	LoadBalancer     model.LoadBalancer      `json:"loadBalancer"`
	OutlierDetection *model.OutlierDetection `json:"outlierDetection,omitempty"`
	// Split is the route's split, with the endpoints each subset holds now; empty:
	// calls go to any endpoint (Endpoints).
	Split []SubsetShare `json:"split,omitempty"`
	// Endpoints are every endpoint of the service, by cluster.
	Endpoints []ClusterEndpoints `json:"endpoints"`
}

// SubsetShare is one subset of a split: its weight and its endpoints now.
type SubsetShare struct {
	// Subset is the subset's name; "" the endpoints in no subset.
	Subset string `json:"subset"`
	// Weight is the percentage of the route's calls.
	Weight    int32              `json:"weight"`
	Endpoints []ClusterEndpoints `json:"endpoints"`
}

// ClusterEndpoints counts a cluster's endpoints.
type ClusterEndpoints struct {
	Cluster string `json:"cluster"`
	Ready   int    `json:"ready"`
	Total   int    `json:"total"`
}

// PolicyStatus is a hub policy object and its conditions.
type PolicyStatus struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Served: the agent's view holds the policy's record.
	Served             bool  `json:"served"`
	Generation         int64 `json:"generation"`
	ObservedGeneration int64 `json:"observedGeneration"`
	// Accepted, ResolvedRefs and Programmed are each condition's status and reason
	// ("True", "False Conflicted", "Unknown NotReported"); "Unknown" without one.
	Accepted     string `json:"accepted"`
	ResolvedRefs string `json:"resolvedRefs"`
	Programmed   string `json:"programmed"`
	// Message is the first condition's message that is not True.
	Message string `json:"message,omitempty"`
}

// call is a method of a call: one method, no wildcard (model's method patterns
// without "/*").
var call = regexp.MustCompile(`^/[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*/[A-Za-z_][A-Za-z0-9_]*$`)

// ParseFrom reads --from, <cluster>/<namespace>/<service account>.
func ParseFrom(s string) (policy.Identity, error) {
	p := strings.Split(s, "/")
	if len(p) != 3 || p[0] == "" || p[1] == "" || p[2] == "" {
		return policy.Identity{}, fmt.Errorf("--from %q: use <cluster>/<namespace>/<serviceaccount>, e.g. alpha/shop/frontend", s)
	}
	for i, what := range []string{"cluster", "namespace"} {
		if errs := validation.IsDNS1123Label(p[i]); len(errs) > 0 {
			return policy.Identity{}, fmt.Errorf("--from %q: %s %q: %s", s, what, p[i], errs[0])
		}
	}
	if errs := validation.IsDNS1123Subdomain(p[2]); len(errs) > 0 {
		return policy.Identity{}, fmt.Errorf("--from %q: service account %q: %s", s, p[2], errs[0])
	}
	return policy.Identity{Cluster: p[0], Namespace: p[1], ServiceAccount: p[2]}, nil
}

// ParseTo reads --to, <namespace>/<global service>.
func ParseTo(s string) (namespace, name string, err error) {
	namespace, name, ok := strings.Cut(s, "/")
	if !ok || namespace == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("--to %q: use <namespace>/<global service>, e.g. shop/cart", s)
	}
	return namespace, name, nil
}

// ParseMethod checks --method: "" or one full gRPC method name.
func ParseMethod(s string) (string, error) {
	if s != "" && !call.MatchString(s) {
		return "", fmt.Errorf("--method %q: use the full gRPC method name /<package>.<Service>/<Method>, e.g. /shop.Cart/Get", s)
	}
	return s, nil
}

// ParseHeaders reads --header name=value flags into metadata: lower-case keys, a key
// given several times has several values.
func ParseHeaders(in []string) (map[string][]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := map[string][]string{}
	for _, h := range in {
		name, value, ok := strings.Cut(h, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || name == "" || strings.ContainsAny(name, " \t:") {
			return nil, fmt.Errorf("--header %q: use name=value (gRPC metadata, e.g. x-tenant=acme)", h)
		}
		out[name] = append(out[name], value)
	}
	return out, nil
}

// Explain explains req with the records of an agent's view, and the conditions of
// hub's objects (nil: not shown). A global service the view does not hold is an error.
func Explain(view *clusteragent.DebugView, hub *Hub, req Request) (*Result, error) {
	gs := findService(view.GlobalServices, req.Namespace, req.Service)
	if gs == nil {
		var known []string
		for _, g := range view.GlobalServices {
			if g.Namespace == req.Namespace {
				known = append(known, g.Name)
			}
		}
		have := "none"
		if len(known) > 0 {
			have = strings.Join(known, ", ")
		}
		return nil, fmt.Errorf("--to %s/%s: cluster %s's agent serves no such global service (global services of namespace %s: %s)",
			req.Namespace, req.Service, view.Cluster, req.Namespace, have)
	}
	r := &Result{
		Caller: req.From.String(), Service: gs.String(), Method: req.Method, Headers: req.Headers,
		View: ViewSource{Cluster: view.Cluster, Source: view.Source, HubReachable: view.HubReachable},
	}

	authz := authorizationPolicies(view.AuthorizationPolicies, gs)
	r.Authorization.NamespaceDefault = policy.NamespaceDefault(authz)
	r.Authorization.Allowed, r.Authorization.DecidedBy = policy.Decide(authz, r.Authorization.NamespaceDefault, req.From, req.Method)
	r.Authorization.Policies = []string{}
	for _, p := range authz {
		r.Authorization.Policies = append(r.Authorization.Policies, p.Namespace+"/"+p.Name)
	}

	tp := trafficPolicy(view.TrafficPolicies, gs)
	m := policy.Route(tp, req.Method, req.Headers)
	r.Routing = Routing{Route: m.Route, Timeout: metav1.Duration{Duration: m.Timeout}, Retries: m.Retries, Fault: m.Fault,
		LoadBalancer: model.LoadBalancer{Policy: string(v1.DefaultLoadBalancerPolicy)}}
	if tp != nil {
		r.Routing.TrafficPolicy = tp.Namespace + "/" + tp.Name
		r.Routing.LoadBalancer, r.Routing.OutlierDetection = tp.LoadBalancer, tp.OutlierDetection
	}
	bySubset := endpoints(view, gs, tp)
	r.Routing.Endpoints = merge(bySubset)
	for _, w := range m.Split {
		r.Routing.Split = append(r.Routing.Split, SubsetShare{Subset: w.Subset, Weight: w.Weight, Endpoints: orEmpty(bySubset[w.Subset])})
	}

	if view.Source != "live" || !view.HubReachable {
		r.Warnings = append(r.Warnings, fmt.Sprintf("cluster %s's agent serves a %s view and reaches the hub's etcd: %v; "+
			"a change on the hub may not be in it", view.Cluster, view.Source, view.HubReachable))
	}
	if view.Cluster != req.From.Cluster {
		r.Warnings = append(r.Warnings, fmt.Sprintf("computed from cluster %s's view; the caller's cluster is %s", view.Cluster, req.From.Cluster))
	}
	if hub == nil {
		r.Warnings = append(r.Warnings, "the hub's objects were not read: their conditions are not shown (give --hub-kubeconfig)")
		return r, nil
	}
	r.statuses(hub, gs, tp, authz)
	return r, nil
}

func findService(all []model.GlobalService, namespace, name string) *model.GlobalService {
	for i := range all {
		if all[i].Namespace == namespace && all[i].Name == name {
			return &all[i]
		}
	}
	return nil
}

// trafficPolicy is gs's TrafficPolicy among all, as view.TrafficPolicy chooses it:
// the first by name of those naming gs (the hub serves only that one).
func trafficPolicy(all []*model.TrafficPolicy, gs *model.GlobalService) *model.TrafficPolicy {
	var out *model.TrafficPolicy
	for _, p := range all {
		if p.Namespace == gs.Namespace && p.GlobalService == gs.Name && (out == nil || p.Name < out.Name) {
			out = p
		}
	}
	return out
}

// authorizationPolicies are those of all that apply to gs, as
// view.AuthorizationPolicies returns them: naming it or namespace-wide, by name.
func authorizationPolicies(all []*model.AuthorizationPolicy, gs *model.GlobalService) []*model.AuthorizationPolicy {
	var out []*model.AuthorizationPolicy
	for _, p := range all {
		if p.Namespace == gs.Namespace && (p.GlobalService == "" || p.GlobalService == gs.Name) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *model.AuthorizationPolicy) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// endpoints counts gs's endpoints in the view by subset (policy.SubsetOf) and
// cluster, clusters sorted by name.
func endpoints(view *clusteragent.DebugView, gs *model.GlobalService, tp *model.TrafficPolicy) map[string][]ClusterEndpoints {
	out := map[string][]ClusterEndpoints{}
	for _, c := range view.Clusters {
		counts := map[string]*ClusterEndpoints{}
		for _, s := range c.Services {
			if !model.Selects(gs, c.Name, s.Namespace, s.Name, s.Labels) {
				continue
			}
			for _, e := range s.Endpoints {
				name := policy.SubsetOf(tp, c.Name, e.Labels)
				if counts[name] == nil {
					counts[name] = &ClusterEndpoints{Cluster: c.Name}
				}
				counts[name].Total++
				if e.Ready {
					counts[name].Ready++
				}
			}
		}
		for name, n := range counts {
			out[name] = append(out[name], *n)
		}
	}
	for _, list := range out {
		slices.SortFunc(list, func(a, b ClusterEndpoints) int { return strings.Compare(a.Cluster, b.Cluster) })
	}
	return out
}

// merge adds up the clusters' counts over every subset.
func merge(bySubset map[string][]ClusterEndpoints) []ClusterEndpoints {
	total := map[string]*ClusterEndpoints{}
	for _, list := range bySubset {
		for _, c := range list {
			if total[c.Cluster] == nil {
				total[c.Cluster] = &ClusterEndpoints{Cluster: c.Cluster}
			}
			total[c.Cluster].Ready += c.Ready
			total[c.Cluster].Total += c.Total
		}
	}
	out := []ClusterEndpoints{}
	for _, name := range slices.Sorted(maps.Keys(total)) {
		out = append(out, *total[name])
	}
	return out
}

func orEmpty(l []ClusterEndpoints) []ClusterEndpoints {
	if l == nil {
		return []ClusterEndpoints{}
	}
	return l
}

// statuses lists the hub's objects that apply to gs, with their conditions, and
// warns about each that is not what the view serves.
func (r *Result) statuses(hub *Hub, gs *model.GlobalService, tp *model.TrafficPolicy, authz []*model.AuthorizationPolicy) {
	servedAuthz := map[string]bool{}
	for _, p := range authz {
		servedAuthz[p.Name] = true
	}
	for i := range hub.TrafficPolicies {
		o := &hub.TrafficPolicies[i]
		if o.Namespace == gs.Namespace && string(o.Spec.GlobalService) == gs.Name {
			r.addStatus("TrafficPolicy", o, o.Status, tp != nil && tp.Name == o.Name)
		}
	}
	for i := range hub.AuthorizationPolicies {
		o := &hub.AuthorizationPolicies[i]
		if o.Namespace == gs.Namespace && (o.Spec.GlobalService == "" || string(o.Spec.GlobalService) == gs.Name) {
			r.addStatus("AuthorizationPolicy", o, o.Status, servedAuthz[o.Name])
			delete(servedAuthz, o.Name)
		}
	}
	if tp != nil && !slices.ContainsFunc(r.Policies, func(p PolicyStatus) bool { return p.Kind == "TrafficPolicy" && p.Name == tp.Name }) {
		r.Warnings = append(r.Warnings, fmt.Sprintf("TrafficPolicy %s/%s is served but no longer on the hub: the agent has not seen it deleted yet", tp.Namespace, tp.Name))
	}
	for _, name := range slices.Sorted(maps.Keys(servedAuthz)) {
		r.Warnings = append(r.Warnings, fmt.Sprintf("AuthorizationPolicy %s/%s is served but no longer on the hub: the agent has not seen it deleted yet", gs.Namespace, name))
	}
}

func (r *Result) addStatus(kind string, o metav1.Object, st v1.PolicyStatus, served bool) {
	ps := PolicyStatus{Kind: kind, Namespace: o.GetNamespace(), Name: o.GetName(), Served: served,
		Generation: o.GetGeneration(), ObservedGeneration: st.ObservedGeneration}
	for _, c := range []struct {
		t   string
		out *string
	}{{v1.ConditionAccepted, &ps.Accepted}, {v1.ConditionResolvedRefs, &ps.ResolvedRefs}, {v1.ConditionProgrammed, &ps.Programmed}} {
		cond := meta.FindStatusCondition(st.Conditions, c.t)
		if cond == nil {
			*c.out = string(metav1.ConditionUnknown)
			continue
		}
		*c.out = string(cond.Status)
		if cond.Status != metav1.ConditionTrue {
			*c.out += " " + cond.Reason
			if ps.Message == "" {
				ps.Message = cond.Message
			}
		}
	}
	r.Policies = append(r.Policies, ps)
	what := kind + " " + ps.Namespace + "/" + ps.Name
	accepted := meta.IsStatusConditionTrue(st.Conditions, v1.ConditionAccepted)
	switch {
	case ps.ObservedGeneration < ps.Generation:
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s: the hub has not processed generation %d yet (status is of %d)", what, ps.Generation, ps.ObservedGeneration))
	case accepted && !served:
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s is Accepted but not in cluster %s's view yet: not explained here", what, r.View.Cluster))
	case !accepted:
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s is not Accepted (%s): the hub does not serve it", what, ps.Accepted))
	}
	if !meta.IsStatusConditionTrue(st.Conditions, v1.ConditionProgrammed) && accepted {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s is not known to be Programmed everywhere (%s): some proxies may not apply it yet", what, ps.Programmed))
	}
}
