package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
)

// edsWatch is a bare ADS client: it watches one load assignment, ACKs every response,
// and reports the number of healthy endpoints in each.
func edsWatch(ctx context.Context, b testing.TB, c *sandbox.Cluster, zone, cluster string) <-chan int {
	conn, err := grpc.NewClient(c.XDSAddr, grpc.WithTransportCredentials(c.XDSCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		b.Fatal(err)
	}
	node := &corev3.Node{Id: "bench", Locality: &corev3.Locality{Region: c.Region, Zone: zone}}
	req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{cluster}}
	if err := stream.Send(req); err != nil {
		b.Fatal(err)
	}
	out := make(chan int, 1024)
	go func() {
		defer conn.Close()
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			healthy := 0
			for _, r := range resp.GetResources() {
				cla := &endpointv3.ClusterLoadAssignment{}
				if r.UnmarshalTo(cla) == nil {
					for _, l := range cla.GetEndpoints() {
						healthy += len(l.GetLbEndpoints())
					}
				}
			}
			out <- healthy
			ack := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{cluster},
				VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
			if stream.Send(ack) != nil {
				return
			}
		}
	}()
	return out
}

// BenchmarkPropagation measures how long an endpoint change in one member cluster
// (an EndpointSlice update, as the EndpointSlice controller makes it) takes to reach
// a proxy of another cluster: through the publishing agent, the hub's etcd, the other
// agent's view and xDS server, to the proxy's copy of the load assignment. It prints
// p50, p99 and max over the iterations.
func BenchmarkPropagation(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: b.TempDir(), Clusters: 3, MeshfedBinary: meshfedBin()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Down()
	hub := hubClient(&testing.T{}, s)
	if err := hub.Create(ctx, &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cart"},
		Spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8080}}}}); err != nil {
		b.Fatal(err)
	}
	beta := s.Cluster("beta")
	kube := kubernetes.NewForConfigOrDie(beta.Config())
	svc := &service{namespace: "default", name: "cart", port: 8080}
	for i := range 20 { // documentation addresses: nothing dials them
		svc.endpoints = append(svc.endpoints, ready(fmt.Sprintf("192.0.2.%d", i+1), beta.Zones[i%2]))
	}
	if err := svc.apply(ctx, kube); err != nil {
		b.Fatal(err)
	}
	alpha := s.Cluster("alpha")
	updates := edsWatch(ctx, b, alpha, alpha.Zones[0], "outbound|8080||cart.default.svc.clusterset.local")
	waitFor := func(want int, timeout time.Duration) bool {
		deadline := time.After(timeout)
		for {
			select {
			case got := <-updates:
				if got == want {
					return true
				}
			case <-deadline:
				return false
			}
		}
	}
	if !waitFor(20, 60*time.Second) {
		b.Fatal("the proxy never saw the 20 endpoints")
	}
	// Each iteration flips one endpoint's readiness with a single EndpointSlice update,
	// as the EndpointSlice controller does when a pod's readiness changes.
	slices0, err := kube.DiscoveryV1().EndpointSlices("default").Get(ctx, "cart-0", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	slice := slices0.DeepCopy()
	healthy := 20
	iterations := max(b.N, 100)
	var samples []time.Duration
	b.ResetTimer()
	for i := range iterations {
		ep := &slice.Endpoints[i%len(slice.Endpoints)]
		r := !*ep.Conditions.Ready
		ep.Conditions.Ready, ep.Conditions.Serving = &r, &r
		if r {
			healthy++
		} else {
			healthy--
		}
		start := time.Now()
		updated, err := kube.DiscoveryV1().EndpointSlices("default").Update(ctx, slice, metav1.UpdateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		slice = updated
		if !waitFor(healthy, 30*time.Second) {
			b.Fatalf("iteration %d: the proxy never saw %d healthy endpoints", i, healthy)
		}
		samples = append(samples, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(samples)
	q := func(p float64) time.Duration { return samples[int(p*float64(len(samples)-1))] }
	b.ReportMetric(float64(q(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(samples[len(samples)-1].Microseconds())/1000, "max-ms")
	fmt.Printf("\nendpoint change in beta -> proxy in alpha, %d changes:\n  p50 %v  p99 %v  max %v\n",
		len(samples), q(0.5).Round(100*time.Microsecond), q(0.99).Round(100*time.Microsecond), samples[len(samples)-1].Round(100*time.Microsecond))
}
