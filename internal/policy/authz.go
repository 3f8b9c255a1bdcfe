package policy

import (
	"fmt"
	"slices"
	"strings"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// Identity is a caller's workload identity, the parts of its SPIFFE ID
// spiffe://<cluster>.<trust-domain>/ns/<namespace>/sa/<service-account>
// (trust.ServiceAccountID).
type Identity struct {
	Cluster, Namespace, ServiceAccount string
}

func (id Identity) String() string { return id.Cluster + "/" + id.Namespace + "/" + id.ServiceAccount }

// ParseIdentity reads a SPIFFE ID of trustDomain's mesh: the inverse of
// trust.ServiceAccountID. An ID of another trust domain, or of another shape, is an
// error: such a caller matches no rule.
func ParseIdentity(spiffeID, trustDomain string) (Identity, error) {
	rest, ok := strings.CutPrefix(spiffeID, "spiffe://")
	host, path, _ := strings.Cut(rest, "/")
	cluster, inDomain := strings.CutSuffix(host, "."+trustDomain)
	p := strings.Split(path, "/")
	if !ok || !inDomain || cluster == "" || strings.Contains(cluster, ".") || len(p) != 4 || p[0] != "ns" || p[2] != "sa" || p[1] == "" || p[3] == "" {
		return Identity{}, fmt.Errorf("%q is not a workload identity of trust domain %s: want spiffe://<cluster>.%s/ns/<namespace>/sa/<service-account>",
			spiffeID, trustDomain, trustDomain)
	}
	return Identity{Cluster: cluster, Namespace: p[1], ServiceAccount: p[3]}, nil
}

// NamespaceDefault is the default action of a namespace given its policies (any that
// are not namespace-wide are ignored): Deny if any says defaultAction Deny, else
// Allow (v1alpha1.DefaultNamespaceAction).
func NamespaceDefault(policies []*model.AuthorizationPolicy) string {
	for _, p := range policies {
		if p.GlobalService == "" && p.DefaultAction == model.ActionDeny {
			return model.ActionDeny
		}
	}
	return string(v1.DefaultNamespaceAction)
}

// Decide says whether caller may call method (a full gRPC method name,
// "/pkg.Service/Method") of a global service that policies apply to (see the package
// doc), given its namespace's default ("" for the default's default), and names
// what decided: a rule ("Deny shop/no-staging rules[0]") or the default.
func Decide(policies []*model.AuthorizationPolicy, namespaceDefault string, caller Identity, method string) (allowed bool, rule string) {
	for _, p := range policies {
		if p.Action != model.ActionDeny {
			continue
		}
		if i := matchingRule(p, caller, method); i >= 0 {
			return false, fmt.Sprintf("Deny %s/%s rules[%d]", p.Namespace, p.Name, i)
		}
	}
	var allows []string
	for _, p := range policies {
		if p.Action != model.ActionAllow || len(p.Rules) == 0 {
			continue
		}
		if i := matchingRule(p, caller, method); i >= 0 {
			return true, fmt.Sprintf("Allow %s/%s rules[%d]", p.Namespace, p.Name, i)
		}
		allows = append(allows, p.Namespace+"/"+p.Name)
	}
	if len(allows) > 0 {
		return false, "no Allow rule matches (Allow policies apply: " + strings.Join(allows, ", ") + ")"
	}
	if namespaceDefault == "" {
		namespaceDefault = string(v1.DefaultNamespaceAction)
	}
	return namespaceDefault == model.ActionAllow, "namespace default " + namespaceDefault
}

// matchingRule is the index of p's first rule that matches, -1 if none.
func matchingRule(p *model.AuthorizationPolicy, caller Identity, method string) int {
	for i, r := range p.Rules {
		if (len(r.Methods) == 0 || MatchMethod(r.Methods, method)) &&
			(len(r.From) == 0 || slices.ContainsFunc(r.From, func(s model.AuthorizationSource) bool { return sourceMatches(s, caller) })) {
			return i
		}
	}
	return -1
}

func sourceMatches(s model.AuthorizationSource, caller Identity) bool {
	in := func(values []string, v string) bool { return len(values) == 0 || slices.Contains(values, v) }
	return in(s.Clusters, caller.Cluster) && in(s.Namespaces, caller.Namespace) && in(s.ServiceAccounts, caller.ServiceAccount)
}

// MatchMethod reports whether method ("/pkg.Service/Method") matches one of patterns:
// "/pkg.Service/Method" exactly, "/pkg.Service/*" any method of the service.
func MatchMethod(patterns []string, method string) bool {
	for _, p := range patterns {
		if service, ok := strings.CutSuffix(p, "/*"); ok {
			if m, ok := strings.CutPrefix(method, service+"/"); ok && m != "" && !strings.Contains(m, "/") {
				return true
			}
		} else if p == method {
			return true
		}
	}
	return false
}
