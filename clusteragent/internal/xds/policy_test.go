package xds_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// The TrafficPolicy tests: real proxyless gRPC clients (grpc-go's xds resolver)
// against the real server, and in-process gRPC backends. They assert counts, never
// timings.

// flaky is a backend answering with its id; it fails the share failRate of calls with
// UNAVAILABLE, and sleeps a second on calls carrying the metadata key "x-sleep".
type flaky struct {
	testgrpc.UnimplementedTestServiceServer
	id string
	mu sync.Mutex
	// failRate is the share of calls failed.
	failRate float64
}

func (f *flaky) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("x-sleep")) > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	f.mu.Lock()
	fail := rand.Float64() < f.failRate
	f.mu.Unlock()
	if fail {
		return nil, status.Error(codes.Unavailable, "flaky backend")
	}
	return &testgrpc.SimpleResponse{ServerId: f.id}, nil
}

// flakyBackend starts a flaky backend answering with id.
func flakyBackend(t *testing.T, id string, failRate float64) (*flaky, string) {
	f, addr, _ := stoppableBackend(t, id, failRate)
	return f, addr
}

// stoppableBackend is flakyBackend, and a function that stops it.
func stoppableBackend(t *testing.T, id string, failRate float64) (*flaky, string, func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flaky{id: id, failRate: failRate}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, f)
	go s.Serve(lis) //nolint:errcheck
	t.Cleanup(s.Stop)
	return f, lis.Addr().String(), s.Stop
}

// endpointAt is the endpoint record of a backend at addr in zone.
func endpointAt(t *testing.T, addr, zone string, labels map[string]string) model.Endpoint {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return model.Endpoint{Address: host, Zone: zone, Ready: true, Serving: true, Labels: labels,
		Ports: []model.EndpointPort{{Name: "grpc", Port: int32(p)}}}
}

// setEndpoints replaces cluster's endpoints in zone with eps.
func (w *world) setEndpoints(cluster, zone string, eps ...model.Endpoint) {
	old := w.records[cluster]
	rec := *old
	rec.Endpoints = nil
	for _, e := range old.Endpoints {
		if e.Zone != zone {
			rec.Endpoints = append(rec.Endpoints, e)
		}
	}
	rec.Endpoints = append(rec.Endpoints, eps...)
	w.records[cluster] = &rec
	w.put(keyspace.ServiceEndpoints(cluster, "shop", "cart"), &rec)
}

// setLabels gives cluster's endpoints in zone labels.
func (w *world) setLabels(cluster, zone string, labels map[string]string) {
	old := w.records[cluster]
	rec := *old
	rec.Endpoints = append([]model.Endpoint(nil), old.Endpoints...)
	for i := range rec.Endpoints {
		if rec.Endpoints[i].Zone == zone {
			rec.Endpoints[i].Labels = labels
		}
	}
	w.records[cluster] = &rec
	w.put(keyspace.ServiceEndpoints(cluster, "shop", "cart"), &rec)
}

// setTraffic puts shop/cart's TrafficPolicy (nil: deletes it).
func (w *world) setTraffic(tp *model.TrafficPolicy) {
	if tp == nil {
		w.v.OnDelete(keyspace.TrafficPolicy("shop", "cart"))
		return
	}
	tp.Namespace, tp.Name, tp.GlobalService = "shop", "cart", "cart"
	if tp.LoadBalancer.Policy == "" {
		tp.LoadBalancer.Policy = model.LoadBalancerRoundRobin
	}
	if err := tp.Validate(); err != nil {
		w.t.Fatal(err)
	}
	w.put(keyspace.TrafficPolicy("shop", "cart"), tp)
}

// outcome is what n calls gave: by server id, and by status code for failures.
type outcome struct {
	landed map[string]int
	failed map[codes.Code]int
}

func (o outcome) String() string { return fmt.Sprintf("landed %v, failed %v", o.landed, o.failed) }

// calls sends n calls with md (key, value pairs) and counts what they gave.
func calls(ctx context.Context, conn *grpc.ClientConn, n int, md ...string) outcome {
	o := outcome{landed: map[string]int{}, failed: map[codes.Code]int{}}
	c := testgrpc.NewTestServiceClient(conn)
	for range n {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, md...), 10*time.Second)
		resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		cancel()
		if err != nil {
			o.failed[status.Code(err)]++
			continue
		}
		o.landed[resp.GetServerId()]++
	}
	return o
}

// within fails unless got is within tolerance of want.
func within(t *testing.T, what string, got, want, tolerance float64) {
	t.Helper()
	if math.Abs(got-want) > tolerance {
		t.Errorf("%s: %.4f, want %.4f ± %.4f", what, got, want, tolerance)
	}
}

// waitPolicy waits until the client's calls show the policy arrived: probe returns
// nil once they do.
func waitPolicy(t *testing.T, what string, probe func() error) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, what, probe)
}

func retries(attempts int32, on ...string) *model.Retries {
	return &model.Retries{Attempts: attempts, On: on,
		BackoffBase: metav1.Duration{Duration: time.Millisecond}, BackoffMax: metav1.Duration{Duration: 5 * time.Millisecond}}
}

// TestPolicyRetries: a backend failing 30% of calls with UNAVAILABLE is invisible
// when the route retries it enough (failures ≈ n·0.3^(attempts+1): 10 retries give
// 2,000·0.3^11 ≈ 0.0004 expected failures), and visible with the default route's 2
// retries (≈ 400·0.3^3 ≈ 11 of 400 calls; none at all has odds of 2·10⁻⁵; 400, not
// 2,000, as the default backoff of 25 ms would make the test slow).
func TestPolicyRetries(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	_, addr := flakyBackend(t, "flaky", 0.3)
	w.setEndpoints("alpha", "us-east-1a", endpointAt(t, addr, "us-east-1a", nil))
	s := startServer(t, w, "alpha")
	conn := client(t, s.Addr(), "us-east", "us-east-1a")
	eventuallyAll(t, ctx, conn, "flaky") // (echo.Call retries nothing itself: a failure fails it)

	without := calls(ctx, conn, 400)
	if without.failed[codes.Unavailable] == 0 {
		t.Errorf("without the policy: %v, want failures", without)
	}
	w.setTraffic(&model.TrafficPolicy{Routes: []model.Route{{Name: "all", Retries: retries(10, "Unavailable")}}})
	waitPolicy(t, "the retry policy to hide failures", func() error {
		if o := calls(ctx, conn, 200); len(o.failed) > 0 {
			return fmt.Errorf("%v", o)
		}
		return nil
	})
	with := calls(ctx, conn, 2000)
	if len(with.failed) > 0 || with.landed["flaky"] != 2000 {
		t.Errorf("with 10 retries: %v, want 2000 on flaky and no failure", with)
	}
	t.Logf("without the policy: %v; with it: %v", without, with)
}

// TestPolicyTimeoutAndFault: a route's 100 ms timeout cuts a 1 s call with
// DEADLINE_EXCEEDED (routes match by header), and a 10% abort fails 10% ± 3% of 2,000
// calls, injected aborts not being retried.
func TestPolicyTimeoutAndFault(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	_, addr := flakyBackend(t, "slow", 0)
	w.setEndpoints("alpha", "us-east-1a", endpointAt(t, addr, "us-east-1a", nil))
	s := startServer(t, w, "alpha")
	conn := client(t, s.Addr(), "us-east", "us-east-1a")
	eventuallyAll(t, ctx, conn, "slow")

	present := true
	w.setTraffic(&model.TrafficPolicy{Routes: []model.Route{
		{Name: "slow", Headers: []model.HeaderMatch{{Name: "x-sleep", Present: &present}},
			Timeout: metav1.Duration{Duration: 100 * time.Millisecond}},
		{Name: "faulty", Methods: []string{"/grpc.testing.TestService/*"},
			Fault: &model.Fault{Abort: &model.FaultAbort{PerMillion: 100_000, Code: "Unavailable"}}},
	}})
	waitPolicy(t, "the timeout to cut slow calls", func() error {
		if o := calls(ctx, conn, 1, "x-sleep", "1"); o.failed[codes.DeadlineExceeded] != 1 {
			return fmt.Errorf("%v", o)
		}
		return nil
	})
	if o := calls(ctx, conn, 3, "x-sleep", "1"); o.failed[codes.DeadlineExceeded] != 3 {
		t.Errorf("1 s calls under a 100 ms timeout: %v, want DEADLINE_EXCEEDED", o)
	}
	o := calls(ctx, conn, 2000)
	within(t, "share of calls aborted by a 10% fault", float64(o.failed[codes.Unavailable])/2000, 0.10, 0.03)
	if o.landed["slow"]+o.failed[codes.Unavailable] != 2000 {
		t.Errorf("%v: want only aborts and successes", o)
	}
	t.Logf("10%% fault: %v", o)
}

// TestPolicySplit: a 5% split to a subset (by cluster: beta's two zones; by label:
// version=v2, which only beta's us-east-1c carries) gets 5% ± 1.5% of 4,000 calls
// from a client in alpha, and keeps its share when the rest's copies in the client's
// zone, then in its cluster, die: the rest fails over (to alpha's other zone, then to
// the next cluster's endpoints of the rest), the subset keeps its 5%.
func TestPolicySplit(t *testing.T) {
	for name, tc := range map[string]struct {
		subset model.Subset
		canary []string // where the subset's calls land
		last   []string // where the rest lands once alpha is down
	}{
		"cluster": {model.Subset{Name: "canary", Clusters: []string{"beta"}},
			[]string{"beta/us-east-1c", "beta/us-east-1d"}, []string{"gamma/eu-west-1a", "gamma/eu-west-1b"}},
		"label": {model.Subset{Name: "canary", Labels: map[string]string{"version": "v2"}},
			[]string{"beta/us-east-1c"}, []string{"beta/us-east-1d"}},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			w := newWorld(t)
			w.setLabels("beta", "us-east-1c", map[string]string{"version": "v2"})
			s := startServer(t, w, "alpha")
			conn := client(t, s.Addr(), "us-east", "us-east-1a")
			eventuallyAll(t, ctx, conn, "alpha/us-east-1a")

			w.setTraffic(&model.TrafficPolicy{Subsets: []model.Subset{tc.subset}, Routes: []model.Route{{Name: "canary",
				Split: []model.WeightedSubset{{Subset: "", Weight: 95}, {Subset: "canary", Weight: 5}}}}})
			count := func(o outcome, ids []string) int {
				n := 0
				for _, id := range ids {
					n += o.landed[id]
				}
				return n
			}
			waitPolicy(t, "the split to send calls to the canary", func() error {
				if o := calls(ctx, conn, 200); count(o, tc.canary) == 0 || len(o.failed) > 0 {
					return fmt.Errorf("%v", o)
				}
				return nil
			})
			for _, step := range []struct {
				kill, zone string
				rest       []string // where the rest lands
			}{
				{"", "", []string{"alpha/us-east-1a"}},
				{"alpha", "us-east-1a", []string{"alpha/us-east-1b"}},
				{"alpha", "", tc.last},
			} {
				if step.kill != "" {
					w.setReady(step.kill, step.zone, false)
					waitPolicy(t, "the rest to fail over to "+strings.Join(step.rest, ", "), func() error {
						if o := calls(ctx, conn, 100); count(o, tc.canary)+count(o, step.rest) != 100 {
							return fmt.Errorf("%v", o)
						}
						return nil
					})
				}
				o := calls(ctx, conn, 4000)
				if len(o.failed) > 0 || count(o, tc.canary)+count(o, step.rest) != 4000 {
					t.Errorf("after %s/%s died: %v, want only %v and %v", step.kill, step.zone, o, tc.canary, step.rest)
				}
				within(t, "canary's share after "+step.kill+"/"+step.zone+" died", float64(count(o, tc.canary))/4000, 0.05, 0.015)
			}
		})
	}
}

// TestPolicySplitEmptySubset: a subset with no healthy endpoint anywhere is left out
// of the split (its calls go to the others), and comes back with its endpoints.
func TestPolicySplitEmptySubset(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	s := startServer(t, w, "alpha")
	conn := client(t, s.Addr(), "us-east", "us-east-1a")
	eventuallyAll(t, ctx, conn, "alpha/us-east-1a")
	w.setTraffic(&model.TrafficPolicy{Subsets: []model.Subset{{Name: "canary", Clusters: []string{"beta"}}},
		Routes: []model.Route{{Name: "canary", Split: []model.WeightedSubset{{Subset: "", Weight: 50}, {Subset: "canary", Weight: 50}}}}})
	canary := func(o outcome) int { return o.landed["beta/us-east-1c"] + o.landed["beta/us-east-1d"] }
	waitPolicy(t, "the canary to get calls", func() error {
		if o := calls(ctx, conn, 100); canary(o) == 0 || len(o.failed) > 0 {
			return fmt.Errorf("%v", o)
		}
		return nil
	})
	// Without the rule, half the calls would fail: grpc-go has no fallback between
	// the clusters of a split.
	w.setReady("beta", "", false)
	waitPolicy(t, "every call to land in alpha while beta is down", func() error {
		if o := calls(ctx, conn, 100); o.landed["alpha/us-east-1a"] != 100 {
			return fmt.Errorf("%v", o)
		}
		return nil
	})
	if o := calls(ctx, conn, 1000); o.landed["alpha/us-east-1a"] != 1000 {
		t.Errorf("with the canary empty: %v, want every call in alpha/us-east-1a", o)
	}
	explainCanary(t, s, false)
	w.setReady("beta", "", true)
	waitPolicy(t, "the canary to get calls again", func() error {
		if o := calls(ctx, conn, 100); canary(o) == 0 || len(o.failed) > 0 {
			return fmt.Errorf("%v", o)
		}
		return nil
	})
	explainCanary(t, s, true)
}

// explainCanary checks what Explain says of the canary subset: its cluster, whether
// it is live, and its table (beta's zones).
func explainCanary(t *testing.T, s *xds.Server, live bool) {
	t.Helper()
	ex, err := s.Explain("shop", "cart", "us-east-1a")
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range ex[0].Subsets {
		if sub.Subset != "canary" {
			continue
		}
		if sub.Cluster != xds.SubsetClusterName("cart.shop.svc.clusterset.local", 8080, "canary") || sub.Live != live ||
			(live && !strings.Contains(sub.Text, "us-east-1c")) {
			t.Errorf("explained canary %+v, want live %v and beta's zones", sub, live)
		}
		return
	}
	t.Errorf("explanation %+v has no canary subset", ex[0])
}

// TestPolicyRingHash: calls with the same hash key land on one backend; when it
// dies, its keys move and only its keys. Then, when its endpoint leaves the load
// assignment (not ready), grpc-go rebuilds the ring for one endpoint fewer (each
// survivor gets more of it): its keys stay away from it, and some keys may move
// between survivors (logged; docs/policy.md).
func TestPolicyRingHash(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	var eps []model.Endpoint
	var stop []func()
	for i := range 4 {
		_, addr, st := stoppableBackend(t, "ring-"+strconv.Itoa(i), 0)
		eps = append(eps, endpointAt(t, addr, "us-east-1a", nil))
		stop = append(stop, st)
	}
	w.setEndpoints("alpha", "us-east-1a", eps...)
	w.setTraffic(&model.TrafficPolicy{LoadBalancer: model.LoadBalancer{Policy: model.LoadBalancerRingHash, HashHeader: "x-user"}})
	s := startServer(t, w, "alpha")
	conn := client(t, s.Addr(), "us-east", "us-east-1a")

	// where maps each key to the one backend its calls land on.
	where := func() (map[string]string, error) {
		out := map[string]string{}
		for k := range 40 {
			key := "user-" + strconv.Itoa(k)
			o := calls(ctx, conn, 3, "x-user", key)
			if len(o.landed) != 1 || len(o.failed) > 0 {
				return nil, fmt.Errorf("key %s: %v, want one backend", key, o)
			}
			for id := range o.landed {
				out[key] = id
			}
		}
		return out, nil
	}
	var before map[string]string
	waitPolicy(t, "every key to stick to one backend, keys spread over several", func() error {
		m, err := where()
		if err != nil {
			return err
		}
		used := map[string]bool{}
		for _, id := range m {
			used[id] = true
		}
		if len(used) < 2 {
			return fmt.Errorf("keys land on %v only", used)
		}
		before = m
		return nil
	})
	victim := before["user-0"]
	i, _ := strconv.Atoi(strings.TrimPrefix(victim, "ring-"))
	stop[i]()
	waitPolicy(t, "the keys of "+victim+" to move, and only those", func() error {
		after, err := where()
		if err != nil {
			return err
		}
		for k, id := range before {
			switch {
			case id == victim && after[k] == victim:
				return fmt.Errorf("key %s still lands on %s", k, victim)
			case id != victim && after[k] != id:
				return fmt.Errorf("key %s moved from %s to %s, though %s lives", k, id, after[k], id)
			}
		}
		return nil
	})
	eps[i].Ready, eps[i].Serving = false, false
	w.setEndpoints("alpha", "us-east-1a", eps...)
	waitPolicy(t, "the ring without "+victim+" to serve every key elsewhere", func() error {
		after, err := where()
		if err != nil {
			return err
		}
		moved := 0
		for k, id := range before {
			if after[k] == victim {
				return fmt.Errorf("key %s lands on %s", k, victim)
			}
			if id != victim && after[k] != id {
				moved++
			}
		}
		t.Logf("ring rebuilt without %s: %d of %d keys of survivors moved between survivors", victim, moved, len(before))
		return nil
	})
}

// TestPolicyNothingRefused: a real client takes every resource a TrafficPolicy shapes
// (least request in wrr_locality, outlier detection, routes by method and header,
// retries, timeout, fault, a split; then ring hash): the server counts no NACK.
func TestPolicyNothingRefused(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	xds.RegisterMetrics(reg)
	nacks := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := 0.0
		for _, mf := range mfs {
			if mf.GetName() == "meshfed_xds_nacks_total" {
				for _, m := range mf.GetMetric() {
					n += m.GetCounter().GetValue()
				}
			}
		}
		return n
	}
	before := nacks()
	w := newWorld(t)
	s := startServer(t, w, "alpha")
	conn := client(t, s.Addr(), "us-east", "us-east-1a")
	eventuallyAll(t, ctx, conn, "alpha/us-east-1a")
	yes := "yes"
	w.setTraffic(&model.TrafficPolicy{LoadBalancer: model.LoadBalancer{Policy: model.LoadBalancerLeastRequest},
		OutlierDetection: &model.OutlierDetection{ConsecutiveErrors: 5, Interval: metav1.Duration{Duration: time.Second},
			BaseEjectionTime: metav1.Duration{Duration: 30 * time.Second}, MaxEjectionPercent: 50},
		Subsets: []model.Subset{{Name: "canary", Clusters: []string{"beta"}}},
		Routes: []model.Route{
			{Name: "aborted", Methods: []string{"/grpc.testing.TestService/UnaryCall"}, Headers: []model.HeaderMatch{{Name: "x-abort", Exact: &yes}},
				Fault: &model.Fault{Abort: &model.FaultAbort{PerMillion: 1_000_000, Code: "PermissionDenied"}}},
			{Name: "split", Timeout: metav1.Duration{Duration: 5 * time.Second}, Retries: retries(3, "Unavailable", "ResourceExhausted"),
				Split: []model.WeightedSubset{{Subset: "", Weight: 50}, {Subset: "canary", Weight: 50}}},
		}})
	waitPolicy(t, "the routes and the split to apply", func() error {
		if o := calls(ctx, conn, 1, "x-abort", "yes"); o.failed[codes.PermissionDenied] != 1 {
			return fmt.Errorf("header route: %v", o)
		}
		if o := calls(ctx, conn, 100); o.landed["beta/us-east-1c"]+o.landed["beta/us-east-1d"] == 0 || len(o.failed) > 0 {
			return fmt.Errorf("split: %v", o)
		}
		return nil
	})
	w.setTraffic(&model.TrafficPolicy{LoadBalancer: model.LoadBalancer{Policy: model.LoadBalancerRingHash, HashHeader: "x-user"},
		Routes: []model.Route{{Name: "aborted", Headers: []model.HeaderMatch{{Name: "x-abort", Exact: &yes}},
			Fault: &model.Fault{Abort: &model.FaultAbort{PerMillion: 1_000_000, Code: "Aborted"}}}}})
	waitPolicy(t, "the ring hash policy to apply", func() error {
		if o := calls(ctx, conn, 1, "x-abort", "yes"); o.failed[codes.Aborted] != 1 {
			return fmt.Errorf("header route: %v", o)
		}
		return nil
	})
	if o := calls(ctx, conn, 50); len(o.failed) > 0 {
		t.Errorf("under ring hash: %v", o)
	}
	if n := nacks() - before; n != 0 {
		t.Errorf("%v responses refused", n)
	}
}
