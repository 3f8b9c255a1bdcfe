package xds_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// TestOneChangeRebuildsOnlyItsService: in a fleet of 20 clusters × 30 services, one
// endpoint change recomputes the targets of the one global service it feeds and
// builds its load assignment once per group, nothing else; a policy change touches
// only the services that name it; a new global service only itself; a change of no
// consequence (a trust bundle) nothing.
func TestOneChangeRebuildsOnlyItsService(t *testing.T) {
	v, _ := fleet(20, 30, 4)
	v.OnSynced()
	s, err := xds.New(xds.Options{Cluster: "c000", View: v, Addr: "127.0.0.1:0", MTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	groups := []xds.Group{{Region: "region-0", Zone: "c000-a"}, {Region: "region-0", Zone: "c000-b"}, {Region: "region-0"}}
	now := time.Now()
	if err := s.Rebuild(context.Background(), now, groups...); err != nil {
		t.Fatal(err)
	}
	recomputed, built := s.Costs()
	if recomputed != 30 || built != 3*30 {
		t.Fatalf("first build: %d global services recomputed, %d load assignments built; want 30 and 90", recomputed, built)
	}
	step := func(what string, change func(), wantGlobals, wantAssignments int64) {
		t.Helper()
		r0, b0 := s.Costs()
		change()
		if err := s.Rebuild(context.Background(), now, groups...); err != nil {
			t.Fatal(err)
		}
		r1, b1 := s.Costs()
		if r1-r0 != wantGlobals || b1-b0 != wantAssignments {
			t.Errorf("%s: %d global services recomputed and %d load assignments built, want %d and %d",
				what, r1-r0, b1-b0, wantGlobals, wantAssignments)
		}
	}
	c, _ := v.Cluster("c007")
	rec := *c.Services[view.NamespacedName{Namespace: "ns", Name: "svc011"}]
	rec.Endpoints = slices.Clone(rec.Endpoints)
	rec.Endpoints[0].Ready = false
	step("one endpoint of one cluster's service", func() {
		v.OnUpsert(keyspace.ServiceEndpoints("c007", "ns", "svc011"), &rec)
	}, 1, 3)
	step("a heartbeat", func() {
		v.OnUpsert(keyspace.ClusterHeartbeat("c003"), &model.Heartbeat{Time: time.Now(), TTL: 15, Agent: "c003"})
	}, 0, 0)
	step("the trust bundle", func() {
		v.OnUpsert(keyspace.TrustBundle(), &model.TrustBundle{})
	}, 0, 0)
	// svc005 and svc006 name a policy; its change reaches them only.
	for _, name := range []string{"svc005", "svc006"} {
		v.OnUpsert(keyspace.GlobalService("ns", name), &model.GlobalService{Namespace: "ns", Name: name, Policy: "quick",
			Hostname: name + ".ns.global", Service: &model.ServiceRef{Namespace: "ns", Name: name},
			Ports: []model.GlobalPort{{Name: "grpc", Port: 8080, Protocol: "GRPC"}}})
	}
	if err := s.Rebuild(context.Background(), now, groups...); err != nil {
		t.Fatal(err)
	}
	step("a policy two global services name", func() {
		v.OnUpsert(keyspace.Policy("ns", "quick"), &model.Policy{Namespace: "ns", Name: "quick",
			FailbackHold: metav1.Duration{Duration: time.Minute}})
	}, 2, 6)
	// A traffic policy may change any global service of its namespace (it may have
	// named another before): every one of them is recomputed, and only the one it
	// names gets new load assignments.
	step("a traffic policy", func() {
		v.OnUpsert(keyspace.TrafficPolicy("ns", "tp"), &model.TrafficPolicy{Namespace: "ns", Name: "tp", GlobalService: "svc007",
			LoadBalancer: model.LoadBalancer{Policy: model.LoadBalancerLeastRequest}})
	}, 30, 3)
	step("a new global service", func() {
		v.OnUpsert(keyspace.GlobalService("ns", "extra"), &model.GlobalService{Namespace: "ns", Name: "extra",
			Hostname: "extra.ns.global", Service: &model.ServiceRef{Namespace: "ns", Name: "svc001"},
			Ports: []model.GlobalPort{{Name: "grpc", Port: 8080, Protocol: "GRPC"}}})
	}, 1, 3)
}

// TestStreamsOfAGroupShareBytes: a change reaches every stream of a group with the
// same bytes for the same version (serialized once, not per stream), and streams
// that subscribe to another service's load assignment are not sent anything.
func TestStreamsOfAGroupShareBytes(t *testing.T) {
	w := newWorld(t)
	// A second global service, that the change below does not touch.
	rec := *w.records["beta"]
	rec.Name = "ledger"
	w.put(keyspace.ServiceEndpoints("beta", "shop", "ledger"), &rec)
	w.put(keyspace.GlobalService("shop", "ledger"), &model.GlobalService{Namespace: "shop", Name: "ledger",
		Hostname: "ledger.shop.global", Service: &model.ServiceRef{Namespace: "shop", Name: "ledger"},
		Ports: []model.GlobalPort{{Name: "grpc", Port: 8080, Protocol: "GRPC"}}})
	s := startServer(t, w, "alpha")
	conn := dialPlain(t, s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cart, ledger := xds.ClusterName("cart.shop.svc.clusterset.local", 8080), xds.ClusterName("ledger.shop.global", 8080)
	type stream struct {
		s    discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
		node *corev3.Node
		name string
		last *discoveryv3.DiscoveryResponse
	}
	var streams []*stream
	for i := range 8 {
		name := cart
		if i >= 6 {
			name = ledger
		}
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		node := &corev3.Node{Id: fmt.Sprintf("proxy-%d", i), Locality: &corev3.Locality{Region: "us-east", Zone: "us-east-1a"}}
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{name}}); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, &stream{s: st, node: node, name: name})
	}
	ack := func(st *stream) {
		t.Helper()
		resp, err := st.s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		st.last = resp
		if err := st.s.Send(&discoveryv3.DiscoveryRequest{Node: st.node, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{st.name},
			VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range streams {
		ack(st)
	}
	// One change of cart: every cart stream gets it, byte for byte the same.
	var down string
	for _, e := range w.records["alpha"].Endpoints {
		if e.Zone == "us-east-1a" {
			down = net.JoinHostPort(e.Address, strconv.Itoa(int(e.Ports[0].Port)))
		}
	}
	w.setReady("alpha", "us-east-1a", false)
	for _, st := range streams[:6] {
		for { // a rebuild that raced the first responses may send one more version first
			ack(st)
			if eps := endpointsOf(t, st.last); len(eps) > 0 && !slices.Contains(eps, down) {
				break
			}
		}
	}
	first := streams[0].last
	for _, st := range streams[1:6] {
		if st.last.GetVersionInfo() != first.GetVersionInfo() || !bytes.Equal(st.last.GetResources()[0].GetValue(), first.GetResources()[0].GetValue()) {
			t.Errorf("%s got version %s, %d bytes; %s got version %s, %d bytes: one group's streams must share one serialization",
				st.node.GetId(), st.last.GetVersionInfo(), len(st.last.GetResources()[0].GetValue()),
				streams[0].node.GetId(), first.GetVersionInfo(), len(first.GetResources()[0].GetValue()))
		}
	}
	// The ledger streams were sent nothing: their resource did not change. A second
	// change of ledger itself reaches them next, proving they were still listening.
	rec2 := rec
	rec2.Endpoints = rec.Endpoints[:1]
	w.put(keyspace.ServiceEndpoints("beta", "shop", "ledger"), &rec2)
	for _, st := range streams[6:] {
		ack(st)
		if eps := endpointsOf(t, st.last); len(eps) != 1 {
			t.Errorf("%s was sent %v: the first response after the cart change must be ledger's own change (one endpoint)", st.node.GetId(), eps)
		}
	}
}

// endpointsOf is the addresses of the load assignment resp carries.
func endpointsOf(t *testing.T, resp *discoveryv3.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, r := range resp.GetResources() {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := r.UnmarshalTo(cla); err != nil {
			t.Fatal(err)
		}
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				a := e.GetEndpoint().GetAddress().GetSocketAddress()
				out = append(out, net.JoinHostPort(a.GetAddress(), strconv.Itoa(int(a.GetPortValue()))))
			}
		}
	}
	return out
}

// TestServiceLimitCrossingIsServed: a new record that pushes another of its cluster
// beyond the cluster's service limit changes what that other record's global service
// serves, and the incremental rebuild sees it.
func TestServiceLimitCrossingIsServed(t *testing.T) {
	v, _ := fleet(3, 3, 2)
	v.OnUpsert(keyspace.ClusterInfo("c001"), &model.ClusterInfo{Name: "c001", Region: "region-1",
		Zones: []string{"c001-a", "c001-b"}, Network: "default", Limits: model.PublishLimits{MaxServices: 3}})
	v.OnSynced()
	s, err := xds.New(xds.Options{Cluster: "c000", View: v, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	g := xds.Group{Region: "region-0", Zone: "c000-a"}
	if err := s.Rebuild(context.Background(), time.Now(), g); err != nil {
		t.Fatal(err)
	}
	serves := func(svc string) bool {
		t.Helper()
		cla, err := s.Served(g, xds.ClusterName(svc+".ns.global", 8080))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range cla.GetEndpoints() {
			if l.GetLocality().GetSubZone() == "c001" && len(l.GetLbEndpoints()) > 0 {
				return true
			}
		}
		return false
	}
	if !serves("svc002") {
		t.Fatal("c001's svc002 is not served before the limit is reached")
	}
	// ns/svc0015 sorts before ns/svc002: c001's fourth service pushes svc002 out.
	rec := &model.ServiceEndpoints{Namespace: "ns", Name: "svc0015", Ports: []model.ServicePort{{Name: "grpc", Port: 8080}}}
	v.OnUpsert(keyspace.ServiceEndpoints("c001", "ns", "svc0015"), rec)
	if err := s.Rebuild(context.Background(), time.Now(), g); err != nil {
		t.Fatal(err)
	}
	if serves("svc002") {
		t.Error("c001's svc002, beyond its service limit now, is still served")
	}
}
