package keyspace

import "testing"

// TestGoldenKeys pins the exact key strings. The layout is a versioned API read
// by other releases of the hub and agents and granted by etcd roles: if this
// test fails, do not update the strings here. Add a new version root instead
// and migrate (see docs/keyspace.md).
func TestGoldenKeys(t *testing.T) {
	golden := map[string]string{
		"root":                   "/meshfed/v1/",
		"clusters prefix":        "/meshfed/v1/clusters/",
		"cluster prefix":         "/meshfed/v1/clusters/east-1/",
		"cluster info":           "/meshfed/v1/clusters/east-1/info",
		"cluster heartbeat":      "/meshfed/v1/clusters/east-1/heartbeat",
		"cluster synced":         "/meshfed/v1/clusters/east-1/synced",
		"cluster services":       "/meshfed/v1/clusters/east-1/services/",
		"service endpoints":      "/meshfed/v1/clusters/east-1/services/shop/cart",
		"global services prefix": "/meshfed/v1/global/services/",
		"global service":         "/meshfed/v1/global/services/shop/cart",
		"policies prefix":        "/meshfed/v1/global/policies/",
		"policy":                 "/meshfed/v1/global/policies/shop/cart-failover",
		"traffic prefix":         "/meshfed/v1/global/traffic/",
		"traffic policy":         "/meshfed/v1/global/traffic/shop/cart",
		"authz prefix":           "/meshfed/v1/global/authz/",
		"authz policy":           "/meshfed/v1/global/authz/shop/frontend-only",
		"trust bundle":           "/meshfed/v1/trust/bundle",
		"hub ready":              "/meshfed/v1/hub/ready",
		"intermediate csr":       "/meshfed/v1/clusters/east-1/intermediate-csr",
		"intermediate":           "/meshfed/v1/clusters/east-1/intermediate",
		"etcd csr":               "/meshfed/v1/clusters/east-1/etcd-csr",
		"programmed":             "/meshfed/v1/clusters/east-1/programmed",
		"etcd cert":              "/meshfed/v1/clusters/east-1/etcd-cert",
	}
	built := map[string]string{
		"root":                   Root,
		"clusters prefix":        ClustersPrefix(),
		"cluster prefix":         ClusterPrefix("east-1"),
		"cluster info":           ClusterInfo("east-1"),
		"cluster heartbeat":      ClusterHeartbeat("east-1"),
		"cluster synced":         ClusterSynced("east-1"),
		"cluster services":       ClusterServices("east-1"),
		"service endpoints":      ServiceEndpoints("east-1", "shop", "cart"),
		"global services prefix": GlobalServicesPrefix(),
		"global service":         GlobalService("shop", "cart"),
		"policies prefix":        PoliciesPrefix(),
		"policy":                 Policy("shop", "cart-failover"),
		"traffic prefix":         TrafficPoliciesPrefix(),
		"traffic policy":         TrafficPolicy("shop", "cart"),
		"authz prefix":           AuthorizationPoliciesPrefix(),
		"authz policy":           AuthorizationPolicy("shop", "frontend-only"),
		"trust bundle":           TrustBundle(),
		"hub ready":              HubReady(),
		"intermediate csr":       ClusterIntermediateCSR("east-1"),
		"intermediate":           ClusterIntermediate("east-1"),
		"etcd csr":               ClusterEtcdCSR("east-1"),
		"programmed":             ClusterProgrammed("east-1"),
		"etcd cert":              ClusterEtcdCert("east-1"),
	}
	if len(built) != len(golden) {
		t.Fatalf("golden table has %d entries, built table %d", len(golden), len(built))
	}
	for name, want := range golden {
		if got := built[name]; got != want {
			t.Errorf("%s: built %q, golden %q", name, got, want)
		}
	}

	// The parsed form of each key is part of the contract too.
	parsed := map[string]Key{
		"/meshfed/v1/clusters/east-1/info":               {Kind: KindClusterInfo, Cluster: "east-1"},
		"/meshfed/v1/clusters/east-1/heartbeat":          {Kind: KindClusterHeartbeat, Cluster: "east-1"},
		"/meshfed/v1/clusters/east-1/synced":             {Kind: KindClusterSynced, Cluster: "east-1"},
		"/meshfed/v1/clusters/east-1/services/shop/cart": {Kind: KindServiceEndpoints, Cluster: "east-1", Namespace: "shop", Name: "cart"},
		"/meshfed/v1/global/services/shop/cart":          {Kind: KindGlobalService, Namespace: "shop", Name: "cart"},
		"/meshfed/v1/global/policies/shop/cart-failover": {Kind: KindPolicy, Namespace: "shop", Name: "cart-failover"},
		"/meshfed/v1/global/traffic/shop/cart":           {Kind: KindTrafficPolicy, Namespace: "shop", Name: "cart"},
		"/meshfed/v1/global/authz/shop/frontend-only":    {Kind: KindAuthorizationPolicy, Namespace: "shop", Name: "frontend-only"},
		"/meshfed/v1/trust/bundle":                       {Kind: KindTrustBundle},
		"/meshfed/v1/hub/ready":                          {Kind: KindHubReady},
		"/meshfed/v1/clusters/east-1/intermediate-csr":   {Kind: KindIntermediateCSR, Cluster: "east-1"},
		"/meshfed/v1/clusters/east-1/intermediate":       {Kind: KindIntermediate, Cluster: "east-1"},
		"/meshfed/v1/clusters/east-1/etcd-csr":           {Kind: KindEtcdCSR, Cluster: "east-1"},
		"/meshfed/v1/clusters/east-1/programmed":         {Kind: KindProgrammed, Cluster: "east-1"},
		"/meshfed/v1/clusters/east-1/etcd-cert":          {Kind: KindEtcdCert, Cluster: "east-1"},
	}
	for key, want := range parsed {
		got, err := Parse(key)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", key, got, err, want)
		}
	}
}
