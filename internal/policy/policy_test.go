package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/trust"
)

// The policies of docs/api.md: "only shop/frontend from any cluster may call cart";
// "nobody from cluster staging may call payments".
var (
	frontendOnly = &model.AuthorizationPolicy{Namespace: "shop", Name: "frontend-only", GlobalService: "cart", Action: model.ActionAllow,
		Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Namespaces: []string{"shop"}, ServiceAccounts: []string{"frontend"}}}}}}
	noStaging = &model.AuthorizationPolicy{Namespace: "shop", Name: "no-staging", GlobalService: "payments", Action: model.ActionDeny,
		Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Clusters: []string{"staging"}}}}}}
	readsFromAnyone = &model.AuthorizationPolicy{Namespace: "shop", Name: "reads", GlobalService: "cart", Action: model.ActionAllow,
		Rules: []model.AuthorizationRule{{Methods: []string{"/shop.Cart/Get", "/shop.Catalog/*"}}}}
	denyAdminFromBeta = &model.AuthorizationPolicy{Namespace: "shop", Name: "no-admin", Action: model.ActionDeny,
		Rules: []model.AuthorizationRule{
			{From: []model.AuthorizationSource{{Clusters: []string{"alpha"}, Namespaces: []string{"ops"}}}, Methods: []string{"/shop.Admin/Reset"}},
			{From: []model.AuthorizationSource{{Clusters: []string{"beta"}}}, Methods: []string{"/shop.Admin/*"}},
		}}
	denyByDefault  = &model.AuthorizationPolicy{Namespace: "shop", Name: "posture", DefaultAction: model.ActionDeny}
	allowByDefault = &model.AuthorizationPolicy{Namespace: "shop", Name: "open", DefaultAction: model.ActionAllow}
)

func TestDecide(t *testing.T) {
	frontend := Identity{"alpha", "shop", "frontend"}
	frontendBeta := Identity{"beta", "shop", "frontend"}
	other := Identity{"alpha", "shop", "checkout"}
	frontendElsewhere := Identity{"alpha", "web", "frontend"}
	staging := Identity{"staging", "shop", "frontend"}
	tests := map[string]struct {
		policies []*model.AuthorizationPolicy
		caller   Identity
		method   string
		allowed  bool
		rule     string
	}{
		"no policy: allowed by default":               {nil, other, "/shop.Cart/Get", true, "namespace default Allow"},
		"namespace denies by default":                 {[]*model.AuthorizationPolicy{denyByDefault}, other, "/shop.Cart/Get", false, "namespace default Deny"},
		"deny default beats allow default":            {[]*model.AuthorizationPolicy{allowByDefault, denyByDefault}, other, "/x.Y/Z", false, "namespace default Deny"},
		"allowed identity from its cluster":           {[]*model.AuthorizationPolicy{frontendOnly}, frontend, "/shop.Cart/Add", true, "Allow shop/frontend-only rules[0]"},
		"allowed identity from another cluster":       {[]*model.AuthorizationPolicy{frontendOnly}, frontendBeta, "/shop.Cart/Add", true, "Allow shop/frontend-only rules[0]"},
		"another service account":                     {[]*model.AuthorizationPolicy{frontendOnly}, other, "/shop.Cart/Add", false, "no Allow rule matches (Allow policies apply: shop/frontend-only)"},
		"same service account, another namespace":     {[]*model.AuthorizationPolicy{frontendOnly}, frontendElsewhere, "/shop.Cart/Add", false, "no Allow rule matches (Allow policies apply: shop/frontend-only)"},
		"an allow policy overrides an allow default":  {[]*model.AuthorizationPolicy{allowByDefault, frontendOnly}, other, "/shop.Cart/Add", false, "no Allow rule matches (Allow policies apply: shop/frontend-only)"},
		"an allow rule passes a deny default":         {[]*model.AuthorizationPolicy{denyByDefault, frontendOnly}, frontend, "/shop.Cart/Add", true, "Allow shop/frontend-only rules[0]"},
		"deny from staging":                           {[]*model.AuthorizationPolicy{noStaging}, staging, "/shop.Payments/Charge", false, "Deny shop/no-staging rules[0]"},
		"deny rule leaves others to the default":      {[]*model.AuthorizationPolicy{noStaging}, frontend, "/shop.Payments/Charge", true, "namespace default Allow"},
		"deny wins over allow":                        {[]*model.AuthorizationPolicy{frontendOnly, noStaging}, staging, "/shop.Cart/Add", false, "Deny shop/no-staging rules[0]"},
		"method allowed to anyone":                    {[]*model.AuthorizationPolicy{readsFromAnyone}, other, "/shop.Cart/Get", true, "Allow shop/reads rules[0]"},
		"method of an allowed service":                {[]*model.AuthorizationPolicy{readsFromAnyone}, other, "/shop.Catalog/List", true, "Allow shop/reads rules[0]"},
		"method not allowed":                          {[]*model.AuthorizationPolicy{readsFromAnyone}, other, "/shop.Cart/Add", false, "no Allow rule matches (Allow policies apply: shop/reads)"},
		"service prefix is not a method prefix":       {[]*model.AuthorizationPolicy{readsFromAnyone}, other, "/shop.CatalogAdmin/List", false, "no Allow rule matches (Allow policies apply: shop/reads)"},
		"second deny rule":                            {[]*model.AuthorizationPolicy{denyAdminFromBeta}, frontendBeta, "/shop.Admin/Drop", false, "Deny shop/no-admin rules[1]"},
		"first deny rule needs cluster and namespace": {[]*model.AuthorizationPolicy{denyAdminFromBeta}, frontend, "/shop.Admin/Reset", true, "namespace default Allow"},
		"deny rule for another method":                {[]*model.AuthorizationPolicy{denyAdminFromBeta}, frontendBeta, "/shop.Cart/Get", true, "namespace default Allow"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			allowed, rule := Decide(tc.policies, NamespaceDefault(tc.policies), tc.caller, tc.method)
			if allowed != tc.allowed || rule != tc.rule {
				t.Errorf("Decide(%v, %s) = %v, %q; want %v, %q", tc.caller, tc.method, allowed, rule, tc.allowed, tc.rule)
			}
		})
	}
	if allowed, rule := Decide(nil, "", Identity{}, "/a.B/C"); !allowed || rule != "namespace default Allow" {
		t.Errorf("Decide with no default = %v, %q", allowed, rule)
	}
}

func TestParseIdentity(t *testing.T) {
	id := trust.ServiceAccountID("meshfed.local", "alpha", "shop", "frontend")
	got, err := ParseIdentity(id, "meshfed.local")
	if err != nil || got != (Identity{"alpha", "shop", "frontend"}) {
		t.Fatalf("ParseIdentity(%s) = %v, %v", id, got, err)
	}
	for _, bad := range []string{
		trust.ServiceAccountID("other.domain", "alpha", "shop", "frontend"),
		"spiffe://meshfed.local/ns/shop/sa/frontend",        // no cluster
		"spiffe://a.b.meshfed.local/ns/shop/sa/frontend",    // a cluster with a dot
		"spiffe://alpha.meshfed.local/ns/shop/sa/",          // no service account
		"spiffe://alpha.meshfed.local/ns/shop/sa/x/y",       // extra segment
		"spiffe://alpha.meshfed.local/ns/shop/pod/frontend", // another shape
		"https://alpha.meshfed.local/ns/shop/sa/frontend",
	} {
		if got, err := ParseIdentity(bad, "meshfed.local"); err == nil {
			t.Errorf("ParseIdentity(%s) = %v, want an error", bad, got)
		} else if !strings.Contains(err.Error(), "spiffe://<cluster>.meshfed.local/ns/<namespace>/sa/<service-account>") {
			t.Errorf("error %q does not say what is expected", err)
		}
	}
}

func TestRoute(t *testing.T) {
	d := func(x time.Duration) metav1.Duration { return metav1.Duration{Duration: x} }
	retries := &model.Retries{Attempts: 3, On: []string{"Unavailable"}, BackoffBase: d(25 * time.Millisecond), BackoffMax: d(250 * time.Millisecond)}
	split := []model.WeightedSubset{{Subset: "", Weight: 95}, {Subset: "v2", Weight: 5}}
	abort := &model.Fault{Abort: &model.FaultAbort{PerMillion: 100_000, Code: "Unavailable"}}
	tp := &model.TrafficPolicy{Namespace: "shop", Name: "cart", GlobalService: "cart", LoadBalancer: model.LoadBalancer{Policy: "RoundRobin"},
		Subsets: []model.Subset{{Name: "v2", Clusters: []string{"beta"}, Labels: map[string]string{"version": "v2"}}},
		Routes: []model.Route{
			{Name: "tenant-acme", Methods: []string{"/shop.Cart/Get"}, Headers: []model.HeaderMatch{{Name: "x-tenant", Exact: ptr.To("acme")}}, Timeout: d(time.Second)},
			{Name: "debug", Headers: []model.HeaderMatch{{Name: "x-debug", Present: ptr.To(true)}, {Name: "x-user", Regex: ptr.To("[a-z]+-[0-9]+")}}, Fault: abort},
			{Name: "no-trace", Headers: []model.HeaderMatch{{Name: "x-trace", Present: ptr.To(false)}, {Name: "x-region", Prefix: ptr.To("eu-")}}},
			{Name: "reads", Methods: []string{"/shop.Cart/Get", "/shop.Cart/List"}, Timeout: d(100 * time.Millisecond), Retries: retries},
			{Name: "cart", Methods: []string{"/shop.Cart/*"}, Split: split},
		}}
	tests := map[string]struct {
		tp      *model.TrafficPolicy
		method  string
		headers map[string][]string
		want    Match
	}{
		"no policy":                  {nil, "/shop.Cart/Get", nil, Match{}},
		"exact header, first route":  {tp, "/shop.Cart/Get", map[string][]string{"x-tenant": {"acme"}}, Match{Route: "tenant-acme", Timeout: time.Second}},
		"exact header, other value":  {tp, "/shop.Cart/Get", map[string][]string{"x-tenant": {"acme2"}}, Match{Route: "reads", Timeout: 100 * time.Millisecond, Retries: retries}},
		"any of repeated values":     {tp, "/shop.Cart/Get", map[string][]string{"x-tenant": {"other", "acme"}}, Match{Route: "tenant-acme", Timeout: time.Second}},
		"regex matches in full":      {tp, "/a.B/C", map[string][]string{"x-debug": {""}, "x-user": {"ann-7"}}, Match{Route: "debug", Fault: abort}},
		"regex not anchored is full": {tp, "/a.B/C", map[string][]string{"x-debug": {""}, "x-user": {"ann-7x"}}, Match{}},
		"present needs the header":   {tp, "/a.B/C", map[string][]string{"x-user": {"ann-7"}}, Match{}},
		"absent and prefix":          {tp, "/a.B/C", map[string][]string{"x-region": {"eu-west"}}, Match{Route: "no-trace"}},
		"absent fails when present":  {tp, "/a.B/C", map[string][]string{"x-region": {"eu-west"}, "x-trace": {"1"}}, Match{}},
		"second method of a route":   {tp, "/shop.Cart/List", nil, Match{Route: "reads", Timeout: 100 * time.Millisecond, Retries: retries}},
		"service wildcard":           {tp, "/shop.Cart/Add", nil, Match{Route: "cart", Split: split}},
		"no route: defaults":         {tp, "/shop.Catalog/List", nil, Match{}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.want.Retries == nil { // every call has meshfed's failover retry
				tc.want.Retries = FailoverRetries()
			}
			if diff := cmp.Diff(tc.want, Route(tc.tp, tc.method, tc.headers)); diff != "" {
				t.Errorf("Route(%s, %v) (-want +got):\n%s", tc.method, tc.headers, diff)
			}
		})
	}
}

func TestSubsetOf(t *testing.T) {
	tp := &model.TrafficPolicy{Subsets: []model.Subset{
		{Name: "canary", Clusters: []string{"beta"}, Labels: map[string]string{"version": "v2"}},
		{Name: "v2", Labels: map[string]string{"version": "v2"}},
		{Name: "gamma", Clusters: []string{"gamma"}},
	}}
	for _, tc := range []struct {
		cluster string
		labels  map[string]string
		want    string
	}{
		{"beta", map[string]string{"version": "v2", "app": "cart"}, "canary"},
		{"alpha", map[string]string{"version": "v2"}, "v2"},
		{"gamma", map[string]string{"version": "v2"}, "v2"}, // the first subset it matches
		{"gamma", map[string]string{"version": "v1"}, "gamma"},
		{"beta", map[string]string{"version": "v1"}, ""},
		{"beta", nil, ""},
	} {
		if got := SubsetOf(tp, tc.cluster, tc.labels); got != tc.want {
			t.Errorf("SubsetOf(%s, %v) = %q, want %q", tc.cluster, tc.labels, got, tc.want)
		}
	}
	if got := SubsetOf(nil, "beta", nil); got != "" {
		t.Errorf("SubsetOf without a policy = %q", got)
	}
}

func TestMatchMethod(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		method   string
		want     bool
	}{
		{[]string{"/a.B/C"}, "/a.B/C", true},
		{[]string{"/a.B/C"}, "/a.B/CD", false},
		{[]string{"/a.B/*"}, "/a.B/C", true},
		{[]string{"/a.B/*"}, "/a.B/", false},
		{[]string{"/a.B/*"}, "/a.BC/D", false},
		{[]string{"/a.B/*"}, "/a.B/C/D", false},
		{nil, "/a.B/C", false},
	} {
		if got := MatchMethod(tc.patterns, tc.method); got != tc.want {
			t.Errorf("MatchMethod(%v, %s) = %v", tc.patterns, tc.method, got)
		}
	}
}
