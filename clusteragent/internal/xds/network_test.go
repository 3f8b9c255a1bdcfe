package xds_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// TestOtherNetworkGoesThroughGateways: a cluster on another network is reached through
// its east-west gateways, weighted by its healthy endpoints, and not at all while its
// gateways fail their probes.
func TestOtherNetworkGoesThroughGateways(t *testing.T) {
	v := view.New(view.Options{})
	now := time.Now()
	for _, c := range []struct{ name, network string }{{"alpha", "net-a"}, {"gamma", "net-c"}} {
		v.OnUpsert(keyspace.ClusterInfo(c.name), &model.ClusterInfo{Name: c.name, Region: "r", Zones: []string{c.name + "-z"},
			Network: c.network, Gateways: []model.Gateway{{Address: "198.51.100.7", Port: 15443}}})
		v.OnUpsert(keyspace.ClusterHeartbeat(c.name), &model.Heartbeat{Time: now, TTL: 15})
		rec := &model.ServiceEndpoints{Namespace: "ns", Name: "svc", Ports: []model.ServicePort{{Name: "grpc", Port: 8080}}}
		for _, a := range []string{"10.1.0.1", "10.1.0.2", "10.1.0.3"} {
			rec.Endpoints = append(rec.Endpoints, model.Endpoint{Address: a, Zone: c.name + "-z", Ready: true,
				Ports: []model.EndpointPort{{Name: "grpc", Port: 8080}}})
		}
		v.OnUpsert(keyspace.ServiceEndpoints(c.name, "ns", "svc"), rec)
	}
	v.OnUpsert(keyspace.GlobalService("ns", "svc"), &model.GlobalService{Namespace: "ns", Name: "svc", Hostname: "svc.global",
		Service: &model.ServiceRef{Namespace: "ns", Name: "svc"}, Ports: []model.GlobalPort{{Name: "grpc", Port: 8080}}})
	gatewayUp := true
	in := xds.Input{Self: "alpha", Clusters: v.Clusters(), Globals: v.GlobalServices(), Since: now, Now: now,
		GatewayUp: func(netip.AddrPort) bool { return gatewayUp }}

	placed := xds.Prioritize(xds.Client{Cluster: "alpha", Region: "r", Zone: "alpha-z"}, xds.Targets(in)[0])
	if len(placed) != 2 {
		t.Fatalf("localities: %+v", placed)
	}
	remote := placed[1]
	if remote.Cluster != "gamma" || remote.Weight != 3 || len(remote.Endpoints) != 1 ||
		remote.Endpoints[0] != (xds.Endpoint{Address: "198.51.100.7", Port: 15443}) {
		t.Errorf("gamma's locality = %+v, want its gateway with weight 3 (its healthy endpoints)", remote)
	}
	if local := placed[0]; local.Cluster != "alpha" || len(local.Endpoints) != 3 {
		t.Errorf("alpha's locality = %+v, want its 3 endpoints directly", local)
	}

	gatewayUp = false
	placed = xds.Prioritize(xds.Client{Cluster: "alpha", Region: "r", Zone: "alpha-z"}, xds.Targets(in)[0])
	if len(placed) != 1 || placed[0].Cluster != "alpha" {
		t.Errorf("with gamma's gateway down: %+v, want alpha only", placed)
	}
}

// TestOtherNetworkZonesShareTheirGateways: every zone of a cluster on another network
// is behind the same gateways, and a load assignment may hold an address once
// (grpc-go refuses the resource otherwise): the gateways stand once, with the weight
// of every zone of their priority, and priorities stay contiguous.
func TestOtherNetworkZonesShareTheirGateways(t *testing.T) {
	v := view.New(view.Options{})
	now := time.Now()
	zones := map[string][]string{"alpha": {"a1"}, "gamma": {"g1", "g2"}}
	for _, c := range []struct{ name, network string }{{"alpha", "net-a"}, {"gamma", "net-c"}} {
		v.OnUpsert(keyspace.ClusterInfo(c.name), &model.ClusterInfo{Name: c.name, Region: "r", Zones: zones[c.name],
			Network: c.network, Gateways: []model.Gateway{{Address: "198.51.100.7", Port: 15443}}})
		v.OnUpsert(keyspace.ClusterHeartbeat(c.name), &model.Heartbeat{Time: now, TTL: 15})
		rec := &model.ServiceEndpoints{Namespace: "ns", Name: "svc", Ports: []model.ServicePort{{Name: "grpc", Port: 8080}}}
		for i, a := range []string{"10.1.0.1", "10.1.0.2", "10.1.0.3"} {
			rec.Endpoints = append(rec.Endpoints, model.Endpoint{Address: a, Zone: zones[c.name][i%len(zones[c.name])], Ready: true,
				Ports: []model.EndpointPort{{Name: "grpc", Port: 8080}}})
		}
		v.OnUpsert(keyspace.ServiceEndpoints(c.name, "ns", "svc"), rec)
	}
	v.OnUpsert(keyspace.GlobalService("ns", "svc"), &model.GlobalService{Namespace: "ns", Name: "svc", Hostname: "svc.global",
		Service: &model.ServiceRef{Namespace: "ns", Name: "svc"}, Ports: []model.GlobalPort{{Name: "grpc", Port: 8080}}})
	in := xds.Input{Self: "alpha", Clusters: v.Clusters(), Globals: v.GlobalServices(), Since: now, Now: now}
	placed := xds.Prioritize(xds.Client{Cluster: "alpha", Region: "r", Zone: "a1"}, xds.Targets(in)[0])
	seen := map[xds.Endpoint]bool{}
	var gamma []xds.LocalityEndpoints
	for _, l := range placed {
		for _, e := range l.Endpoints {
			if seen[e] {
				t.Fatalf("endpoint %v appears twice in the load assignment: %+v", e, placed)
			}
			seen[e] = true
		}
		if l.Cluster == "gamma" {
			gamma = append(gamma, l)
		}
	}
	if len(gamma) != 1 || gamma[0].Weight != 3 {
		t.Fatalf("gamma's localities = %+v, want one with its gateway and the weight of its 3 healthy endpoints", gamma)
	}
	for i, l := range placed {
		if l.Priority > uint32(i) {
			t.Fatalf("priorities not contiguous: %+v", placed)
		}
	}
}
