package xds_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// fleet is a view of clusters × services × endpoints, every cluster with two zones,
// every service global.
func fleet(clusters, services, endpoints int) (*view.View, xds.Input) {
	v := view.New(view.Options{})
	now := time.Now()
	for c := range clusters {
		name := fmt.Sprintf("c%03d", c)
		region := fmt.Sprintf("region-%d", c%5)
		v.OnUpsert(keyspace.ClusterInfo(name), &model.ClusterInfo{Name: name, Region: region,
			Zones: []string{name + "-a", name + "-b"}, Network: "default"})
		v.OnUpsert(keyspace.ClusterHeartbeat(name), &model.Heartbeat{Time: now, TTL: 15, Agent: name})
		for s := range services {
			rec := &model.ServiceEndpoints{Namespace: "ns", Name: fmt.Sprintf("svc%03d", s),
				Ports: []model.ServicePort{{Name: "grpc", Port: 8080}}}
			for e := range endpoints {
				rec.Endpoints = append(rec.Endpoints, model.Endpoint{
					Address: fmt.Sprintf("10.%d.%d.%d", c, s, e), Zone: name + []string{"-a", "-b"}[e%2],
					Ready: true, Serving: true, Ports: []model.EndpointPort{{Name: "grpc", Port: 8080}}})
			}
			v.OnUpsert(keyspace.ServiceEndpoints(name, "ns", rec.Name), rec)
		}
	}
	for s := range services {
		name := fmt.Sprintf("svc%03d", s)
		v.OnUpsert(keyspace.GlobalService("ns", name), &model.GlobalService{Namespace: "ns", Name: name,
			Hostname: name + ".ns.global", Service: &model.ServiceRef{Namespace: "ns", Name: name},
			Ports: []model.GlobalPort{{Name: "grpc", Port: 8080, Protocol: "GRPC"}}})
	}
	return v, xds.Input{Self: "c000", Clusters: v.Clusters(), Globals: v.GlobalServices(), Since: now, Now: now}
}

// BenchmarkTargets: 100 clusters × 100 services × 10 endpoints, from the view to every
// global service's localities.
func BenchmarkTargets(b *testing.B) {
	_, in := fleet(100, 100, 10)
	b.ReportAllocs()
	for b.Loop() {
		xds.Targets(in)
	}
}

// BenchmarkFirstBuild: the same fleet with mTLS, everything a new server builds for
// four groups of proxies: targets, the shared resources and every group's load
// assignments, each validated and serialized once.
func BenchmarkFirstBuild(b *testing.B) {
	v, _ := fleet(100, 100, 10)
	v.OnSynced()
	groups := benchGroups
	b.ReportAllocs()
	for b.Loop() {
		s, err := xds.New(xds.Options{Cluster: "c000", View: v, Addr: "127.0.0.1:0", MTLS: true})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Rebuild(context.Background(), time.Now(), groups...); err != nil {
			b.Fatal(err)
		}
	}
}

// benchGroups are the four groups of proxies the rebuild benchmarks serve.
var benchGroups = []xds.Group{{Region: "region-0", Zone: "c000-a"}, {Region: "region-0", Zone: "c000-b"},
	{Region: "region-0", Zone: ""}, {Region: "region-1", Zone: "x"}}

// builtFleet is the 100 × 100 × 10 fleet with an mTLS server of c000 that has built
// everything for benchGroups once.
func builtFleet(b *testing.B) (*view.View, *xds.Server, []xds.Group, time.Time) {
	b.Helper()
	v, _ := fleet(100, 100, 10)
	s, err := xds.New(xds.Options{Cluster: "c000", View: v, Addr: "127.0.0.1:0", MTLS: true})
	if err != nil {
		b.Fatal(err)
	}
	v.OnSynced()
	now := time.Now()
	if err := s.Rebuild(context.Background(), now, benchGroups...); err != nil {
		b.Fatal(err)
	}
	return v, s, benchGroups, now
}

// BenchmarkRebuildOneChange: the same fleet with mTLS and four groups of proxies, a
// rebuild after one cluster's record of one service changed: its service accounts
// (that service's cluster with its SAN matchers is rebuilt, every other shared
// resource is reused), or one endpoint's address (that service's load assignment in
// every group).
func BenchmarkRebuildOneChange(b *testing.B) {
	for _, change := range []string{"accounts", "endpoint"} {
		b.Run(change, func(b *testing.B) {
			v, s, groups, now := builtFleet(b)
			c, _ := v.Cluster("c042")
			base := *c.Services[view.NamespacedName{Namespace: "ns", Name: "svc007"}]
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				b.StopTimer()
				rec := base
				if change == "accounts" {
					rec.ServiceAccounts = []string{fmt.Sprintf("sa-%d", i%2)}
				} else {
					rec.Endpoints = slices.Clone(base.Endpoints)
					rec.Endpoints[0].Address = fmt.Sprintf("10.9.9.%d", i%2)
				}
				i++
				v.OnUpsert(keyspace.ServiceEndpoints("c042", "ns", "svc007"), &rec)
				b.StartTimer()
				if err := s.Rebuild(context.Background(), now, groups...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRebuildBurst: the same fleet with mTLS and four groups, one rebuild
// carrying ten changes, each an endpoint of another service of another cluster (what
// a burst merges into one rebuild).
func BenchmarkRebuildBurst(b *testing.B) {
	v, s, groups, now := builtFleet(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		for k := range 10 {
			cluster, svc := fmt.Sprintf("c%03d", 1+(i*10+k)%99), fmt.Sprintf("svc%03d", (i*10+k*7)%100)
			c, _ := v.Cluster(cluster)
			rec := *c.Services[view.NamespacedName{Namespace: "ns", Name: svc}]
			rec.Endpoints = slices.Clone(rec.Endpoints)
			rec.Endpoints[0].Ready = !rec.Endpoints[0].Ready
			v.OnUpsert(keyspace.ServiceEndpoints(cluster, "ns", svc), &rec)
		}
		i++
		b.StartTimer()
		if err := s.Rebuild(context.Background(), now, groups...); err != nil {
			b.Fatal(err)
		}
	}
}
