package xds_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// reference is the reference topology of docs/failover.md: three clusters in two
// regions, two zones each, one global service with two endpoints per zone. Alpha's
// endpoints run as the service account cart, beta's as cart and cart-canary, gamma's
// name none (so: default).
func reference() *view.View {
	v := view.New(view.Options{})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, c := range []struct{ name, region string }{{"alpha", "us-east"}, {"beta", "us-east"}, {"gamma", "eu-west"}} {
		v.OnUpsert(keyspace.ClusterInfo(c.name), &model.ClusterInfo{Name: c.name, Region: c.region,
			Zones: []string{c.region + "-a", c.region + "-b"}, Network: "default"})
		v.OnUpsert(keyspace.ClusterHeartbeat(c.name), &model.Heartbeat{Time: now, TTL: 15, Agent: c.name})
		rec := &model.ServiceEndpoints{Namespace: "shop", Name: "cart", Ports: []model.ServicePort{{Name: "grpc", Port: 8080}},
			ServiceAccounts: [][]string{{"cart"}, {"cart", "cart-canary"}, nil}[i]}
		for z, zone := range []string{c.region + "-a", c.region + "-b"} {
			for e := range 2 {
				rec.Endpoints = append(rec.Endpoints, model.Endpoint{
					Address: "10.0." + itoa(i*10+z) + "." + itoa(e+1), Zone: zone, Ready: true, Serving: true,
					Ports: []model.EndpointPort{{Name: "grpc", Port: 8080}}})
			}
		}
		v.OnUpsert(keyspace.ServiceEndpoints(c.name, "shop", "cart"), rec)
	}
	v.OnUpsert(keyspace.GlobalService("shop", "cart"), &model.GlobalService{Namespace: "shop", Name: "cart",
		Hostname: "cart.shop.svc.clusterset.local", Service: &model.ServiceRef{Namespace: "shop", Name: "cart"},
		Ports: []model.GlobalPort{{Name: "grpc", Port: 8080, Protocol: "GRPC"}}})
	v.OnSynced()
	return v
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestGolden pins the exact snapshot the server sets for the proxies in
// alpha/us-east-a for the reference topology (every resource of every type, sorted by
// type and name), with mTLS on and off, and checks that every resource passes Envoy's
// proto validation.
func TestGolden(t *testing.T) {
	for name, mtls := range map[string]bool{"reference": true, "reference-plaintext": false} {
		t.Run(name, func(t *testing.T) { golden(t, name, reference(), mtls) })
	}
}

// TestGoldenPolicy pins the snapshot of the reference topology with a TrafficPolicy
// on the global service: routes by method and header with retries, a timeout and a
// fault, least request with outlier detection, and a split to two subsets, one of
// which (a label no endpoint carries) has no endpoint and is left out of the split.
func TestGoldenPolicy(t *testing.T) {
	v := reference()
	canary := "true"
	tp := &model.TrafficPolicy{Namespace: "shop", Name: "cart", GlobalService: "cart",
		LoadBalancer: model.LoadBalancer{Policy: model.LoadBalancerLeastRequest},
		OutlierDetection: &model.OutlierDetection{ConsecutiveErrors: 5, Interval: metav1.Duration{Duration: 10 * time.Second},
			BaseEjectionTime: metav1.Duration{Duration: 30 * time.Second}, MaxEjectionPercent: 50},
		Subsets: []model.Subset{{Name: "beta", Clusters: []string{"beta"}}, {Name: "v2", Labels: map[string]string{"version": "v2"}}},
		Routes: []model.Route{
			{Name: "checkout", Methods: []string{"/shop.Cart/Checkout", "/shop.Payments/*"},
				Timeout: metav1.Duration{Duration: 2 * time.Second},
				Retries: &model.Retries{Attempts: 3, On: []string{"Unavailable", "ResourceExhausted"},
					BackoffBase: metav1.Duration{Duration: 10 * time.Millisecond}, BackoffMax: metav1.Duration{Duration: 100 * time.Millisecond}}},
			{Name: "canary", Headers: []model.HeaderMatch{{Name: "x-canary", Exact: &canary}},
				Fault: &model.Fault{Abort: &model.FaultAbort{PerMillion: 100_000, Code: "Unavailable"},
					Delay: &model.FaultDelay{PerMillion: 5_000, Duration: metav1.Duration{Duration: time.Second}}},
				Split: []model.WeightedSubset{{Subset: "", Weight: 90}, {Subset: "beta", Weight: 5}, {Subset: "v2", Weight: 5}}},
		}}
	if err := tp.Validate(); err != nil {
		t.Fatal(err)
	}
	v.OnUpsert(keyspace.TrafficPolicy("shop", "cart"), tp)
	golden(t, "reference-policy", v, true)
}

// golden compares the snapshot alpha's server sets for the proxies of us-east-a from
// v with testdata/<name>.golden.json.
func golden(t *testing.T, name string, v *view.View, mtls bool) {
	s, err := xds.New(xds.Options{Cluster: "alpha", View: v, Addr: "127.0.0.1:0", MTLS: mtls})
	if err != nil {
		t.Fatal(err)
	}
	g := xds.Group{Region: "us-east", Zone: "us-east-a"}
	if err := s.Rebuild(context.Background(), time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC), g); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(g)
	if err != nil {
		t.Fatal(err)
	}
	consistent(t, snap)
	var out bytes.Buffer
	for _, typ := range []types.ResponseType{types.Listener, types.Route, types.Cluster, types.Endpoint} {
		items := snap.Resources[typ].Items
		for _, n := range slices.Sorted(maps.Keys(items)) {
			r := items[n].Resource
			if err := r.(interface{ ValidateAll() error }).ValidateAll(); err != nil {
				t.Errorf("%s fails validation: %v", n, err)
			}
			out.WriteString(render(t, r))
		}
	}
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("resources differ from %s (run with -update if the change is intended):\n%s", path, out.String())
	}
}

// render is stable JSON of a resource with its type: protojson varies its spacing on
// purpose, so it is compacted and indented again.
func render(t *testing.T, r types.Resource) string {
	data, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var compact, indented bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		t.Fatal(err)
	}
	typed := `{"@type":"` + string(r.ProtoReflect().Descriptor().FullName()) + `","resource":` + compact.String() + `}`
	if err := json.Indent(&indented, []byte(typed), "", "  "); err != nil {
		t.Fatal(err)
	}
	return indented.String() + "\n"
}

// consistent checks that every cluster a route names is served, and every EDS
// cluster's load assignment.
func consistent(t *testing.T, snap *cachev3.Snapshot) {
	t.Helper()
	clusters, assignments := snap.Resources[types.Cluster].Items, snap.Resources[types.Endpoint].Items
	for name, r := range snap.Resources[types.Route].Items {
		for _, vh := range r.Resource.(*routev3.RouteConfiguration).GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				a := rt.GetRoute()
				names := []string{a.GetCluster()}
				for _, w := range a.GetWeightedClusters().GetClusters() {
					names = append(names, w.GetName())
				}
				for _, n := range names {
					if _, ok := clusters[n]; n != "" && !ok {
						t.Errorf("route %s names cluster %s, not served", name, n)
					}
				}
			}
		}
	}
	for name, r := range clusters {
		c := r.Resource.(*clusterv3.Cluster)
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		if _, ok := assignments[c.GetEdsClusterConfig().GetServiceName()]; !ok {
			t.Errorf("cluster %s has no load assignment %s", name, c.GetEdsClusterConfig().GetServiceName())
		}
	}
}
