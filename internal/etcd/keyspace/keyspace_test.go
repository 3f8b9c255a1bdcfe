package keyspace

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRoundTrip(t *testing.T) {
	tests := map[string]Key{
		"cluster info":              {Kind: KindClusterInfo, Cluster: "east-1"},
		"cluster heartbeat":         {Kind: KindClusterHeartbeat, Cluster: "east-1"},
		"cluster synced":            {Kind: KindClusterSynced, Cluster: "e"},
		"service endpoints":         {Kind: KindServiceEndpoints, Cluster: "west", Namespace: "shop", Name: "cart"},
		"service name with dots":    {Kind: KindServiceEndpoints, Cluster: "west", Namespace: "shop", Name: "cart.v2"},
		"service named like a kind": {Kind: KindServiceEndpoints, Cluster: "info", Namespace: "services", Name: "synced"},
		"global service":            {Kind: KindGlobalService, Namespace: "shop", Name: "cart"},
		"policy":                    {Kind: KindPolicy, Namespace: "shop", Name: "cart-failover"},
		"traffic policy":            {Kind: KindTrafficPolicy, Namespace: "shop", Name: "cart"},
		"authorization policy":      {Kind: KindAuthorizationPolicy, Namespace: "shop", Name: "frontend-only"},
		"trust bundle":              {Kind: KindTrustBundle},
		"longest label":             {Kind: KindClusterInfo, Cluster: strings.Repeat("a", 63)},
		"longest subdomain name":    {Kind: KindGlobalService, Namespace: "ns", Name: strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)},
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			key := want.String()
			got, err := Parse(key)
			if err != nil {
				t.Fatalf("Parse(%q): %v", key, err)
			}
			if got != want {
				t.Fatalf("Parse(%q) = %+v, want %+v", key, got, want)
			}
			if again := got.String(); again != key {
				t.Fatalf("String() after Parse = %q, want %q", again, key)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := map[string]struct {
		key         string
		invalidName bool // the error must also wrap ErrInvalidName
	}{
		"empty":                      {key: ""},
		"root only":                  {key: Root},
		"no leading slash":           {key: "meshfed/v1/trust/bundle"},
		"other version":              {key: "/meshfed/v2/trust/bundle"},
		"foreign":                    {key: "/registry/pods/default/x"},
		"prefix only":                {key: ClustersPrefix()},
		"cluster prefix only":        {key: ClusterPrefix("a")},
		"services prefix only":       {key: ClusterServices("a")},
		"unknown cluster entry":      {key: Root + "clusters/a/status"},
		"trailing slash":             {key: ClusterInfo("a") + "/"},
		"extra segment":              {key: ServiceEndpoints("a", "ns", "n") + "/x"},
		"missing name":               {key: Root + "clusters/a/services/ns"},
		"empty cluster":              {key: Root + "clusters//info", invalidName: true},
		"empty namespace":            {key: Root + "global/services//n", invalidName: true},
		"empty name":                 {key: Root + "global/policies/ns/", invalidName: true},
		"double slash":               {key: Root + "clusters/a/services/ns//n"},
		"upper-case cluster":         {key: Root + "clusters/East/info", invalidName: true},
		"dotted cluster":             {key: Root + "clusters/a.b/heartbeat", invalidName: true},
		"dotted namespace":           {key: Root + "clusters/a/services/n.s/x", invalidName: true},
		"underscore name":            {key: Root + "global/services/ns/a_b", invalidName: true},
		"cluster too long":           {key: Root + "clusters/" + strings.Repeat("a", 64) + "/info", invalidName: true},
		"trust with extra":           {key: Root + "trust/bundle/x"},
		"trust other":                {key: Root + "trust/roots"},
		"global unknown":             {key: Root + "global/gateways/ns/n"},
		"root prefix without slash":  {key: "/meshfed/v1"},
		"look-alike root":            {key: "/meshfed/v10/trust/bundle"},
		"synced marker with service": {key: Root + "clusters/a/synced/x"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Parse(tc.key)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want error", tc.key, got)
			}
			if !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrUnknownKey", tc.key, err)
			}
			if !strings.HasPrefix(err.Error(), "keyspace: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			if tc.invalidName != errors.Is(err, ErrInvalidName) {
				t.Fatalf("Parse(%q) error %v: wraps ErrInvalidName = %v, want %v", tc.key, err, !tc.invalidName, tc.invalidName)
			}
			if got != (Key{}) {
				t.Fatalf("Parse(%q) returned non-zero key %+v with an error", tc.key, got)
			}
		})
	}
}

func TestBuildersPanicOnInvalidNames(t *testing.T) {
	tests := map[string]func(){
		"empty cluster":         func() { ClusterPrefix("") },
		"cluster with slash":    func() { ClusterInfo("a/b") },
		"cluster with dot":      func() { ClusterHeartbeat("a.b") },
		"upper-case cluster":    func() { ClusterSynced("A") },
		"empty namespace":       func() { ServiceEndpoints("a", "", "n") },
		"namespace with slash":  func() { GlobalService("a/b", "n") },
		"empty name":            func() { Policy("ns", "") },
		"name with slash":       func() { ServiceEndpoints("a", "ns", "x/y") },
		"name with dot-dot":     func() { Policy("ns", "..") },
		"key of unknown kind":   func() { _ = Key{}.String() },
		"key with invalid name": func() { _ = Key{Kind: KindGlobalService, Namespace: "ns"}.String() },
	}
	for name, build := range tests {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("builder did not panic")
				}
			}()
			build()
		})
	}
}

func TestValidateErrors(t *testing.T) {
	for name, err := range map[string]error{
		"cluster":   ValidateCluster("A"),
		"namespace": ValidateNamespace("a.b"),
		"name":      ValidateName("a/b"),
	} {
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("%s: error %v does not wrap ErrInvalidName", name, err)
		}
	}
	for name, err := range map[string]error{
		"cluster":   ValidateCluster("east-1"),
		"namespace": ValidateNamespace("kube-system"),
		"name":      ValidateName("cart.v2"),
	} {
		if err != nil {
			t.Errorf("%s: unexpected error %v", name, err)
		}
	}
}

// Every key lies under its prefixes, and a prefix never matches the keys of a
// cluster whose name merely extends another's.
func TestPrefixes(t *testing.T) {
	under := map[string][]string{
		ClusterInfo("a"):                 {ClustersPrefix(), ClusterPrefix("a")},
		ClusterHeartbeat("a"):            {ClustersPrefix(), ClusterPrefix("a")},
		ClusterSynced("a"):               {ClustersPrefix(), ClusterPrefix("a")},
		ServiceEndpoints("a", "ns", "n"): {ClustersPrefix(), ClusterPrefix("a"), ClusterServices("a")},
		GlobalService("ns", "n"):         {Root, GlobalServicesPrefix()},
		Policy("ns", "n"):                {Root, PoliciesPrefix()},
		TrafficPolicy("ns", "n"):         {Root, TrafficPoliciesPrefix()},
		AuthorizationPolicy("ns", "n"):   {Root, AuthorizationPoliciesPrefix()},
		TrustBundle():                    {Root},
	}
	for key, prefixes := range under {
		for _, p := range prefixes {
			if !strings.HasPrefix(key, p) {
				t.Errorf("key %q is not under prefix %q", key, p)
			}
		}
	}
	if strings.HasPrefix(ClusterInfo("ab"), ClusterPrefix("a")) {
		t.Error("ClusterPrefix(a) matches keys of cluster ab")
	}
	if strings.HasPrefix(GlobalService("ns", "n"), PoliciesPrefix()) || strings.HasPrefix(Policy("ns", "n"), GlobalServicesPrefix()) {
		t.Error("global services and policies prefixes overlap")
	}
	for _, p := range []string{Root, ClustersPrefix(), ClusterPrefix("a"), ClusterServices("a"), GlobalServicesPrefix(), PoliciesPrefix(), TrafficPoliciesPrefix(), AuthorizationPoliciesPrefix()} {
		if !strings.HasSuffix(p, "/") {
			t.Errorf("prefix %q does not end in '/'", p)
		}
	}
}

func TestKindString(t *testing.T) {
	if got := KindServiceEndpoints.String(); got != "ServiceEndpoints" {
		t.Fatalf("got %q", got)
	}
	if got := Kind(99).String(); got != "Kind(99)" {
		t.Fatalf("got %q", got)
	}
}
