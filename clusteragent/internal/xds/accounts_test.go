package xds_test

import (
	"context"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

func TestAccountsOf(t *testing.T) {
	info := func(name string) *model.ClusterInfo { return &model.ClusterInfo{Name: name, Region: "r"} }
	rec := func(ns, name string, labels map[string]string, accounts ...string) *model.ServiceEndpoints {
		return &model.ServiceEndpoints{Namespace: ns, Name: name, Labels: labels, ServiceAccounts: accounts}
	}
	nn := func(ns, name string) view.NamespacedName { return view.NamespacedName{Namespace: ns, Name: name} }
	clusters := []view.Cluster{
		{Name: "alpha", Info: info("alpha"), Services: map[view.NamespacedName]*model.ServiceEndpoints{
			nn("shop", "cart"): rec("shop", "cart", nil, "cart", "cart-canary", "cart"),
			nn("shop", "web"):  rec("shop", "web", map[string]string{"tier": "web"}, "web"),
		}},
		{Name: "beta", Info: info("beta"), Services: map[view.NamespacedName]*model.ServiceEndpoints{
			nn("shop", "cart"): rec("shop", "cart", nil), // names none: default
			nn("shop", "web"):  rec("shop", "web", map[string]string{"tier": "web"}, "Not/A-Name", "web"),
		}},
		// Not registered (or unregistered): whatever it published serves nothing.
		{Name: "gamma", Services: map[view.NamespacedName]*model.ServiceEndpoints{
			nn("shop", "cart"): rec("shop", "cart", nil, "cart"),
		}},
	}
	named := &model.GlobalService{Namespace: "shop", Name: "cart", Service: &model.ServiceRef{Namespace: "shop", Name: "cart"}}
	selected := &model.GlobalService{Namespace: "shop", Name: "web",
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}}
	alphaOnly := *named
	alphaOnly.Clusters = []string{"alpha"}
	for _, tc := range []struct {
		name string
		g    *model.GlobalService
		want []xds.Account
	}{
		{"every cluster, sorted, deduplicated, default for none", named, []xds.Account{
			{"alpha", "shop", "cart"}, {"alpha", "shop", "cart-canary"}, {"beta", "shop", "default"}}},
		{"only the authorized clusters", &alphaOnly, []xds.Account{{"alpha", "shop", "cart"}, {"alpha", "shop", "cart-canary"}}},
		{"selected members, invalid names skipped", selected, []xds.Account{{"alpha", "shop", "web"}, {"beta", "shop", "web"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := xds.AccountsOf(clusters, tc.g); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// sans returns the SAN matchers of a cluster in snap.
func sans(t *testing.T, snap interface {
	GetResources(string) map[string]types.Resource
}, cluster string) []string {
	t.Helper()
	c, ok := snap.GetResources("type.googleapis.com/envoy.config.cluster.v3.Cluster")[cluster].(*clusterv3.Cluster)
	if !ok {
		t.Fatalf("no cluster %s", cluster)
	}
	up := &tlsv3.UpstreamTlsContext{}
	if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(up); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range up.GetCommonTlsContext().GetValidationContext().GetMatchSubjectAltNames() {
		if m.GetExact() == "" {
			t.Fatalf("%s: a matcher that is not exact: %v", cluster, m)
		}
		out = append(out, m.GetExact())
	}
	return out
}

// TestSharedResourcesFollowAccounts: with mTLS, a cluster's SAN matchers follow the
// accounts its service's authorized clusters publish, and only that cluster is
// rebuilt: the other clusters' resources are the very same messages, every group
// shares them, and an endpoint change pushes no clusters.
func TestSharedResourcesFollowAccounts(t *testing.T) {
	v := reference()
	other := &model.ServiceEndpoints{Namespace: "shop", Name: "web", Ports: []model.ServicePort{{Name: "grpc", Port: 8080}},
		ServiceAccounts: []string{"web"}, Endpoints: []model.Endpoint{{Address: "10.9.0.1", Zone: "us-east-a", Ready: true,
			Serving: true, Ports: []model.EndpointPort{{Name: "grpc", Port: 8080}}}}}
	v.OnUpsert(keyspace.ServiceEndpoints("beta", "shop", "web"), other)
	v.OnUpsert(keyspace.GlobalService("shop", "web"), &model.GlobalService{Namespace: "shop", Name: "web",
		Hostname: "web.shop.global", Service: &model.ServiceRef{Namespace: "shop", Name: "web"},
		Ports: []model.GlobalPort{{Name: "grpc", Port: 8080, Protocol: "GRPC"}}})
	s, err := xds.New(xds.Options{Cluster: "alpha", View: v, Addr: "127.0.0.1:0", MTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	groups := []xds.Group{{Region: "us-east", Zone: "us-east-a"}, {Region: "us-east", Zone: "us-east-b"}}
	now := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	rebuild := func() (a, b cacheSnapshot) {
		t.Helper()
		if err := s.Rebuild(context.Background(), now, groups...); err != nil {
			t.Fatal(err)
		}
		a, err := s.Snapshot(groups[0])
		if err != nil {
			t.Fatal(err)
		}
		b, err = s.Snapshot(groups[1])
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
	const cart, web = "outbound|8080||cart.shop.svc.clusterset.local", "outbound|8080||web.shop.global"
	clusterType := "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	a1, b1 := rebuild()
	if got, want := sans(t, a1, web), []string{"spiffe://beta.meshfed.local/ns/shop/sa/web"}; !slices.Equal(got, want) {
		t.Fatalf("web's matchers %v, want %v", got, want)
	}
	if a1.GetResources(clusterType)[cart] != b1.GetResources(clusterType)[cart] {
		t.Error("two groups got two copies of one cluster: shared resources are built once")
	}

	// beta's cart now also runs as cart-v2: cart's matchers change, web's do not.
	rec := *mustRecord(t, v, "beta", "cart")
	rec.ServiceAccounts = []string{"cart", "cart-v2"}
	v.OnUpsert(keyspace.ServiceEndpoints("beta", "shop", "cart"), &rec)
	a2, _ := rebuild()
	if got := sans(t, a2, cart); !slices.Contains(got, "spiffe://beta.meshfed.local/ns/shop/sa/cart-v2") ||
		slices.Contains(got, "spiffe://beta.meshfed.local/ns/shop/sa/cart-canary") {
		t.Errorf("cart's matchers %v: want beta's cart and cart-v2, no more cart-canary", got)
	}
	if a2.GetVersion(clusterType) == a1.GetVersion(clusterType) {
		t.Error("clusters changed, their version did not")
	}
	if a2.GetResources(clusterType)[web] != a1.GetResources(clusterType)[web] {
		t.Error("web's cluster was rebuilt although its accounts did not change")
	}

	// An endpoint change (the same accounts) pushes load assignments only.
	rec2 := rec
	rec2.Endpoints = slices.Clone(rec.Endpoints[:1])
	v.OnUpsert(keyspace.ServiceEndpoints("beta", "shop", "cart"), &rec2)
	a3, _ := rebuild()
	if a3.GetVersion(clusterType) != a2.GetVersion(clusterType) {
		t.Error("an endpoint change changed the clusters' version")
	}

	// beta is no longer authorized for web: no identity may serve it.
	v.OnUpsert(keyspace.GlobalService("shop", "web"), &model.GlobalService{Namespace: "shop", Name: "web",
		Hostname: "web.shop.global", Service: &model.ServiceRef{Namespace: "shop", Name: "web"}, Clusters: []string{"alpha"},
		Ports: []model.GlobalPort{{Name: "grpc", Port: 8080, Protocol: "GRPC"}}})
	a4, _ := rebuild()
	if got := sans(t, a4, web); !slices.Equal(got, []string{xds.NoIdentity}) {
		t.Errorf("web without an authorized member: matchers %v, want only %q", got, xds.NoIdentity)
	}

	// Unregistering beta removes its identities from every matcher.
	v.OnDelete(keyspace.ClusterInfo("beta"))
	a5, _ := rebuild()
	for _, san := range sans(t, a5, cart) {
		if slices.Contains([]string{"spiffe://beta.meshfed.local/ns/shop/sa/cart", "spiffe://beta.meshfed.local/ns/shop/sa/cart-v2"}, san) {
			t.Errorf("unregistered beta's identity %s still accepted", san)
		}
	}
}

// TestServerListenersFollowEndpoints: a new address of this cluster's endpoints gets
// its server listener although no service changed, and one that went away loses it.
func TestServerListenersFollowEndpoints(t *testing.T) {
	v := reference()
	s, err := xds.New(xds.Options{Cluster: "alpha", View: v, Addr: "127.0.0.1:0", MTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	g := xds.Group{Region: "us-east", Zone: "us-east-a"}
	now := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	listeners := func() map[string]types.Resource {
		t.Helper()
		if err := s.Rebuild(context.Background(), now, g); err != nil {
			t.Fatal(err)
		}
		snap, err := s.Snapshot(g)
		if err != nil {
			t.Fatal(err)
		}
		return snap.GetResources("type.googleapis.com/envoy.config.listener.v3.Listener")
	}
	added := xds.ServerListenerName("10.0.0.99", 8080)
	if _, ok := listeners()[added]; ok {
		t.Fatalf("%s before its endpoint exists", added)
	}
	rec := *mustRecord(t, v, "alpha", "cart")
	old := rec.Endpoints[0].Address
	rec.Endpoints = slices.Clone(rec.Endpoints)
	rec.Endpoints[0].Address = "10.0.0.99"
	v.OnUpsert(keyspace.ServiceEndpoints("alpha", "shop", "cart"), &rec)
	got := listeners()
	l, ok := got[added].(*listenerv3.Listener)
	if !ok {
		t.Fatalf("no server listener %s for a new endpoint", added)
	}
	if _, ok := got[xds.ServerListenerName(old, 8080)]; ok {
		t.Errorf("the server listener of the endpoint that went away (%s) is still served", old)
	}
	down := &tlsv3.DownstreamTlsContext{}
	if err := l.GetFilterChains()[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(down); err != nil {
		t.Fatal(err)
	}
	if !down.GetRequireClientCertificate().GetValue() {
		t.Error("the server listener does not require client certificates")
	}
}

type cacheSnapshot interface {
	GetResources(string) map[string]types.Resource
	GetVersion(string) string
}

func mustRecord(t *testing.T, v *view.View, cluster, name string) *model.ServiceEndpoints {
	t.Helper()
	c, ok := v.Cluster(cluster)
	if !ok {
		t.Fatalf("no cluster %s", cluster)
	}
	rec, ok := c.Services[view.NamespacedName{Namespace: "shop", Name: name}]
	if !ok {
		t.Fatalf("no %s in %s", name, cluster)
	}
	return rec
}
