package e2e

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

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
	// client-go's rate limiter would add its wait to the timed writes.
	cfg := rest.CopyConfig(beta.Config())
	cfg.QPS, cfg.Burst = 1000, 2000
	kube := kubernetes.NewForConfigOrDie(cfg)
	svc := &service{namespace: "default", name: "cart", port: 8080}
	// Addresses inside the clusters' declared range (testnet.Range, or admission
	// refuses them), in a subnet no test host is given: nothing dials them.
	for i := range 20 {
		svc.endpoints = append(svc.endpoints, ready(fmt.Sprintf("10.250.254.%d", i+1), beta.Zones[i%2]))
	}
	if err := svc.apply(ctx, kube); err != nil {
		b.Fatal(err)
	}
	alpha := s.Cluster("alpha")
	updates := edsWatch(ctx, b, alpha, alpha.Zones[0], "outbound|8080||cart.default.svc.clusterset.local")
	last := -1
	waitFor := func(want int, timeout time.Duration) bool {
		deadline := time.After(timeout)
		for {
			select {
			case got := <-updates:
				last = got
				if got == want {
					return true
				}
			case <-deadline:
				return false
			}
		}
	}
	if !waitFor(20, 60*time.Second) {
		v, err := agentView(ctx, alpha.DebugAddr)
		b.Fatalf("the proxy never saw the 20 endpoints (last response: %d healthy); alpha's view: %+v %v", last, v, err)
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
	betaBefore, alphaBefore := scrapeMetrics(ctx, b, beta.MetricsAddr), scrapeMetrics(ctx, b, alpha.MetricsAddr)
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
	betaAfter, alphaAfter := scrapeMetrics(ctx, b, beta.MetricsAddr), scrapeMetrics(ctx, b, alpha.MetricsAddr)
	slices.Sort(samples)
	q := func(p float64) time.Duration { return samples[int(p*float64(len(samples)-1))] }
	b.ReportMetric(float64(q(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(samples[len(samples)-1].Microseconds())/1000, "max-ms")
	fmt.Printf("\nendpoint change in beta -> proxy in alpha, %d changes:\n  p50 %v  p99 %v  max %v\n",
		len(samples), q(0.5).Round(100*time.Microsecond), q(0.99).Round(100*time.Microsecond), samples[len(samples)-1].Round(100*time.Microsecond))

	// Where the time goes: the publishing agent's stages (its own histograms), then
	// the rest of the path (the API server's watch to beta's informer, the hub's etcd
	// watch to alpha, alpha's rebuild and push, the proxy's receipt).
	var mean time.Duration
	for _, d := range samples {
		mean += d / time.Duration(len(samples))
	}
	fmt.Printf("  %-44s %9s %9s %9s %6s\n", "stage", "mean", "p50", "p99", "n")
	row := func(name string, h histogramDelta) {
		fmt.Printf("  %-44s %9s %9s %9s %6d\n", name, ms(h.mean()), ms(h.quantile(0.5)), ms(h.quantile(0.99)), int(h.count))
	}
	const stage = "meshfed_agent_publish_stage_seconds"
	for _, st := range []string{"queue", "build", "write"} {
		row("beta publish "+st, delta(betaBefore, betaAfter, stage, `cluster="beta",stage="`+st+`"`))
	}
	pub := delta(betaBefore, betaAfter, "meshfed_agent_publish_latency_seconds", `cluster="beta"`)
	row("beta publish total (informer event -> etcd ack)", pub)
	row("alpha view change -> push (change_to_push)", delta(alphaBefore, alphaAfter, "meshfed_xds_change_to_push_seconds", ""))
	// Once the server feeds it: beta's informer -> alpha's push, on two clocks.
	row("pair beta -> alpha (propagation_seconds)", delta(alphaBefore, alphaAfter, "meshfed_xds_propagation_seconds", `source_cluster="beta"`))
	fmt.Printf("  %-44s %9s\n", "end to end (EndpointSlice write -> proxy)", ms(mean.Seconds()))
	fmt.Printf("  %-44s %9s\n", "remainder (apiserver->informer, etcd watch,", ms(mean.Seconds()-pub.mean()))
	fmt.Printf("  %-44s\n", "  alpha rebuild/push, proxy receipt)")
}

func ms(seconds float64) string {
	if math.IsNaN(seconds) {
		return "-"
	}
	return fmt.Sprintf("%.2fms", seconds*1000)
}

// scrapeMetrics reads every meshfed_ sample of an agent's /metrics, by exact name and
// labels.
func scrapeMetrics(ctx context.Context, b testing.TB, addr string) map[string]float64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "meshfed_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// histogramDelta is what a histogram gained between two scrapes.
type histogramDelta struct {
	count, sum float64
	buckets    []bucket // cumulative, by upper bound
}

type bucket struct{ le, count float64 }

// delta returns what histogram name's series with labels (as /metrics prints them,
// "" for none) gained from before to after.
func delta(before, after map[string]float64, name, labels string) histogramDelta {
	sep := ""
	if labels != "" {
		sep = ","
	}
	key := func(suffix string) string {
		if labels == "" {
			return name + suffix
		}
		return name + suffix + "{" + labels + "}"
	}
	h := histogramDelta{count: after[key("_count")] - before[key("_count")], sum: after[key("_sum")] - before[key("_sum")]}
	prefix := name + "_bucket{" + labels + sep + `le="`
	for k, v := range after {
		le, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		bound, err := strconv.ParseFloat(strings.TrimSuffix(le, `"}`), 64)
		if err != nil {
			continue
		}
		h.buckets = append(h.buckets, bucket{le: bound, count: v - before[k]})
	}
	slices.SortFunc(h.buckets, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	return h
}

func (h histogramDelta) mean() float64 {
	if h.count == 0 {
		return math.NaN()
	}
	return h.sum / h.count
}

// quantile interpolates linearly within the bucket that holds rank q, as
// Prometheus's histogram_quantile does.
func (h histogramDelta) quantile(q float64) float64 {
	if h.count == 0 {
		return math.NaN()
	}
	rank, lower, below := q*h.count, 0.0, 0.0
	for _, b := range h.buckets {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return lower
			}
			if b.count == below {
				return b.le
			}
			return lower + (b.le-lower)*(rank-below)/(b.count-below)
		}
		lower, below = b.le, b.count
	}
	return lower
}
