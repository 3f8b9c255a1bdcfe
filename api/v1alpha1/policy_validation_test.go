package v1alpha1_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
)

// validTrafficPolicy is docs/api.md's example: retries on UNAVAILABLE for every
// method of the cart service and a 5% canary to version=v2 in beta.
func validTrafficPolicy(name string) *v1.TrafficPolicy {
	return &v1.TrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.TrafficPolicySpec{
			GlobalService:    "echo",
			Subsets:          []v1.Subset{{Name: "canary", Clusters: []v1.ClusterName{"beta"}, Labels: map[string]string{"version": "v2"}}},
			OutlierDetection: &v1.OutlierDetection{},
			Routes: []v1.TrafficRoute{
				{
					Name:    "reads",
					Match:   v1.RouteMatch{Methods: []v1.MethodPattern{"/shop.Cart/Get", "/shop.Cart/List"}, Headers: []v1.HeaderMatch{{Name: "x-tenant", Prefix: ptr.To("acme-")}}},
					Timeout: duration(100 * time.Millisecond),
					Retries: &v1.RetryPolicy{Attempts: 3, Backoff: &v1.RetryBackoff{}},
					Fault:   &v1.FaultInjection{Abort: &v1.FaultAbort{Percent: intstr.FromString("0.5"), Code: "Unavailable"}},
				},
				{
					Name:  "all",
					Match: v1.RouteMatch{Methods: []v1.MethodPattern{"/shop.Cart/*"}},
					Split: []v1.WeightedSubset{{Subset: "", Weight: 95}, {Subset: "canary", Weight: 5}},
				},
			},
		},
	}
}

// validAuthorizationPolicy: only shop/frontend, from any cluster, may call echo.
func validAuthorizationPolicy(name string) *v1.AuthorizationPolicy {
	return &v1.AuthorizationPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.AuthorizationPolicySpec{
			GlobalService: "echo",
			Action:        v1.AuthorizationAllow,
			Rules: []v1.AuthorizationRule{{
				From:    []v1.AuthorizationSource{{Namespaces: []string{"shop"}, ServiceAccounts: []string{"frontend"}}},
				Methods: []v1.MethodPattern{"/shop.Cart/*"},
			}},
		},
	}
}

// checkPolicyDefaults checks what the API server filled into validTrafficPolicy.
func checkPolicyDefaults(t *testing.T, tp *v1.TrafficPolicy) {
	t.Helper()
	s := tp.Spec
	if s.LoadBalancer.Policy != v1.DefaultLoadBalancerPolicy {
		t.Errorf("TrafficPolicy default load balancer: %q", s.LoadBalancer.Policy)
	}
	od := s.OutlierDetection
	if ptr.Deref(od.ConsecutiveErrors, 0) != v1.DefaultOutlierConsecutiveErrors || od.Interval.Duration != v1.DefaultOutlierInterval ||
		od.BaseEjectionTime.Duration != v1.DefaultOutlierBaseEjectionTime || ptr.Deref(od.MaxEjectionPercent, 0) != v1.DefaultOutlierMaxEjectionPercent {
		t.Errorf("TrafficPolicy outlier detection defaults: %+v", od)
	}
	r := s.Routes[0].Retries
	if len(r.On) != 1 || r.On[0] != v1.DefaultRetryOn || r.Backoff.Base.Duration != v1.DefaultRetryBackoffBase || r.Backoff.Max != nil {
		t.Errorf("TrafficPolicy retry defaults: %+v, backoff %+v", r, r.Backoff)
	}
}

func trafficCase(name string, mutate func(*v1.TrafficPolicy)) client.Object {
	o := validTrafficPolicy(name)
	mutate(o)
	return o
}

func authzCase(name string, mutate func(*v1.AuthorizationPolicy)) client.Object {
	o := validAuthorizationPolicy(name)
	mutate(o)
	return o
}

// policyCases are the invalid TrafficPolicies and AuthorizationPolicies TestValidation
// expects the API server to refuse, with substrings of its error.
func policyCases() map[string]struct {
	obj  client.Object
	want []string
} {
	type tc = struct {
		obj  client.Object
		want []string
	}
	return map[string]tc{
		"traffic without global service": {trafficCase("nogs", func(o *v1.TrafficPolicy) { o.Spec.GlobalService = "" }),
			[]string{"spec.globalService"}},
		"traffic ring hash without hash key": {trafficCase("nokey", func(o *v1.TrafficPolicy) { o.Spec.LoadBalancer.Policy = v1.LoadBalancerRingHash }),
			[]string{"spec.loadBalancer", "set hashKey exactly when policy is RingHash"}},
		"traffic hash key without ring hash": {trafficCase("keyrr", func(o *v1.TrafficPolicy) { o.Spec.LoadBalancer.HashKey = &v1.HashKey{Header: "x-session"} }),
			[]string{"spec.loadBalancer", "set hashKey exactly when policy is RingHash"}},
		"traffic binary hash header": {trafficCase("binkey", func(o *v1.TrafficPolicy) {
			o.Spec.LoadBalancer = v1.LoadBalancer{Policy: v1.LoadBalancerRingHash, HashKey: &v1.HashKey{Header: "x-session-bin"}}
		}), []string{"spec.loadBalancer.hashKey.header", "-bin"}},
		"traffic subset names repeated": {trafficCase("dupsubset", func(o *v1.TrafficPolicy) { o.Spec.Subsets = append(o.Spec.Subsets, o.Spec.Subsets[0]) }),
			[]string{"spec.subsets", "subset names must be unique"}},
		"traffic subset selecting nothing": {trafficCase("emptysubset", func(o *v1.TrafficPolicy) { o.Spec.Subsets[0] = v1.Subset{Name: "canary"} }),
			[]string{"spec.subsets[0]", "a subset needs clusters, labels or both"}},
		"traffic subset name not a label": {trafficCase("badsubset", func(o *v1.TrafficPolicy) { o.Spec.Subsets[0].Name = "Canary" }),
			[]string{"spec.subsets[0].name", "should match"}},
		"traffic route names repeated": {trafficCase("duproute", func(o *v1.TrafficPolicy) { o.Spec.Routes[1].Name = "reads" }),
			[]string{"spec.routes", "route names must be unique"}},
		"traffic method malformed": {trafficCase("badmethod", func(o *v1.TrafficPolicy) { o.Spec.Routes[0].Match.Methods = []v1.MethodPattern{"shop.Cart/Get"} }),
			[]string{"spec.routes[0].match.methods[0]", "should match"}},
		"traffic header with two matches": {trafficCase("twomatch", func(o *v1.TrafficPolicy) { o.Spec.Routes[0].Match.Headers[0].Exact = ptr.To("x") }),
			[]string{"spec.routes[0].match.headers[0]", "set exactly one of exact, prefix, regex and present"}},
		"traffic retries over 10": {trafficCase("manyretries", func(o *v1.TrafficPolicy) { o.Spec.Routes[0].Retries.Attempts = 11 }),
			[]string{"spec.routes[0].retries.attempts", "less than or equal to 10"}},
		"traffic retry on a code not retryable": {trafficCase("retryon", func(o *v1.TrafficPolicy) { o.Spec.Routes[0].Retries.On = []v1.RetryOn{"NotFound"} }),
			[]string{"spec.routes[0].retries.on[0]", "Unsupported value"}},
		"traffic backoff max below base": {trafficCase("backoff", func(o *v1.TrafficPolicy) {
			o.Spec.Routes[0].Retries.Backoff = &v1.RetryBackoff{Base: duration(time.Second), Max: duration(time.Millisecond)}
		}), []string{"spec.routes[0].retries.backoff", "backoff.max must be at least backoff.base"}},
		"traffic timeout too long": {trafficCase("timeout", func(o *v1.TrafficPolicy) { o.Spec.Routes[0].Timeout = duration(2 * time.Hour) }),
			[]string{"spec.routes[0].timeout", "timeout must be between 1ms and 1h"}},
		"traffic fault percent over 100": {trafficCase("pct", func(o *v1.TrafficPolicy) { o.Spec.Routes[0].Fault.Abort.Percent = intstr.FromInt32(101) }),
			[]string{"spec.routes[0].fault.abort.percent", "percent must be from 0 to 100"}},
		"traffic fault percent with five decimals": {trafficCase("pctdec", func(o *v1.TrafficPolicy) { o.Spec.Routes[0].Fault.Abort.Percent = intstr.FromString("0.00001") }),
			[]string{"spec.routes[0].fault.abort.percent", "at most four decimals"}},
		"traffic fault code unknown": {trafficCase("code", func(o *v1.TrafficPolicy) { o.Spec.Routes[0].Fault.Abort.Code = "Broken" }),
			[]string{"spec.routes[0].fault.abort.code", "Unsupported value"}},
		"traffic empty fault": {trafficCase("nofault", func(o *v1.TrafficPolicy) { o.Spec.Routes[0].Fault = &v1.FaultInjection{} }),
			[]string{"spec.routes[0].fault", "a fault needs delay, abort or both"}},
		"traffic split not 100": {trafficCase("split", func(o *v1.TrafficPolicy) { o.Spec.Routes[1].Split[0].Weight = 90 }),
			[]string{"spec.routes[1].split", "split weights must sum to 100"}},
		"traffic split subset twice": {trafficCase("splittwice", func(o *v1.TrafficPolicy) {
			o.Spec.Routes[1].Split = []v1.WeightedSubset{{Subset: "canary", Weight: 50}, {Subset: "canary", Weight: 50}}
		}), []string{"spec.routes[1].split", "a split must not name a subset twice"}},
		"traffic split names unknown subset": {trafficCase("splitunknown", func(o *v1.TrafficPolicy) { o.Spec.Routes[1].Split[1].Subset = "v3" }),
			[]string{"spec.routes", "every routes[].split[].subset must name one of spec.subsets"}},
		"traffic too many routes": {trafficCase("manyroutes", func(o *v1.TrafficPolicy) {
			for i := range 33 {
				o.Spec.Routes = append(o.Spec.Routes, v1.TrafficRoute{Name: v1.SectionName("r" + strings.Repeat("x", i))})
			}
		}), []string{"spec.routes", "must have at most 32 items"}},

		"authz default action on a service policy": {authzCase("svcdefault", func(o *v1.AuthorizationPolicy) { o.Spec.DefaultAction = v1.AuthorizationDeny }),
			[]string{"spec", "set it only on a policy without globalService"}},
		"authz rules without action": {authzCase("noaction", func(o *v1.AuthorizationPolicy) { o.Spec.Action = "" }),
			[]string{"spec", "set action (Allow or Deny)"}},
		"authz neither rules nor default": {authzCase("nothing", func(o *v1.AuthorizationPolicy) { o.Spec.Rules = nil }),
			[]string{"spec", "set rules (with action), or defaultAction on a namespace-wide policy"}},
		"authz service accounts without namespaces": {authzCase("sans", func(o *v1.AuthorizationPolicy) {
			o.Spec.Rules[0].From = []v1.AuthorizationSource{{Clusters: []v1.ClusterName{"alpha"}, ServiceAccounts: []string{"frontend"}}}
		}), []string{"spec.rules[0].from[0]", "serviceAccounts needs namespaces"}},
		"authz empty source": {authzCase("emptysource", func(o *v1.AuthorizationPolicy) { o.Spec.Rules[0].From = []v1.AuthorizationSource{{}} }),
			[]string{"spec.rules[0].from[0]", "a source needs clusters, namespaces or both"}},
		"authz action unknown": {authzCase("badaction", func(o *v1.AuthorizationPolicy) { o.Spec.Action = "Audit" }),
			[]string{"spec.action", "Unsupported value"}},
		"authz namespace malformed": {authzCase("badns", func(o *v1.AuthorizationPolicy) { o.Spec.Rules[0].From[0].Namespaces = []string{"Shop"} }),
			[]string{"spec.rules[0].from[0].namespaces[0]", "should match"}},
	}
}
