package xds_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/policy"
)

// The RBAC that xds.Authorization generates must decide every call as policy.Decide
// does. grpc-go's RBAC engine is internal to its module, so rbacAllows below
// evaluates the generated rules as grpc-go does (internal/xds/rbac: policies OR'd, a
// policy = any permission AND any principal; ALLOW denies unless one matches, DENY
// denies if one matches; authenticated principals only on TLS, on the URI SAN;
// safe_regex anchored), for exactly the rule types meshfed generates: anything else
// fails the test.

var (
	gridFrontendOnly = &model.AuthorizationPolicy{Namespace: "shop", Name: "frontend-only", GlobalService: "cart", Action: model.ActionAllow,
		Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Namespaces: []string{"shop"}, ServiceAccounts: []string{"frontend"}}}}}}
	gridFromTwoClusters = &model.AuthorizationPolicy{Namespace: "shop", Name: "two-clusters", GlobalService: "cart", Action: model.ActionAllow,
		Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{
			{Clusters: []string{"alpha", "beta"}, Namespaces: []string{"shop", "web"}, ServiceAccounts: []string{"frontend", "front.end"}}},
			Methods: []string{"/shop.Cart/Add", "/shop.Catalog/*"}}}}
	gridNoStaging = &model.AuthorizationPolicy{Namespace: "shop", Name: "no-staging", Action: model.ActionDeny,
		Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Clusters: []string{"staging"}}}}}}
	gridReads = &model.AuthorizationPolicy{Namespace: "shop", Name: "reads", GlobalService: "cart", Action: model.ActionAllow,
		Rules: []model.AuthorizationRule{{Methods: []string{"/shop.Cart/Get", "/shop.Catalog/*"}}}}
	gridNoAdmin = &model.AuthorizationPolicy{Namespace: "shop", Name: "no-admin", Action: model.ActionDeny,
		Rules: []model.AuthorizationRule{
			{From: []model.AuthorizationSource{{Clusters: []string{"alpha"}, Namespaces: []string{"ops"}}}, Methods: []string{"/shop.Admin/Reset"}},
			{From: []model.AuthorizationSource{{Clusters: []string{"beta"}}}, Methods: []string{"/shop.Admin/*"}},
		}}
	gridDenyEveryone = &model.AuthorizationPolicy{Namespace: "shop", Name: "closed", GlobalService: "cart", Action: model.ActionDeny,
		Rules: []model.AuthorizationRule{{Methods: []string{"/shop.Cart/Add"}}}}
	gridOpsAnywhere = &model.AuthorizationPolicy{Namespace: "shop", Name: "ops", Action: model.ActionAllow,
		Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Namespaces: []string{"ops"}}}}}}
	gridDenyDefault  = &model.AuthorizationPolicy{Namespace: "shop", Name: "posture", DefaultAction: model.ActionDeny}
	gridAllowDefault = &model.AuthorizationPolicy{Namespace: "shop", Name: "open", DefaultAction: model.ActionAllow}

	gridPolicies = []*model.AuthorizationPolicy{gridFrontendOnly, gridFromTwoClusters, gridNoStaging, gridReads, gridNoAdmin,
		gridDenyEveryone, gridOpsAnywhere, gridDenyDefault, gridAllowDefault}

	// gridCallers are SPIFFE IDs ("" for a plaintext caller): workload identities of
	// the mesh, and look-alikes that are not.
	gridCallers = []string{
		"spiffe://alpha.meshfed.local/ns/shop/sa/frontend",
		"spiffe://beta.meshfed.local/ns/shop/sa/frontend",
		"spiffe://staging.meshfed.local/ns/shop/sa/frontend",
		"spiffe://alpha.meshfed.local/ns/shop/sa/checkout",
		"spiffe://alpha.meshfed.local/ns/web/sa/frontend",
		"spiffe://beta.meshfed.local/ns/web/sa/front.end",
		"spiffe://beta.meshfed.local/ns/web/sa/frontXend",
		"spiffe://alpha.meshfed.local/ns/ops/sa/admin",
		"spiffe://beta.meshfed.local/ns/ops/sa/admin",
		"spiffe://alpha.other.local/ns/shop/sa/frontend",
		"spiffe://alpha.meshfed.localx/ns/shop/sa/frontend",
		"spiffe://a.b.meshfed.local/ns/shop/sa/frontend",
		"spiffe://meshfed.local/ns/shop/sa/frontend",
		"spiffe://alpha.meshfed.local/ns/shop/sa/frontend/x",
		"",
	}
	gridMethods = []string{"/shop.Cart/Get", "/shop.Cart/Add", "/shop.Catalog/List", "/shopXCatalog/List", "/shop.Catalog/",
		"/shop.Catalog/a/b", "/shop.Admin/Reset", "/shop.Admin/Other", "/grpc.health.v1.Health/Check"}
)

// TestAuthorizationAgreesWithDecide: over every set of at most two of gridPolicies
// for one global service, and pairs of such sets for two services sharing one
// server address, with mTLS and without, every caller × method is decided by the
// generated deny and allow filters as policy.Decide decides it (for a shared address:
// allowed only if Decide allows it for every service).
func TestAuthorizationAgreesWithDecide(t *testing.T) {
	var sets [][]*model.AuthorizationPolicy
	sets = append(sets, nil)
	for i, p := range gridPolicies {
		sets = append(sets, []*model.AuthorizationPolicy{p})
		for _, q := range gridPolicies[i+1:] {
			sets = append(sets, []*model.AuthorizationPolicy{p, q})
		}
	}
	type address struct {
		name     string
		services [][]*model.AuthorizationPolicy
	}
	var addresses []address
	for i, s := range sets {
		addresses = append(addresses, address{fmt.Sprint("one service, set ", i), [][]*model.AuthorizationPolicy{s}})
	}
	for i, s := range sets[:len(gridPolicies)+1] { // every single policy, with every set
		for j, u := range sets {
			addresses = append(addresses, address{fmt.Sprintf("shared, sets %d and %d", i, j), [][]*model.AuthorizationPolicy{s, u}})
		}
	}
	checked := 0
	for _, td := range []string{testTrustDomain, ""} {
		for _, a := range addresses {
			services := make([]xds.AuthorizedService, len(a.services))
			for i, ps := range a.services {
				services[i] = xds.AuthorizedService{Namespace: "shop", Name: fmt.Sprint("svc", i), Policies: ps}
			}
			deny, allow := xds.Authorization(services, td)
			for _, caller := range gridCallers {
				for _, method := range gridMethods {
					want := true
					for _, ps := range a.services {
						ok, _ := policy.Decide(ps, policy.NamespaceDefault(ps), identityOf(caller, td), method)
						want = want && ok
					}
					peer := caller
					if td == "" {
						peer = "" // without mTLS no caller has a certificate
					}
					got := rbacAllows(t, deny, peer, method) && rbacAllows(t, allow, peer, method)
					if got != want {
						t.Fatalf("%s (trust domain %q), policies %s: %q calling %s: RBAC allows %v, Decide %v\ndeny: %v\nallow: %v",
							a.name, td, names(a.services), caller, method, got, want, deny, allow)
					}
					checked++
				}
			}
		}
	}
	t.Logf("%d decisions agree", checked)
}

// identityOf is the identity Decide sees: the parsed SPIFFE ID, or for a caller
// without a workload identity of td one that no source matches.
func identityOf(spiffeID, td string) policy.Identity {
	if td == "" || spiffeID == "" {
		return policy.Identity{}
	}
	id, err := policy.ParseIdentity(spiffeID, td)
	if err != nil {
		return policy.Identity{}
	}
	return id
}

func names(services [][]*model.AuthorizationPolicy) string {
	var out []string
	for _, ps := range services {
		var n []string
		for _, p := range ps {
			n = append(n, p.Name)
		}
		out = append(out, "["+strings.Join(n, " ")+"]")
	}
	return strings.Join(out, " ")
}

// rbacAllows decides a call as grpc-go's RBAC engine does with rules (nil: no
// override, the filter's base is a no-op). peer is the caller's URI SAN, "" for a
// plaintext caller.
func rbacAllows(t *testing.T, rules *rbacv3.RBAC, peer, method string) bool {
	if rules == nil {
		return true
	}
	matched := false
	for _, p := range rules.GetPolicies() {
		if matchesAny(p.GetPermissions(), func(x *rbacv3.Permission) bool { return permissionMatches(t, x, method) }) &&
			matchesAny(p.GetPrincipals(), func(x *rbacv3.Principal) bool { return principalMatches(t, x, peer, method) }) {
			matched = true
		}
	}
	switch rules.GetAction() {
	case rbacv3.RBAC_ALLOW:
		return matched
	case rbacv3.RBAC_DENY:
		return !matched
	}
	t.Fatalf("unexpected action %v", rules.GetAction())
	return false
}

func matchesAny[T any](xs []T, f func(T) bool) bool {
	for _, x := range xs {
		if f(x) {
			return true
		}
	}
	return false
}

func permissionMatches(t *testing.T, p *rbacv3.Permission, method string) bool {
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		return r.Any
	case *rbacv3.Permission_UrlPath:
		return stringMatches(t, r.UrlPath.GetPath(), method)
	}
	t.Fatalf("meshfed generated a permission the test does not know: %T", p.GetRule())
	return false
}

func principalMatches(t *testing.T, p *rbacv3.Principal, peer, method string) bool {
	switch id := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		return id.Any
	case *rbacv3.Principal_AndIds:
		for _, x := range id.AndIds.GetIds() {
			if !principalMatches(t, x, peer, method) {
				return false
			}
		}
		return true
	case *rbacv3.Principal_OrIds:
		return matchesAny(id.OrIds.GetIds(), func(x *rbacv3.Principal) bool { return principalMatches(t, x, peer, method) })
	case *rbacv3.Principal_NotId:
		return !principalMatches(t, id.NotId, peer, method)
	case *rbacv3.Principal_UrlPath:
		return stringMatches(t, id.UrlPath.GetPath(), method)
	case *rbacv3.Principal_Authenticated_:
		if peer == "" {
			return false // no TLS: no authenticated principal matches
		}
		return id.Authenticated.GetPrincipalName() == nil || stringMatches(t, id.Authenticated.GetPrincipalName(), peer)
	}
	t.Fatalf("meshfed generated a principal the test does not know: %T", p.GetIdentifier())
	return false
}

var compiled = map[string]*regexp.Regexp{}

func stringMatches(t *testing.T, m *matcherv3.StringMatcher, s string) bool {
	if m.GetIgnoreCase() {
		t.Fatal("meshfed generated an ignore_case matcher")
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return s == p.Exact
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(s, p.Prefix)
	case *matcherv3.StringMatcher_SafeRegex:
		re, ok := compiled[p.SafeRegex.GetRegex()]
		if !ok {
			re = regexp.MustCompile("^(?:" + p.SafeRegex.GetRegex() + ")$") // as grpc-go anchors it
			compiled[p.SafeRegex.GetRegex()] = re
		}
		return re.MatchString(s)
	}
	t.Fatalf("meshfed generated a string matcher the test does not know: %T", m.GetMatchPattern())
	return false
}
