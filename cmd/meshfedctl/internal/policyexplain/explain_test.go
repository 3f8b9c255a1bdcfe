package policyexplain

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/clusteragent"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/policy"
)

func d(x time.Duration) metav1.Duration { return metav1.Duration{Duration: x} }

var (
	retry3 = &model.Retries{Attempts: 3, On: []string{"Unavailable"}, BackoffBase: d(25 * time.Millisecond), BackoffMax: d(250 * time.Millisecond)}
	abort  = &model.Fault{Abort: &model.FaultAbort{PerMillion: 100_000, Code: "Unavailable"}}
	cartTP = &model.TrafficPolicy{Namespace: "shop", Name: "cart", GlobalService: "cart",
		LoadBalancer: model.LoadBalancer{Policy: model.LoadBalancerRingHash, HashHeader: "x-user"},
		Subsets:      []model.Subset{{Name: "canary", Clusters: []string{"beta"}}},
		Routes: []model.Route{
			{Name: "tenant-acme", Methods: []string{"/shop.Cart/Get"}, Headers: []model.HeaderMatch{{Name: "x-tenant", Exact: ptr.To("acme")}}, Timeout: d(time.Second)},
			{Name: "reads", Methods: []string{"/shop.Cart/Get"}, Timeout: d(100 * time.Millisecond), Retries: retry3},
			{Name: "chaos", Headers: []model.HeaderMatch{{Name: "x-chaos", Present: ptr.To(true)}}, Fault: abort},
			{Name: "writes", Methods: []string{"/shop.Cart/*"}, Split: []model.WeightedSubset{{Subset: "", Weight: 95}, {Subset: "canary", Weight: 5}}},
		}}
	// Only shop/frontend from alpha and beta may call cart; nobody from staging may
	// call anything of shop; shop denies by default.
	frontendOnly = &model.AuthorizationPolicy{Namespace: "shop", Name: "frontend-only", GlobalService: "cart", Action: model.ActionAllow,
		Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Clusters: []string{"alpha", "beta"}, Namespaces: []string{"shop"}, ServiceAccounts: []string{"frontend"}}}}}}
	checkoutAdds = &model.AuthorizationPolicy{Namespace: "shop", Name: "checkout-adds", GlobalService: "cart", Action: model.ActionAllow,
		Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Namespaces: []string{"shop"}, ServiceAccounts: []string{"checkout"}}}, Methods: []string{"/shop.Cart/Add"}}}}
	noStaging = &model.AuthorizationPolicy{Namespace: "shop", Name: "no-staging", Action: model.ActionDeny,
		Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Clusters: []string{"staging"}}}}}}
	posture = &model.AuthorizationPolicy{Namespace: "shop", Name: "posture", DefaultAction: model.ActionDeny}
	// A policy of another service: it never applies to cart.
	paymentsOnly = &model.AuthorizationPolicy{Namespace: "shop", Name: "payments", GlobalService: "payments", Action: model.ActionAllow,
		Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Namespaces: []string{"pay"}}}}}}
)

func eps(ready ...bool) []model.Endpoint {
	var out []model.Endpoint
	for _, r := range ready {
		out = append(out, model.Endpoint{Address: "10.0.0.1", Ready: r, Serving: r})
	}
	return out
}

// testView is what alpha's agent serves: cart in alpha (one of two endpoints ready),
// beta and staging; catalog in alpha, which cart does not select.
func testView() *clusteragent.DebugView {
	cart := func(ready ...bool) *model.ServiceEndpoints {
		return &model.ServiceEndpoints{Namespace: "shop", Name: "cart", Endpoints: eps(ready...)}
	}
	return &clusteragent.DebugView{
		Cluster: "alpha", Source: "live", HubReachable: true, Synced: true,
		GlobalServices: []model.GlobalService{
			{Namespace: "shop", Name: "cart", Service: &model.ServiceRef{Namespace: "shop", Name: "cart"}},
			{Namespace: "shop", Name: "payments", Service: &model.ServiceRef{Namespace: "shop", Name: "payments"}},
		},
		Clusters: []clusteragent.DebugCluster{
			{Name: "alpha", Services: []*model.ServiceEndpoints{cart(true, false),
				{Namespace: "shop", Name: "catalog", Endpoints: eps(true)}}},
			{Name: "beta", Services: []*model.ServiceEndpoints{cart(true)}},
			{Name: "staging", Services: []*model.ServiceEndpoints{cart(true, true)}},
		},
		TrafficPolicies:       []*model.TrafficPolicy{cartTP},
		AuthorizationPolicies: []*model.AuthorizationPolicy{checkoutAdds, frontendOnly, noStaging, paymentsOnly, posture},
	}
}

func TestExplainAuthorization(t *testing.T) {
	withPolicies := func(ps ...*model.AuthorizationPolicy) *clusteragent.DebugView {
		v := testView()
		v.AuthorizationPolicies = ps
		return v
	}
	tests := map[string]struct {
		view    *clusteragent.DebugView
		from    policy.Identity
		method  string
		allowed bool
		by      string
	}{
		"allowed by a rule": {testView(), policy.Identity{Cluster: "beta", Namespace: "shop", ServiceAccount: "frontend"}, "/shop.Cart/Get",
			true, "Allow shop/frontend-only rules[0]"},
		"allowed by a method rule": {testView(), policy.Identity{Cluster: "alpha", Namespace: "shop", ServiceAccount: "checkout"}, "/shop.Cart/Add",
			true, "Allow shop/checkout-adds rules[0]"},
		"another method of that rule's caller": {testView(), policy.Identity{Cluster: "alpha", Namespace: "shop", ServiceAccount: "checkout"}, "/shop.Cart/Get",
			false, "no Allow rule matches (Allow policies apply: shop/checkout-adds, shop/frontend-only)"},
		"no method: a rule naming methods does not match": {testView(), policy.Identity{Cluster: "alpha", Namespace: "shop", ServiceAccount: "checkout"}, "",
			false, "no Allow rule matches (Allow policies apply: shop/checkout-adds, shop/frontend-only)"},
		"denied by a Deny over an Allow": {withPolicies(frontendOnly, noStaging, &model.AuthorizationPolicy{Namespace: "shop", Name: "all-frontends",
			Action: model.ActionAllow, Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Namespaces: []string{"shop"}, ServiceAccounts: []string{"frontend"}}}}}}),
			policy.Identity{Cluster: "staging", Namespace: "shop", ServiceAccount: "frontend"}, "/shop.Cart/Get", false, "Deny shop/no-staging rules[0]"},
		"same service account from an excluded cluster": {withPolicies(frontendOnly),
			policy.Identity{Cluster: "staging", Namespace: "shop", ServiceAccount: "frontend"}, "/shop.Cart/Get",
			false, "no Allow rule matches (Allow policies apply: shop/frontend-only)"},
		"denied by the namespace default": {withPolicies(noStaging, posture, paymentsOnly),
			policy.Identity{Cluster: "alpha", Namespace: "shop", ServiceAccount: "frontend"}, "/shop.Cart/Get", false, "namespace default Deny"},
		"allowed by the namespace default": {withPolicies(noStaging, paymentsOnly),
			policy.Identity{Cluster: "alpha", Namespace: "web", ServiceAccount: "anyone"}, "/shop.Cart/Get", true, "namespace default Allow"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := Explain(tc.view, nil, Request{From: tc.from, Namespace: "shop", Service: "cart", Method: tc.method})
			if err != nil {
				t.Fatal(err)
			}
			if a := r.Authorization; a.Allowed != tc.allowed || a.DecidedBy != tc.by {
				t.Errorf("allowed %v by %q; want %v by %q", a.Allowed, a.DecidedBy, tc.allowed, tc.by)
			}
			for _, p := range r.Authorization.Policies {
				if p == "shop/payments" {
					t.Errorf("payments' policy applies to cart: %v", r.Authorization.Policies)
				}
			}
		})
	}
}

func TestExplainRouting(t *testing.T) {
	frontend := policy.Identity{Cluster: "alpha", Namespace: "shop", ServiceAccount: "frontend"}
	all := []ClusterEndpoints{{"alpha", 1, 2}, {"beta", 1, 1}, {"staging", 2, 2}}
	defaults := Routing{TrafficPolicy: "shop/cart", LoadBalancer: cartTP.LoadBalancer, Endpoints: all}
	tests := map[string]struct {
		method  string
		headers map[string][]string
		want    Routing
	}{
		"by method and header": {"/shop.Cart/Get", map[string][]string{"x-tenant": {"acme"}},
			Routing{TrafficPolicy: "shop/cart", Route: "tenant-acme", Timeout: d(time.Second), LoadBalancer: cartTP.LoadBalancer, Endpoints: all}},
		"by method, another header value": {"/shop.Cart/Get", map[string][]string{"x-tenant": {"other"}},
			Routing{TrafficPolicy: "shop/cart", Route: "reads", Timeout: d(100 * time.Millisecond), Retries: retry3, LoadBalancer: cartTP.LoadBalancer, Endpoints: all}},
		"by header alone": {"/shop.Catalog/List", map[string][]string{"x-chaos": {"1"}},
			Routing{TrafficPolicy: "shop/cart", Route: "chaos", Fault: abort, LoadBalancer: cartTP.LoadBalancer, Endpoints: all}},
		"split with a subset by cluster": {"/shop.Cart/Add", nil,
			Routing{TrafficPolicy: "shop/cart", Route: "writes", LoadBalancer: cartTP.LoadBalancer, Endpoints: all, Split: []SubsetShare{
				{Subset: "", Weight: 95, Endpoints: []ClusterEndpoints{{"alpha", 1, 2}, {"staging", 2, 2}}},
				{Subset: "canary", Weight: 5, Endpoints: []ClusterEndpoints{{"beta", 1, 1}}},
			}}},
		"no route matches": {"/shop.Catalog/List", nil, defaults},
		"no method":        {"", nil, defaults},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := Explain(testView(), nil, Request{From: frontend, Namespace: "shop", Service: "cart", Method: tc.method, Headers: tc.headers})
			if err != nil {
				t.Fatal(err)
			}
			if tc.want.Retries == nil { // what every route is served without retries of its own
				tc.want.Retries = policy.FailoverRetries()
			}
			if diff := cmp.Diff(tc.want, r.Routing); diff != "" {
				t.Errorf("routing (-want +got):\n%s", diff)
			}
		})
	}

	// A service without a TrafficPolicy: the defaults, every endpoint.
	r, err := Explain(testView(), nil, Request{From: frontend, Namespace: "shop", Service: "payments", Method: "/shop.Payments/Charge"})
	if err != nil {
		t.Fatal(err)
	}
	want := Routing{Retries: policy.FailoverRetries(), LoadBalancer: model.LoadBalancer{Policy: string(v1.DefaultLoadBalancerPolicy)}, Endpoints: []ClusterEndpoints{}}
	if diff := cmp.Diff(want, r.Routing); diff != "" {
		t.Errorf("routing without a policy (-want +got):\n%s", diff)
	}
}

// TestExplainSplitByLabels: a subset by labels holds the endpoints whose records carry
// them (the publisher copies them from the endpoints' Pods), as the xDS server's
// subset clusters do.
func TestExplainSplitByLabels(t *testing.T) {
	view := testView()
	tp := *cartTP
	tp.Subsets = []model.Subset{{Name: "canary", Labels: map[string]string{"version": "v2"}}}
	view.TrafficPolicies = []*model.TrafficPolicy{&tp}
	labelled := eps(true, false, true)
	labelled[0].Labels = map[string]string{"version": "v2"}
	labelled[1].Labels = map[string]string{"version": "v2", "track": "stable"}
	labelled[2].Labels = map[string]string{"version": "v1"}
	view.Clusters[2].Services[0].Endpoints = labelled // staging's cart
	r, err := Explain(view, nil, Request{From: policy.Identity{Cluster: "alpha", Namespace: "shop", ServiceAccount: "frontend"},
		Namespace: "shop", Service: "cart", Method: "/shop.Cart/Add"})
	if err != nil {
		t.Fatal(err)
	}
	want := []SubsetShare{
		{Subset: "", Weight: 95, Endpoints: []ClusterEndpoints{{"alpha", 1, 2}, {"beta", 1, 1}, {"staging", 1, 1}}},
		{Subset: "canary", Weight: 5, Endpoints: []ClusterEndpoints{{"staging", 1, 2}}},
	}
	if diff := cmp.Diff(want, r.Routing.Split); diff != "" {
		t.Errorf("split (-want +got):\n%s", diff)
	}
	for _, w := range r.Warnings {
		if strings.Contains(w, "label") {
			t.Errorf("warning %q: the records carry labels", w)
		}
	}
}

func TestExplainUnknownService(t *testing.T) {
	_, err := Explain(testView(), nil, Request{Namespace: "shop", Service: "cartt"})
	if err == nil || !strings.Contains(err.Error(), "no such global service") || !strings.Contains(err.Error(), "cart, payments") {
		t.Errorf("error %v does not name the namespace's global services", err)
	}
	_, err = Explain(testView(), nil, Request{Namespace: "web", Service: "cart"})
	if err == nil || !strings.Contains(err.Error(), "namespace web: none") {
		t.Errorf("error %v", err)
	}
}

func TestExplainHubStatus(t *testing.T) {
	cond := func(t, s, reason string) metav1.Condition {
		return metav1.Condition{Type: t, Status: metav1.ConditionStatus(s), Reason: reason, Message: t + " " + reason}
	}
	meta := func(name string, gen int64) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: "shop", Name: name, Generation: gen}
	}
	ok := []metav1.Condition{cond(v1.ConditionAccepted, "True", "Accepted"), cond(v1.ConditionResolvedRefs, "True", "ResolvedRefs"),
		cond(v1.ConditionProgrammed, "True", "Programmed")}
	hub := &Hub{
		TrafficPolicies: []v1.TrafficPolicy{
			{ObjectMeta: meta("cart", 2), Spec: v1.TrafficPolicySpec{GlobalService: "cart"}, Status: v1.PolicyStatus{ObservedGeneration: 2, Conditions: ok}},
			{ObjectMeta: meta("cart2", 1), Spec: v1.TrafficPolicySpec{GlobalService: "cart"}, Status: v1.PolicyStatus{ObservedGeneration: 1,
				Conditions: []metav1.Condition{cond(v1.ConditionAccepted, "False", "Conflicted")}}},
			{ObjectMeta: meta("payments", 1), Spec: v1.TrafficPolicySpec{GlobalService: "payments"}},
		},
		AuthorizationPolicies: []v1.AuthorizationPolicy{
			{ObjectMeta: meta("frontend-only", 3), Spec: v1.AuthorizationPolicySpec{GlobalService: "cart"}, Status: v1.PolicyStatus{ObservedGeneration: 2, Conditions: ok}},
			{ObjectMeta: meta("posture", 1), Status: v1.PolicyStatus{ObservedGeneration: 1, Conditions: ok}},
			{ObjectMeta: meta("new", 1), Status: v1.PolicyStatus{ObservedGeneration: 1, Conditions: []metav1.Condition{
				cond(v1.ConditionAccepted, "True", "Accepted"), cond(v1.ConditionProgrammed, "Unknown", "NotReported")}}},
		},
	}
	r, err := Explain(testView(), hub, Request{From: policy.Identity{Cluster: "alpha", Namespace: "shop", ServiceAccount: "frontend"},
		Namespace: "shop", Service: "cart", Method: "/shop.Cart/Get"})
	if err != nil {
		t.Fatal(err)
	}
	want := []PolicyStatus{
		{Kind: "TrafficPolicy", Namespace: "shop", Name: "cart", Served: true, Generation: 2, ObservedGeneration: 2, Accepted: "True", ResolvedRefs: "True", Programmed: "True"},
		{Kind: "TrafficPolicy", Namespace: "shop", Name: "cart2", Generation: 1, ObservedGeneration: 1, Accepted: "False Conflicted", ResolvedRefs: "Unknown", Programmed: "Unknown",
			Message: "Accepted Conflicted"},
		{Kind: "AuthorizationPolicy", Namespace: "shop", Name: "frontend-only", Served: true, Generation: 3, ObservedGeneration: 2, Accepted: "True", ResolvedRefs: "True", Programmed: "True"},
		{Kind: "AuthorizationPolicy", Namespace: "shop", Name: "posture", Served: true, Generation: 1, ObservedGeneration: 1, Accepted: "True", ResolvedRefs: "True", Programmed: "True"},
		{Kind: "AuthorizationPolicy", Namespace: "shop", Name: "new", Generation: 1, ObservedGeneration: 1, Accepted: "True", ResolvedRefs: "Unknown", Programmed: "Unknown NotReported",
			Message: "Programmed NotReported"},
	}
	if diff := cmp.Diff(want, r.Policies); diff != "" {
		t.Errorf("policies (-want +got):\n%s", diff)
	}
	wantWarnings := []string{
		"TrafficPolicy shop/cart2 is not Accepted (False Conflicted): the hub does not serve it",
		"AuthorizationPolicy shop/frontend-only: the hub has not processed generation 3 yet (status is of 2)",
		"AuthorizationPolicy shop/new is Accepted but not in cluster alpha's view yet: not explained here",
		"AuthorizationPolicy shop/new is not known to be Programmed everywhere (Unknown NotReported): some proxies may not apply it yet",
		"AuthorizationPolicy shop/checkout-adds is served but no longer on the hub: the agent has not seen it deleted yet",
		"AuthorizationPolicy shop/no-staging is served but no longer on the hub: the agent has not seen it deleted yet",
	}
	if diff := cmp.Diff(wantWarnings, r.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func TestExplainWarnsAboutTheView(t *testing.T) {
	v := testView()
	v.Source, v.HubReachable = "restored", false
	r, err := Explain(v, nil, Request{From: policy.Identity{Cluster: "beta", Namespace: "shop", ServiceAccount: "frontend"}, Namespace: "shop", Service: "cart"})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(r.Warnings, "\n")
	for _, want := range []string{"serves a restored view", "computed from cluster alpha's view; the caller's cluster is beta", "give --hub-kubeconfig"} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings do not say %q:\n%s", want, got)
		}
	}
}

func TestParse(t *testing.T) {
	id, err := ParseFrom("alpha/shop/frontend")
	if err != nil || id != (policy.Identity{Cluster: "alpha", Namespace: "shop", ServiceAccount: "frontend"}) {
		t.Errorf("ParseFrom = %v, %v", id, err)
	}
	for _, bad := range []string{"shop/frontend", "alpha/shop/frontend/x", "alpha//frontend", "Alpha/shop/frontend", "alpha/shop/Front_end", ""} {
		if _, err := ParseFrom(bad); err == nil || !strings.Contains(err.Error(), "--from") {
			t.Errorf("ParseFrom(%q) = %v, want an error about --from", bad, err)
		}
	}
	if ns, name, err := ParseTo("shop/cart"); err != nil || ns != "shop" || name != "cart" {
		t.Errorf("ParseTo = %s, %s, %v", ns, name, err)
	}
	for _, bad := range []string{"cart", "shop/", "/cart", "shop/cart/x"} {
		if _, _, err := ParseTo(bad); err == nil || !strings.Contains(err.Error(), "<namespace>/<global service>") {
			t.Errorf("ParseTo(%q) = %v", bad, err)
		}
	}
	for _, good := range []string{"", "/shop.Cart/Get", "/Cart/Get", "/a.b_c.D/E9"} {
		if _, err := ParseMethod(good); err != nil {
			t.Errorf("ParseMethod(%q) = %v", good, err)
		}
	}
	for _, bad := range []string{"shop.Cart/Get", "/shop.Cart/*", "/shop.Cart", "/shop.Cart/Get/x", "/shop..Cart/Get", "Get"} {
		if _, err := ParseMethod(bad); err == nil || !strings.Contains(err.Error(), "/<package>.<Service>/<Method>") {
			t.Errorf("ParseMethod(%q) = %v", bad, err)
		}
	}
	h, err := ParseHeaders([]string{"X-Tenant=acme", "x-tenant=other", "x-empty=", "x-eq=a=b"})
	if diff := cmp.Diff(map[string][]string{"x-tenant": {"acme", "other"}, "x-empty": {""}, "x-eq": {"a=b"}}, h); err != nil || diff != "" {
		t.Errorf("ParseHeaders: %v (-want +got):\n%s", err, diff)
	}
	for _, bad := range []string{"x-tenant", "=acme", "x tenant=a"} {
		if _, err := ParseHeaders([]string{bad}); err == nil || !strings.Contains(err.Error(), "name=value") {
			t.Errorf("ParseHeaders(%q) = %v", bad, err)
		}
	}
}

func TestPrint(t *testing.T) {
	r, err := Explain(testView(), &Hub{}, Request{From: policy.Identity{Cluster: "alpha", Namespace: "shop", ServiceAccount: "frontend"},
		Namespace: "shop", Service: "cart", Method: "/shop.Cart/Add", Headers: map[string][]string{"x-user": {"ann"}}})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := r.Print(&text, "text"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"call           alpha/shop/frontend → shop/cart /shop.Cart/Add",
		"headers        x-user=ann",
		"authorization  ALLOWED by Allow shop/frontend-only rules[0]",
		"policies     shop/checkout-adds, shop/frontend-only, shop/no-staging, shop/posture (namespace default Deny)",
		"route          writes (TrafficPolicy shop/cart)",
		"load balancing  RingHash, hash on header x-user",
		" 95% \"\" (in no subset): alpha 1/2 ready, staging 2/2 ready",
		"   5% canary: beta 1/1 ready",
	} {
		if !strings.Contains(squeeze(text.String()), squeeze(want)) {
			t.Errorf("text does not hold %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := r.Print(&js, "json"); err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*r, back); diff != "" {
		t.Errorf("json round trip (-want +got):\n%s", diff)
	}
	if err := r.Print(&js, "yaml"); err == nil || !strings.Contains(err.Error(), "use text or json") {
		t.Errorf("Print(yaml) = %v", err)
	}
	if got := percent(100_000) + " " + percent(12_345) + " " + percent(1_000_000) + " " + percent(0); got != "10% 1.2345% 100% 0%" {
		t.Errorf("percent = %s", got)
	}
}

// squeeze makes every run of spaces one space: the text's columns move with its content.
func squeeze(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}
