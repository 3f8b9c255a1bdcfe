package controllers

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

func duration(d time.Duration) metav1.Duration { return metav1.Duration{Duration: d} }

func TestDefaultHostname(t *testing.T) {
	if got, want := model.ClusterSetHostname("shop", "cart"), "cart.shop.svc.clusterset.local"; got != want {
		t.Fatalf("ClusterSetHostname = %q, want %q", got, want)
	}
}

func TestClusterInfo(t *testing.T) {
	meta := metav1.ObjectMeta{Name: "east-1"}
	tests := map[string]struct {
		in   *v1.MeshCluster
		want *model.ClusterInfo
	}{
		"minimal: default network, no gateways": {
			in:   &v1.MeshCluster{ObjectMeta: meta, Spec: v1.MeshClusterSpec{Region: "us-east", Zones: []v1.LocalityName{"us-east-1a"}}},
			want: &model.ClusterInfo{Name: "east-1", Region: "us-east", Zones: []string{"us-east-1a"}, Network: v1.DefaultNetwork},
		},
		"every field": {
			in: &v1.MeshCluster{
				ObjectMeta: metav1.ObjectMeta{Name: "east-1", Labels: map[string]string{"env": "prod", "tier": "gold"}},
				Spec: v1.MeshClusterSpec{
					Region: "us-east", Zones: []v1.LocalityName{"us-east-1b", "us-east-1a"}, Network: "corp",
					Gateways: []v1.GatewayAddress{{Address: "203.0.113.10", Port: 443}, {Address: "gw.east.example", Port: 15443}},
				},
			},
			want: &model.ClusterInfo{
				Name: "east-1", Region: "us-east", Zones: []string{"us-east-1b", "us-east-1a"}, Network: "corp",
				Gateways: []model.Gateway{{Address: "203.0.113.10", Port: 443}, {Address: "gw.east.example", Port: 15443}},
				Labels:   map[string]string{"env": "prod", "tier": "gold"},
			},
		},
		// An object stored before the API server defaulted the port still converts.
		"gateway without a port gets the default": {
			in: &v1.MeshCluster{ObjectMeta: meta, Spec: v1.MeshClusterSpec{Region: "us-east", Zones: []v1.LocalityName{"a"},
				Gateways: []v1.GatewayAddress{{Address: "203.0.113.10"}, {Address: "203.0.113.11", Port: 8443}}}},
			want: &model.ClusterInfo{Name: "east-1", Region: "us-east", Zones: []string{"a"}, Network: v1.DefaultNetwork,
				Gateways: []model.Gateway{{Address: "203.0.113.10", Port: v1.DefaultGatewayPort}, {Address: "203.0.113.11", Port: 8443}}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := clusterInfo(tc.in)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("clusterInfo mismatch (-want +got):\n%s", diff)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("clusterInfo of a valid MeshCluster does not validate: %v", err)
			}
		})
	}
}

func TestGlobalService(t *testing.T) {
	meta := metav1.ObjectMeta{Namespace: "shop", Name: "cart"}
	http := []v1.GlobalServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolHTTP}}
	httpRec := []model.GlobalPort{{Name: "http", Port: 80, Protocol: "HTTP"}}
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "front"}}
	tests := map[string]struct {
		spec v1.GlobalServiceSpec
		want *model.GlobalService
	}{
		"defaults: hostname and the service of the same name": {
			spec: v1.GlobalServiceSpec{Ports: http},
			want: &model.GlobalService{Namespace: "shop", Name: "cart", Hostname: "cart.shop.svc.clusterset.local",
				Service: &model.ServiceRef{Namespace: "shop", Name: "cart"}, Ports: httpRec},
		},
		"explicit hostname": {
			spec: v1.GlobalServiceSpec{Hostname: "cart.example.internal", Ports: http},
			want: &model.GlobalService{Namespace: "shop", Name: "cart", Hostname: "cart.example.internal",
				Service: &model.ServiceRef{Namespace: "shop", Name: "cart"}, Ports: httpRec},
		},
		"service by name: namespace defaults to the GlobalService's": {
			spec: v1.GlobalServiceSpec{Service: &v1.ServiceReference{Name: "cart-v2"}, Ports: http},
			want: &model.GlobalService{Namespace: "shop", Name: "cart", Hostname: "cart.shop.svc.clusterset.local",
				Service: &model.ServiceRef{Namespace: "shop", Name: "cart-v2"}, Ports: httpRec},
		},
		"service in another namespace": {
			spec: v1.GlobalServiceSpec{Service: &v1.ServiceReference{Namespace: "backend", Name: "cart"}, Ports: http},
			want: &model.GlobalService{Namespace: "shop", Name: "cart", Hostname: "cart.shop.svc.clusterset.local",
				Service: &model.ServiceRef{Namespace: "backend", Name: "cart"}, Ports: httpRec},
		},
		"selector: no service": {
			spec: v1.GlobalServiceSpec{Selector: selector, Ports: http},
			want: &model.GlobalService{Namespace: "shop", Name: "cart", Hostname: "cart.shop.svc.clusterset.local",
				Selector: selector, Ports: httpRec},
		},
		"port protocol defaults to TCP": {
			spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Port: 5432}, {Name: "grpc", Port: 9090, Protocol: v1.ProtocolGRPC}}},
			want: &model.GlobalService{Namespace: "shop", Name: "cart", Hostname: "cart.shop.svc.clusterset.local",
				Service: &model.ServiceRef{Namespace: "shop", Name: "cart"},
				Ports:   []model.GlobalPort{{Port: 5432, Protocol: "TCP"}, {Name: "grpc", Port: 9090, Protocol: "GRPC"}}},
		},
		"clusters and policy": {
			spec: v1.GlobalServiceSpec{Ports: http, Clusters: []v1.ClusterName{"west-1", "east-1"},
				FailoverPolicyRef: &v1.LocalObjectReference{Name: "cart-failover"}},
			want: &model.GlobalService{Namespace: "shop", Name: "cart", Hostname: "cart.shop.svc.clusterset.local",
				Service: &model.ServiceRef{Namespace: "shop", Name: "cart"}, Ports: httpRec,
				Clusters: []string{"west-1", "east-1"}, Policy: "cart-failover"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := globalService(&v1.GlobalService{ObjectMeta: meta, Spec: tc.spec})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("globalService mismatch (-want +got):\n%s", diff)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("globalService of a valid GlobalService does not validate: %v", err)
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	meta := metav1.ObjectMeta{Namespace: "shop", Name: "cart-failover"}
	defaults := func(change func(*model.Policy)) *model.Policy {
		p := &model.Policy{Namespace: "shop", Name: "cart-failover", LocalityPreference: "Zone", FallbackToAny: true,
			MinHealthyPercent: 70, FailbackHold: duration(30 * time.Second), DemoteAfter: duration(30 * time.Second),
			DropAfter: duration(10 * time.Minute)}
		if change != nil {
			change(p)
		}
		return p
	}
	tests := map[string]struct {
		spec v1.FailoverPolicySpec
		want *model.Policy
	}{
		// An object written before the API server defaulted anything.
		"empty spec gets every default": {
			spec: v1.FailoverPolicySpec{},
			want: defaults(nil),
		},
		// Explicit zero values are values, not "unset".
		"explicit false and zero are kept": {
			spec: v1.FailoverPolicySpec{FallbackToAny: ptr.To(false), MinHealthyPercent: ptr.To[int32](0),
				FailbackHold: ptr.To(duration(0))},
			want: defaults(func(p *model.Policy) { p.FallbackToAny, p.MinHealthyPercent, p.FailbackHold = false, 0, duration(0) }),
		},
		"every scalar set": {
			spec: v1.FailoverPolicySpec{LocalityPreference: v1.PreferRegion, FallbackToAny: ptr.To(true), MinHealthyPercent: ptr.To[int32](50),
				FailbackHold: ptr.To(duration(time.Minute)),
				StaleCluster: v1.StaleClusterPolicy{DemoteAfter: ptr.To(duration(5 * time.Second)), DropAfter: ptr.To(duration(time.Hour))}},
			want: defaults(func(p *model.Policy) {
				p.LocalityPreference, p.MinHealthyPercent, p.FailbackHold = "Region", 50, duration(time.Minute)
				p.DemoteAfter, p.DropAfter = duration(5*time.Second), duration(time.Hour)
			}),
		},
		"only demoteAfter set: dropAfter defaults": {
			spec: v1.FailoverPolicySpec{LocalityPreference: v1.PreferNone, StaleCluster: v1.StaleClusterPolicy{DemoteAfter: ptr.To(duration(time.Minute))}},
			want: defaults(func(p *model.Policy) { p.LocalityPreference, p.DemoteAfter = "None", duration(time.Minute) }),
		},
		"failover rules keep their order": {
			spec: v1.FailoverPolicySpec{Failover: []v1.FailoverRule{
				{From: v1.LocalitySelector{Region: "us-east"}, To: []v1.LocalitySelector{{Cluster: "west-1"}, {Region: "eu-west"}}},
				{From: v1.LocalitySelector{Cluster: "west-1"}, To: []v1.LocalitySelector{{Region: "us-east"}}},
			}},
			want: defaults(func(p *model.Policy) {
				p.Failover = []model.FailoverRule{
					{From: model.Locality{Region: "us-east"}, To: []model.Locality{{Cluster: "west-1"}, {Region: "eu-west"}}},
					{From: model.Locality{Cluster: "west-1"}, To: []model.Locality{{Region: "us-east"}}},
				}
			}),
		},
		"distribute rules": {
			spec: v1.FailoverPolicySpec{Distribute: []v1.DistributeRule{
				{From: "us-east/*", To: []v1.WeightedLocality{{Locality: "us-east/*", Weight: 80}, {Locality: "us-west", Weight: 20}}},
				{From: "*", To: []v1.WeightedLocality{{Locality: "*", Weight: 100}}},
			}},
			want: defaults(func(p *model.Policy) {
				p.Distribute = []model.DistributeRule{
					{From: "us-east/*", To: []model.WeightedLocality{{Locality: "us-east/*", Weight: 80}, {Locality: "us-west", Weight: 20}}},
					{From: "*", To: []model.WeightedLocality{{Locality: "*", Weight: 100}}},
				}
			}),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := policy(&v1.FailoverPolicy{ObjectMeta: meta, Spec: tc.spec})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("policy mismatch (-want +got):\n%s", diff)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("policy of a valid FailoverPolicy does not validate: %v", err)
			}
		})
	}
}

func TestUnknownClusters(t *testing.T) {
	registered := []v1.MeshCluster{{ObjectMeta: metav1.ObjectMeta{Name: "east-1"}}, {ObjectMeta: metav1.ObjectMeta{Name: "west-1"}}}
	rule := func(from model.Locality, to ...model.Locality) model.FailoverRule {
		return model.FailoverRule{From: from, To: to}
	}
	cluster := func(n string) model.Locality { return model.Locality{Cluster: n} }
	region := func(n string) model.Locality { return model.Locality{Region: n} }
	tests := map[string]struct {
		failover   []model.FailoverRule
		registered []v1.MeshCluster
		want       []string
	}{
		"no rules":            {registered: registered, want: nil},
		"regions only":        {failover: []model.FailoverRule{rule(region("us-east"), region("us-west"))}, registered: registered, want: nil},
		"every cluster known": {failover: []model.FailoverRule{rule(cluster("east-1"), cluster("west-1"), region("eu"))}, registered: registered, want: nil},
		"unknown target":      {failover: []model.FailoverRule{rule(region("us-east"), cluster("west-1"), cluster("south-1"))}, registered: registered, want: []string{"south-1"}},
		"unknown source":      {failover: []model.FailoverRule{rule(cluster("north-1"), cluster("west-1"))}, registered: registered, want: []string{"north-1"}},
		"sorted, each once": {
			failover: []model.FailoverRule{
				rule(cluster("zeta"), cluster("south-1"), cluster("east-1")),
				rule(region("us-east"), cluster("south-1"), cluster("alpha"), cluster("zeta")),
			},
			registered: registered, want: []string{"alpha", "south-1", "zeta"},
		},
		"nothing registered": {
			failover:   []model.FailoverRule{rule(cluster("east-1"), cluster("west-1"))},
			registered: nil, want: []string{"east-1", "west-1"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := unknownClusters(&model.Policy{Failover: tc.failover}, tc.registered)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("unknownClusters mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// A rule whose localities match no registered cluster applies to no client, or sends
// its share of traffic nowhere: ResolvedRefs says so, naming the rule and the locality.
func TestResolvedRefs(t *testing.T) {
	mc := func(name, region string, zones ...v1.LocalityName) v1.MeshCluster {
		return v1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.MeshClusterSpec{Region: v1.LocalityName(region), Zones: zones}}
	}
	registered := []v1.MeshCluster{mc("east-1", "us-east", "us-east-1a", "us-east-1b"), mc("west-1", "us-west", "us-west-1a")}
	dist := func(from string, to ...string) model.DistributeRule {
		r := model.DistributeRule{From: from}
		for _, l := range to {
			r.To = append(r.To, model.WeightedLocality{Locality: l, Weight: int32(100 / len(to))})
		}
		return r
	}
	tests := map[string]struct {
		policy  model.Policy
		status  metav1.ConditionStatus
		reason  string
		mention []string // in the message
	}{
		"no rules": {status: metav1.ConditionTrue, reason: v1.ReasonResolvedRefs},
		"distribute over registered localities": {
			policy: model.Policy{Distribute: []model.DistributeRule{
				dist("us-east/us-east-1a", "us-east/us-east-1b", "us-west"), dist("us-west/*", "*"), dist("*", "us-east/*")}},
			status: metav1.ConditionTrue, reason: v1.ReasonResolvedRefs,
		},
		"distribute source matching nothing": {
			policy: model.Policy{Distribute: []model.DistributeRule{dist("us-east", "us-west"), dist("eu-west/*", "us-east")}},
			status: metav1.ConditionFalse, reason: v1.ReasonUnmatchedLocality, mention: []string{`distribute[1]`, `from "eu-west/*"`},
		},
		"distribute destination in an unlisted zone": {
			policy: model.Policy{Distribute: []model.DistributeRule{dist("us-east", "us-west/us-west-1z", "us-east")}},
			status: metav1.ConditionFalse, reason: v1.ReasonUnmatchedLocality, mention: []string{`distribute[0]`, `to "us-west/us-west-1z"`},
		},
		"failover region matching nothing": {
			policy: model.Policy{Failover: []model.FailoverRule{{From: model.Locality{Region: "us-east"},
				To: []model.Locality{{Region: "eu-west"}, {Cluster: "west-1"}}}}},
			status: metav1.ConditionFalse, reason: v1.ReasonUnmatchedLocality, mention: []string{`failover[0] region "eu-west"`},
		},
		"unknown cluster wins, both named": {
			policy: model.Policy{Failover: []model.FailoverRule{{From: model.Locality{Region: "ap-south"},
				To: []model.Locality{{Cluster: "south-1"}}}}},
			status: metav1.ConditionFalse, reason: v1.ReasonUnknownCluster, mention: []string{"south-1", `"ap-south"`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := resolvedRefs(&tc.policy, registered)
			if got.Type != v1.ConditionResolvedRefs || got.Status != tc.status || got.Reason != tc.reason {
				t.Fatalf("resolvedRefs = %s/%s/%s (%q), want %s/%s/%s", got.Type, got.Status, got.Reason, got.Message,
					v1.ConditionResolvedRefs, tc.status, tc.reason)
			}
			for _, m := range tc.mention {
				if !strings.Contains(got.Message, m) {
					t.Errorf("message %q does not mention %s", got.Message, m)
				}
			}
		})
	}
}

func TestEndpointsOf(t *testing.T) {
	ep := func(addr, zone string, ready bool) model.Endpoint {
		return model.Endpoint{Address: addr, Zone: zone, Ready: ready, Serving: ready, Ports: []model.EndpointPort{{Name: "http", Port: 8080}}}
	}
	svc := func(ns, name string, labels map[string]string, eps ...model.Endpoint) *model.ServiceEndpoints {
		return &model.ServiceEndpoints{Namespace: ns, Name: name, Labels: labels, Endpoints: eps, Ports: []model.ServicePort{{Name: "http", Port: 80}}}
	}
	cluster := func(name, region string, services ...*model.ServiceEndpoints) view.Cluster {
		c := view.Cluster{Name: name, Services: map[view.NamespacedName]*model.ServiceEndpoints{}}
		if region != "" {
			c.Info = &model.ClusterInfo{Name: name, Region: region, Network: "default"}
		}
		for _, s := range services {
			c.Services[view.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
		}
		return c
	}
	// renamed renames s's port http, on the Service and its endpoints.
	renamed := func(s *model.ServiceEndpoints, name string) *model.ServiceEndpoints {
		s.Ports[0].Name = name
		for i := range s.Endpoints {
			s.Endpoints[i].Ports = []model.EndpointPort{{Name: name, Port: 8080}}
		}
		return s
	}
	front := map[string]string{"tier": "front"}
	// Clusters as View.Clusters returns them: sorted by name.
	clusters := []view.Cluster{
		cluster("east-1", "us-east",
			svc("shop", "cart", nil, ep("10.0.0.1", "us-east-1b", true), ep("10.0.0.2", "us-east-1a", true), ep("10.0.0.3", "us-east-1b", false)),
			svc("shop", "web", front, ep("10.0.1.1", "us-east-1a", true)),
			svc("store", "cart", nil, ep("10.0.2.1", "us-east-1a", true))),
		// No registration record yet: the region is unknown.
		cluster("unregistered", "", svc("shop", "cart", nil, ep("10.9.0.1", "", true))),
		cluster("west-1", "us-west",
			svc("shop", "cart", nil, ep("10.1.0.1", "", false), ep("10.1.0.2", "us-west-1a", true)),
			svc("shop", "web", front, ep("10.1.1.1", "us-west-1a", false))),
		// Publishes the service but with no endpoints: not listed.
		cluster("south-1", "sa-east", svc("shop", "cart", nil)),
		// Publishes nothing the global services select.
		cluster("north-1", "ca-central", svc("shop", "db", nil, ep("10.3.0.1", "z", true))),
	}
	// Every global service has a port, as the API requires: the member ports' name.
	http := []model.GlobalPort{{Name: "http", Port: 80, Protocol: "TCP"}}
	cart := &model.GlobalService{Namespace: "shop", Name: "cart", Service: &model.ServiceRef{Namespace: "shop", Name: "cart"}, Ports: http}
	loc := func(region, zone string, ready, total int32) v1.LocalityEndpoints {
		return v1.LocalityEndpoints{Region: region, Zone: zone, Ready: ready, Total: total}
	}
	tests := map[string]struct {
		g            *model.GlobalService
		clusters     []view.Cluster
		want         []v1.ClusterEndpoints
		wantExcluded []v1.ExcludedCluster
		wantReady    int32
	}{
		"service ref across clusters, zones sorted": {
			g: cart, clusters: clusters,
			want: []v1.ClusterEndpoints{
				{Cluster: "east-1", Localities: []v1.LocalityEndpoints{loc("us-east", "us-east-1a", 1, 1), loc("us-east", "us-east-1b", 1, 2)}},
				{Cluster: "unregistered", Localities: []v1.LocalityEndpoints{loc("", "", 1, 1)}},
				{Cluster: "west-1", Localities: []v1.LocalityEndpoints{loc("us-west", "", 0, 1), loc("us-west", "us-west-1a", 1, 1)}},
			},
			wantReady: 4,
		},
		"clusters restriction": {
			g:        &model.GlobalService{Namespace: "shop", Name: "cart", Service: &model.ServiceRef{Namespace: "shop", Name: "cart"}, Clusters: []string{"west-1", "south-1"}, Ports: http},
			clusters: clusters,
			want: []v1.ClusterEndpoints{
				{Cluster: "west-1", Localities: []v1.LocalityEndpoints{loc("us-west", "", 0, 1), loc("us-west", "us-west-1a", 1, 1)}},
			},
			wantReady: 1,
		},
		"service in another namespace": {
			g:         &model.GlobalService{Namespace: "shop", Name: "cart", Service: &model.ServiceRef{Namespace: "store", Name: "cart"}, Ports: http},
			clusters:  clusters,
			want:      []v1.ClusterEndpoints{{Cluster: "east-1", Localities: []v1.LocalityEndpoints{loc("us-east", "us-east-1a", 1, 1)}}},
			wantReady: 1,
		},
		"selector": {
			g:        &model.GlobalService{Namespace: "shop", Name: "frontends", Selector: &metav1.LabelSelector{MatchLabels: front}, Ports: http},
			clusters: clusters,
			want: []v1.ClusterEndpoints{
				{Cluster: "east-1", Localities: []v1.LocalityEndpoints{loc("us-east", "us-east-1a", 1, 1)}},
				{Cluster: "west-1", Localities: []v1.LocalityEndpoints{loc("us-west", "us-west-1a", 0, 1)}},
			},
			wantReady: 1,
		},
		"selector matching several services adds them up": {
			g:        &model.GlobalService{Namespace: "shop", Name: "all", Selector: &metav1.LabelSelector{}, Clusters: []string{"east-1"}, Ports: http},
			clusters: clusters,
			want: []v1.ClusterEndpoints{
				{Cluster: "east-1", Localities: []v1.LocalityEndpoints{loc("us-east", "us-east-1a", 2, 2), loc("us-east", "us-east-1b", 1, 2)}},
			},
			wantReady: 3,
		},
		"nothing selected": {
			g: &model.GlobalService{Namespace: "shop", Name: "x", Service: &model.ServiceRef{Namespace: "shop", Name: "missing"}, Ports: http}, clusters: clusters,
			want: nil, wantReady: 0,
		},
		"no clusters": {g: cart, clusters: nil, want: nil, wantReady: 0},
		// The agents route port 80 by the member port named http (model.MemberPort):
		// west-1 renamed it, so it serves nothing of cart and must not be counted.
		"a port renamed in one cluster excludes that cluster": {
			g: cart,
			clusters: []view.Cluster{
				cluster("east-1", "us-east", svc("shop", "cart", nil, ep("10.0.0.1", "us-east-1a", true))),
				cluster("west-1", "us-west", renamed(svc("shop", "cart", nil, ep("10.1.0.1", "us-west-1a", true)), "web")),
			},
			want:      []v1.ClusterEndpoints{{Cluster: "east-1", Localities: []v1.LocalityEndpoints{loc("us-east", "us-east-1a", 1, 1)}}},
			wantReady: 1,
			wantExcluded: []v1.ExcludedCluster{{Cluster: "west-1", Port: 80, Reason: v1.ReasonPortNotFound,
				Message: `shop/cart has no port named "http": clients are not routed to this cluster on port 80`}},
		},
		// An endpoint without the port (a slice that lacks it) serves nothing of it.
		"an endpoint without the port is not counted": {
			g: cart,
			clusters: []view.Cluster{cluster("east-1", "us-east", svc("shop", "cart", nil,
				ep("10.0.0.1", "us-east-1a", true), model.Endpoint{Address: "10.0.0.2", Zone: "us-east-1a", Ready: true, Serving: true}))},
			want:      []v1.ClusterEndpoints{{Cluster: "east-1", Localities: []v1.LocalityEndpoints{loc("us-east", "us-east-1a", 1, 1)}}},
			wantReady: 1,
		},
		// A cluster serving one global port of two counts, and is excluded from the other.
		"a cluster serving one port of two": {
			g: &model.GlobalService{Namespace: "shop", Name: "cart", Service: &model.ServiceRef{Namespace: "shop", Name: "cart"},
				Ports: append([]model.GlobalPort{{Port: 9090, Protocol: "GRPC"}}, http...)},
			clusters:  []view.Cluster{cluster("east-1", "us-east", svc("shop", "cart", nil, ep("10.0.0.1", "us-east-1a", true)))},
			want:      []v1.ClusterEndpoints{{Cluster: "east-1", Localities: []v1.LocalityEndpoints{loc("us-east", "us-east-1a", 1, 1)}}},
			wantReady: 1,
			wantExcluded: []v1.ExcludedCluster{{Cluster: "east-1", Port: 9090, Reason: v1.ReasonPortNotFound,
				Message: `shop/cart has no port numbered 9090: clients are not routed to this cluster on port 9090`}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, excluded, ready := endpointsOf(tc.g, tc.clusters)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("endpointsOf clusters mismatch (-want +got):\n%s", diff)
			}
			if ready != tc.wantReady {
				t.Errorf("endpointsOf ready = %d, want %d", ready, tc.wantReady)
			}
			if diff := cmp.Diff(tc.wantExcluded, excluded); diff != "" {
				t.Errorf("endpointsOf excluded mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
