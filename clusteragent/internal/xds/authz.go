package xds

import (
	"cmp"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/internal/policy"
	"github.com/meshfed/meshfed/trust"
)

// Authorization of the calls to this cluster's proxyless gRPC servers
// (AuthorizationPolicy, semantics in package policy): every server listener's HTTP
// connection manager holds two RBAC filters, DenyFilter then AllowFilter, both with
// empty (no-op) configs, and takes its routes over ADS from the route configuration
// InboundRouteName. That route configuration carries the real rules as RBACPerRoute
// overrides of the two filters on its one virtual host, so that a policy change is a
// route configuration update: grpc-go applies it to the next call on every existing
// connection, where a listener change would drain them all.
//
// A call passes when it matches no policy of the deny filter and some policy of the
// allow filter (an allow override absent: every call). For the global service g an
// address serves, this is policy.Decide:
//
//   - the deny filter (action DENY) holds every rule of g's Deny policies;
//   - if an Allow policy with rules applies to g, the allow filter (action ALLOW)
//     holds every rule of those policies; else if g's namespace default is Deny, the
//     allow filter has no policy (nothing passes); else there is no allow override.
//
// A rule is one RBAC policy, named as Decide names it ("Allow shop/cart-callers
// rules[0]"): its permissions are its methods (url_path; none: any), its principals
// its sources (authenticated.principal_name on the caller's cluster-bound SPIFFE ID;
// none: any caller).
//
// An address several global services share (their member Services select the same
// endpoint port) cannot tell which service a call is for: a call passes only if every
// one of them would let it pass (the strictest). The deny filter holds the Deny rules
// of all of them; the allow filter requires, for each service that restricts callers,
// one of its Allow rules (one RBAC policy "all of: ns/a, ns/b" whose principal is the
// conjunction), and has no policy when any of them denies by default.

// The RBAC filters of a server listener, in the order they run.
const (
	DenyFilter  = "rbac-deny"
	AllowFilter = "rbac-allow"
)

// InboundRouteName is the route configuration of the server listener on addr:port:
// where its authorization is.
func InboundRouteName(addr string, port uint32) string {
	return "inbound|" + strconv.FormatUint(uint64(port), 10) + "||" + addr
}

// inbound is what decides the calls to one server address: the global services it
// serves, sorted, each with the policies that apply to it.
type inbound []inboundService

type inboundService struct {
	Namespace, Name string
	// Policies apply to the service (view.AuthorizationPolicies), sorted by name.
	Policies []*model.AuthorizationPolicy
	// Default is its namespace's default (policy.NamespaceDefault).
	Default string
}

// inboundOf maps each of servers, the addresses of this cluster's (self) endpoints,
// to the global services among globals that serve it: those selecting a member
// Service of self whose endpoint serves one of their ports on that address. An
// address no global service selects is not in the map: no policy applies to it.
func inboundOf(self view.Cluster, globals []model.GlobalService, servers []serverAddr,
	policies func(namespace, globalService string) []*model.AuthorizationPolicy) map[serverAddr]inbound {
	known := make(map[serverAddr]bool, len(servers))
	for _, a := range servers {
		known[a] = true
	}
	seen := map[serverAddr]map[string]bool{}
	out := map[serverAddr]inbound{}
	for i := range globals {
		g := &globals[i]
		var ps []*model.AuthorizationPolicy
		for nn, s := range members(self, g) {
			if !model.Selects(g, self.Name, nn.Namespace, nn.Name, s.Labels) {
				continue
			}
			for _, gp := range g.Ports {
				sp, ok := model.MemberPort(s, gp)
				if !ok {
					continue
				}
				for _, e := range s.Endpoints {
					port, ok := model.PortOf(e, sp)
					a := serverAddr{Address: e.Address, Port: port}
					if !ok || !known[a] || seen[a][g.String()] {
						continue
					}
					if seen[a] == nil {
						seen[a] = map[string]bool{}
					}
					seen[a][g.String()] = true
					if ps == nil {
						ps = policies(g.Namespace, g.Name)
						if ps == nil {
							ps = []*model.AuthorizationPolicy{}
						}
					}
					out[a] = append(out[a], inboundService{Namespace: g.Namespace, Name: g.Name, Policies: ps,
						Default: policy.NamespaceDefault(ps)})
				}
			}
		}
	}
	for a, in := range out {
		slices.SortFunc(in, func(x, y inboundService) int {
			return cmp.Or(strings.Compare(x.Namespace, y.Namespace), strings.Compare(x.Name, y.Name))
		})
		out[a] = in
	}
	return out
}

// policyNames are the policies that shape in's authorization, "namespace/name",
// sorted and without duplicates: what a server route configuration was built from.
func (in inbound) policyNames() []string {
	var out []string
	for _, s := range in {
		for _, p := range s.Policies {
			out = append(out, p.Namespace+"/"+p.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// inboundResources are the server route configurations of a build, and what each
// was built from, by route name.
type inboundResources struct {
	from   map[string]inbound
	routes map[string]*resource
}

// inboundAuthz returns, for the server addresses, the inbound of each, for the
// addresses of this cluster's endpoints; nil without the cluster's records.
func (s *Server) inboundAuthz(globals []model.GlobalService, servers []serverAddr) map[serverAddr]inbound {
	c, ok := s.opts.View.Cluster(s.opts.Cluster)
	if !ok {
		return nil
	}
	return inboundOf(c, globals, servers, s.opts.View.AuthorizationPolicies)
}

// sameInbound reports whether prev's server route configurations were built from
// authz.
func (sh *sharedResources) sameInbound(servers []serverAddr, authz map[serverAddr]inbound) bool {
	if sh == nil || sh.authz == nil {
		return false
	}
	for _, a := range servers {
		if !reflect.DeepEqual(sh.authz.from[InboundRouteName(a.Address, a.Port)], authz[a]) {
			return false
		}
	}
	return true
}

// serverRoutes makes the route configuration of every server address, reusing
// prev's where it was built from the same inbound, and adds them to routes.
func (b *builder) serverRoutes(prev *sharedResources, servers []serverAddr, authz map[serverAddr]inbound, trustDomain string,
	routes *resources) (*inboundResources, []error) {
	out := &inboundResources{from: make(map[string]inbound, len(servers)), routes: make(map[string]*resource, len(servers))}
	var errs []error
	for _, a := range servers {
		name := InboundRouteName(a.Address, a.Port)
		in := authz[a]
		if prev != nil && prev.authz != nil {
			if r, ok := prev.authz.routes[name]; ok && reflect.DeepEqual(prev.authz.from[name], in) {
				out.from[name], out.routes[name] = in, r
				routes.byName[name] = r
				continue
			}
		}
		rc, err := inboundRoute(a.Address, a.Port, in, trustDomain)
		var r *resource
		if err == nil {
			r, err = b.make(rc)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.from[name], out.routes[name] = in, r
		routes.byName[name] = r
	}
	return out, errs
}

// authzPolicies are the policies ("namespace/name") that shaped the server route
// configuration name, nil if none did or it is not one.
func (sh *sharedResources) authzPolicies(name string) []string {
	if sh == nil || sh.authz == nil {
		return nil
	}
	return sh.authz.from[name].policyNames()
}

// rbacFilters are a server listener's RBAC filters, before its router: no-op
// configs, which its route configuration overrides.
func rbacFilters() []*hcmv3.HttpFilter {
	empty := mustAny(&rbachttpv3.RBAC{})
	return []*hcmv3.HttpFilter{
		{Name: DenyFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: empty}},
		{Name: AllowFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: empty}},
	}
}

// inboundRoute is the route configuration of the server listener on addr:port: every
// call goes to the server's own handlers (the non-forwarding action grpc-go requires
// on the server side), authorized by the RBAC overrides of in (see the top of this
// file) for callers of trustDomain ("" without mTLS: no caller has an identity).
func inboundRoute(addr string, port uint32, in inbound, trustDomain string) (*routev3.RouteConfiguration, error) {
	vh := &routev3.VirtualHost{
		Name:    "inbound",
		Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
		}},
	}
	deny, allow := Authorization(in.services(), trustDomain)
	for name, rules := range map[string]*rbacv3.RBAC{DenyFilter: deny, AllowFilter: allow} {
		if rules == nil {
			continue
		}
		override := &rbachttpv3.RBACPerRoute{Rbac: &rbachttpv3.RBAC{Rules: rules}}
		if err := override.ValidateAll(); err != nil {
			return nil, fmt.Errorf("%s: %s override fails validation: %w", InboundRouteName(addr, port), name, err)
		}
		if vh.TypedPerFilterConfig == nil {
			vh.TypedPerFilterConfig = map[string]*anypb.Any{}
		}
		vh.TypedPerFilterConfig[name] = mustAny(override)
	}
	return &routev3.RouteConfiguration{Name: InboundRouteName(addr, port), VirtualHosts: []*routev3.VirtualHost{vh}}, nil
}

// AuthorizedService is a global service a server address serves, with the
// authorization policies that apply to it (view.AuthorizationPolicies).
type AuthorizedService struct {
	Namespace, Name string
	Policies        []*model.AuthorizationPolicy
}

func (in inbound) services() []AuthorizedService {
	out := make([]AuthorizedService, 0, len(in))
	for _, s := range in {
		out = append(out, AuthorizedService{Namespace: s.Namespace, Name: s.Name, Policies: s.Policies})
	}
	return out
}

// Authorization translates the policies of the global services one server address
// serves into the rules of its deny and allow RBAC filters (see the top of this
// file); nil: no override, the filter lets every call pass. trustDomain is the
// mesh's ("": mTLS is off, no caller has an identity, so a rule naming callers
// matches no one).
func Authorization(services []AuthorizedService, trustDomain string) (deny, allow *rbacv3.RBAC) {
	if len(services) == 0 {
		return nil, nil
	}
	denyPolicies := map[string]*rbacv3.Policy{}
	var restricting []AuthorizedService // services with Allow rules
	denyAll := false
	for _, s := range services {
		hasAllow := false
		for _, p := range s.Policies {
			switch {
			case len(p.Rules) == 0:
			case p.Action == model.ActionDeny:
				for i, r := range p.Rules {
					denyPolicies[ruleName(p, i)] = rulePolicy(r, trustDomain)
				}
			case p.Action == model.ActionAllow:
				hasAllow = true
			}
		}
		switch {
		case hasAllow:
			restricting = append(restricting, s)
		case policy.NamespaceDefault(s.Policies) == model.ActionDeny:
			denyAll = true
		}
	}
	if len(denyPolicies) > 0 {
		deny = &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: denyPolicies}
	}
	switch {
	case denyAll:
		allow = &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW} // no policy: nothing passes
	case len(restricting) == 1:
		allow = &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{}}
		for _, p := range restricting[0].Policies {
			if p.Action == model.ActionAllow {
				for i, r := range p.Rules {
					allow.Policies[ruleName(p, i)] = rulePolicy(r, trustDomain)
				}
			}
		}
	case len(restricting) > 1:
		// Every restricting service must allow the call: one policy whose principal is
		// the conjunction, over the services, of the disjunction of their rules.
		names := make([]string, 0, len(restricting))
		all := make([]*rbacv3.Principal, 0, len(restricting))
		for _, s := range restricting {
			names = append(names, s.Namespace+"/"+s.Name)
			var any []*rbacv3.Principal
			for _, p := range s.Policies {
				if p.Action == model.ActionAllow {
					for _, r := range p.Rules {
						any = append(any, rulePrincipal(r, trustDomain))
					}
				}
			}
			all = append(all, orIDs(any))
		}
		allow = &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
			"all of: " + strings.Join(names, ", "): {
				Permissions: []*rbacv3.Permission{anyPermission()},
				Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: all}}}},
			}}}
	}
	return deny, allow
}

// ruleName names rule i of p as policy.Decide does.
func ruleName(p *model.AuthorizationPolicy, i int) string {
	return fmt.Sprintf("%s %s/%s rules[%d]", p.Action, p.Namespace, p.Name, i)
}

// rulePolicy is one rule: any of its methods (none: any) from any of its sources
// (none: anyone).
func rulePolicy(r model.AuthorizationRule, trustDomain string) *rbacv3.Policy {
	out := &rbacv3.Policy{}
	for _, m := range r.Methods {
		out.Permissions = append(out.Permissions, &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: methodMatcher(m)}})
	}
	if len(out.Permissions) == 0 {
		out.Permissions = []*rbacv3.Permission{anyPermission()}
	}
	for _, s := range r.From {
		out.Principals = append(out.Principals, sourcePrincipal(s, trustDomain))
	}
	if len(out.Principals) == 0 {
		out.Principals = []*rbacv3.Principal{anyPrincipal()}
	}
	return out
}

// rulePrincipal is one rule as a principal alone (principals may match the method
// too): its methods and its sources.
func rulePrincipal(r model.AuthorizationRule, trustDomain string) *rbacv3.Principal {
	var and []*rbacv3.Principal
	if len(r.Methods) > 0 {
		var methods []*rbacv3.Principal
		for _, m := range r.Methods {
			methods = append(methods, &rbacv3.Principal{Identifier: &rbacv3.Principal_UrlPath{UrlPath: methodMatcher(m)}})
		}
		and = append(and, orIDs(methods))
	}
	if len(r.From) > 0 {
		var from []*rbacv3.Principal
		for _, s := range r.From {
			from = append(from, sourcePrincipal(s, trustDomain))
		}
		and = append(and, orIDs(from))
	}
	switch len(and) {
	case 0:
		return anyPrincipal()
	case 1:
		return and[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: and}}}
}

// methodMatcher matches a method pattern (policy.MatchMethod): "/pkg.Svc/Method"
// exactly, "/pkg.Svc/*" as every method of the service (one more path segment).
func methodMatcher(pattern string) *matcherv3.PathMatcher {
	m := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: pattern}}
	if service, ok := strings.CutSuffix(pattern, "/*"); ok {
		m.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{
			Regex: regexp.QuoteMeta(service+"/") + "[^/]+"}}
	}
	return &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: m}}
}

// maxExactIDs bounds the exact SPIFFE IDs one source expands to; beyond, a regex.
const maxExactIDs = 16

// sourcePrincipal matches the callers a source names by their SPIFFE ID: exactly
// when it names clusters, namespaces and service accounts (at most maxExactIDs
// combinations), else by an RE2 expression (grpc-go anchors it) in which a field the
// source leaves empty matches any value, so that any cluster is any cluster of the
// mesh's trust domain, never another trust domain. Without mTLS it matches no one.
func sourcePrincipal(s model.AuthorizationSource, trustDomain string) *rbacv3.Principal {
	if trustDomain == "" {
		return nobody()
	}
	if n := len(s.Clusters) * len(s.Namespaces) * len(s.ServiceAccounts); n > 0 && n <= maxExactIDs {
		var ids []*rbacv3.Principal
		for _, c := range s.Clusters {
			for _, ns := range s.Namespaces {
				for _, sa := range s.ServiceAccounts {
					ids = append(ids, authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{
						Exact: trust.ServiceAccountID(trustDomain, c, ns, sa)}}))
				}
			}
		}
		return orIDs(ids)
	}
	one := func(values []string, anyValue string) string {
		switch len(values) {
		case 0:
			return anyValue
		case 1:
			return regexp.QuoteMeta(values[0])
		}
		quoted := make([]string, len(values))
		for i, v := range values {
			quoted[i] = regexp.QuoteMeta(v)
		}
		return "(?:" + strings.Join(quoted, "|") + ")"
	}
	// The shape of policy.ParseIdentity: a cluster has no dot, no part a slash.
	re := "spiffe://" + one(s.Clusters, `[^./]+`) + regexp.QuoteMeta("."+trustDomain) +
		"/ns/" + one(s.Namespaces, `[^/]+`) + "/sa/" + one(s.ServiceAccounts, `[^/]+`)
	return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
		SafeRegex: &matcherv3.RegexMatcher{Regex: re}}})
}

func authenticated(name *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: name}}}
}

func orIDs(ids []*rbacv3.Principal) *rbacv3.Principal {
	if len(ids) == 1 {
		return ids[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ids}}}
}

func anyPrincipal() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

// nobody is a principal no caller matches.
func nobody() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: anyPrincipal()}}
}

func anyPermission() *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
}
