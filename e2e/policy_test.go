package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	meshecho "github.com/meshfed/meshfed/internal/dev/echo"
	"github.com/meshfed/meshfed/internal/dev/proc"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testnet"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// TestPolicies is issue 13's acceptance: TrafficPolicies and AuthorizationPolicies
// written once on the hub, served by every agent, obeyed by real proxyless grpc-go
// clients and servers with mTLS (gamma on a network of its own, reached through its
// east-west gateway), reported back as Programmed, and explained by `meshfedctl policy
// explain` the way the calls behave. Each subtest asserts counts, never timings.
//
// One global service per subtest, each with its own backends (proxyless gRPC xDS
// echo servers of their cluster's agent presenting their cluster's shop/cart
// identity), so that every policy but flaky's is written at the start and all
// propagate at once.
func TestPolicies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s, err := sandbox.Up(ctx, sandbox.Options{Dir: t.TempDir(), Clusters: 3, MeshfedBinary: meshfedBin(),
		SeparateNetwork: true, MTLS: true, MeshCA: true,
		WorkloadIdentities: []string{"shop/frontend", "shop/checkout", "shop/cart"}, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	downAfter(t, s)
	w := startPolicyWorld(t, ctx, s)
	t.Run("retries", w.testRetries)
	t.Run("timeout and fault", w.testTimeoutAndFault)
	t.Run("canary split", w.testSplit)
	t.Run("ring hash", w.testRingHash)
	t.Run("authorization", w.testAuthorization)
	t.Run("programmed", w.testProgrammed)
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("figures:\n%s", strings.Join(w.figures, "\n"))
}

// The global services, each on a port of its own.
const (
	polCart     = "cart"     // timeout and fault, 8080
	polFlaky    = "flaky"    // retries, 8081
	polCatalog  = "catalog"  // canary split, 8082
	polSession  = "session"  // ring hash, 8083
	polPayments = "payments" // authorization, 8084
	polLedger   = "ledger"   // Programmed, 8085
)

var polPorts = map[string]int32{polCart: 8080, polFlaky: 8081, polCatalog: 8082, polSession: 8083, polPayments: 8084, polLedger: 8085}

func polTarget(svc string) string {
	return fmt.Sprintf("%s.shop.svc.clusterset.local:%d", svc, polPorts[svc])
}

// polBackend is one echo server of a global service.
type polBackend struct {
	service, cluster string
	zone             int // index in the cluster's zones
	id               string
	fail             int               // echo.Behaviour.FailPercent
	pod              map[string]string // labels of the Pod the endpoint names; nil: no Pod
	own              bool              // in a process of its own, to kill it alone
}

var polBackends = []polBackend{
	{service: polFlaky, cluster: "alpha", id: "flaky/alpha-0", fail: 30},
	{service: polFlaky, cluster: "alpha", id: "flaky/alpha-1", fail: 30},
	{service: polCart, cluster: "alpha", id: "cart/alpha"},
	{service: polCatalog, cluster: "alpha", id: "catalog/alpha-a"},
	{service: polCatalog, cluster: "alpha", zone: 1, id: "catalog/alpha-b"},
	{service: polCatalog, cluster: "beta", id: "catalog/beta-v1", pod: map[string]string{"app": "catalog", "version": "v1"}},
	{service: polCatalog, cluster: "beta", id: "catalog/beta-v2", pod: map[string]string{"app": "catalog", "version": "v2"}},
	{service: polCatalog, cluster: "gamma", id: "catalog/gamma"},
	{service: polSession, cluster: "alpha", id: "session-0", own: true},
	{service: polSession, cluster: "alpha", id: "session-1", own: true},
	{service: polSession, cluster: "alpha", id: "session-2", own: true},
	{service: polSession, cluster: "alpha", id: "session-3", own: true},
	{service: polPayments, cluster: "gamma", id: "payments/gamma"},
	{service: polLedger, cluster: "alpha", id: "ledger/alpha"},
}

// policyWorld is the federation the subtests share.
type policyWorld struct {
	ctx context.Context
	s   *sandbox.Sandbox
	hub client.Client
	// services are the member Services, by "<cluster>/<service>", as applied.
	services map[string]*service
	procs    map[string]*proc.Process // by backend id: own processes; "" the shared one
	conns    map[string]*grpc.ClientConn

	mu      sync.Mutex
	figures []string
}

func startPolicyWorld(t *testing.T, ctx context.Context, s *sandbox.Sandbox) *policyWorld {
	w := &policyWorld{ctx: ctx, s: s, hub: hubClient(t, s), services: map[string]*service{},
		procs: map[string]*proc.Process{}, conns: map[string]*grpc.ClientConn{}}
	host := testnet.New(t, len(polBackends))
	xdsServer, certDir := map[string]string{}, map[string]string{}
	for _, c := range s.Clusters {
		xdsServer[c.Name], certDir[c.Name] = forwardFrom(t, host, c.XDSAddr), waitCertDir(t, c, "shop/cart")
	}
	var shared []string
	for i, b := range polBackends {
		c := s.Cluster(b.cluster)
		addr := host.Addr(i).String()
		key := b.cluster + "/" + b.service
		svc := w.services[key]
		if svc == nil {
			svc = &service{namespace: "shop", name: b.service, port: polPorts[b.service], accounts: []string{"cart"}}
			w.services[key] = svc
		}
		e := ready(addr, c.Zones[b.zone])
		if b.pod != nil {
			e.pod = strings.ReplaceAll(b.id, "/", "-")
		}
		svc.endpoints = append(svc.endpoints, e)
		spec := xdsEchoSpec(net.JoinHostPort(addr, strconv.Itoa(int(svc.port))), b.id, xdsServer[c.Name], c.Region, c.Zones[b.zone], certDir[c.Name])
		if bh := (meshecho.Behaviour{FailPercent: b.fail}).String(); bh != "" {
			spec += ";" + bh
		}
		if b.own {
			w.procs[b.id] = host.Start(t, "echo-"+b.id, []string{meshfedTestBinary(t)}, grpcEchoEnv+"="+spec)
			continue
		}
		shared = append(shared, spec)
	}
	w.procs[""] = host.Start(t, "policy-echo", []string{meshfedTestBinary(t)}, grpcEchoEnv+"="+strings.Join(shared, ","))

	// Pods for the endpoints that name one: API objects only (no kubelet), whose labels
	// the agent publishes with the endpoints (publish.EndpointLabels). The API
	// server's admission wants their service account to exist.
	for key, svc := range w.services {
		cluster, _, _ := strings.Cut(key, "/")
		kube := kubernetes.NewForConfigOrDie(s.Cluster(cluster).Config())
		if err := svc.apply(ctx, kube); err != nil {
			t.Fatal(err)
		}
		for _, b := range polBackends {
			if b.pod == nil || b.cluster+"/"+b.service != key {
				continue
			}
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}}
			if _, err := kube.CoreV1().ServiceAccounts("shop").Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: strings.ReplaceAll(b.id, "/", "-"), Labels: b.pod},
				Spec: corev1.PodSpec{ServiceAccountName: "cart", Containers: []corev1.Container{{Name: "echo", Image: "echo"}}}}
			if _, err := kube.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}

	objs := []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}}
	for _, name := range []string{polCart, polFlaky, polCatalog, polSession, polPayments, polLedger} {
		objs = append(objs, &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
			Spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: polPorts[name], Protocol: v1.ProtocolGRPC}}}})
	}
	objs = append(objs, cartPolicy(), catalogPolicy(), sessionPolicy(), ledgerPolicy(v1.LoadBalancerRoundRobin))
	objs = append(objs, paymentsPolicies([]v1.ClusterName{"alpha", "beta"})...)
	for _, o := range objs {
		if err := w.hub.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	// The callers: alpha's frontend calls every service; alpha's checkout and
	// gamma's frontend call payments.
	alpha, gamma := s.Cluster("alpha"), s.Cluster("gamma")
	frontend := waitCertDir(t, alpha, "shop/frontend")
	for _, svc := range []string{polCart, polFlaky, polCatalog, polSession, polPayments, polLedger} {
		w.conns["alpha/frontend/"+svc] = meshClient(t, alpha, alpha.Zones[0], polTarget(svc), frontend)
	}
	w.conns["alpha/checkout/"+polPayments] = meshClient(t, alpha, alpha.Zones[0], polTarget(polPayments), waitCertDir(t, alpha, "shop/checkout"))
	w.conns["gamma/frontend/"+polPayments] = meshClient(t, gamma, gamma.Zones[0], polTarget(polPayments), waitCertDir(t, gamma, "shop/frontend"))

	// Settled: alpha's frontend reaches every service but payments' (which its own
	// policy decides) on a backend of it.
	for _, svc := range []string{polCart, polFlaky, polCatalog, polSession, polLedger} {
		testutil.Eventually(t, waitLong, "alpha's frontend to reach "+svc, func() error {
			o := w.calls(t, "alpha/frontend/"+svc, 1, "", nil)
			for id := range o.landed {
				if strings.HasPrefix(id, svc) {
					return nil
				}
			}
			return fmt.Errorf("%v", o)
		})
	}
	return w
}

// figure records a line of the figures logged at the end.
func (w *policyWorld) figure(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.figures = append(w.figures, fmt.Sprintf(format, args...))
}

// polOutcome is what calls gave: by backend id, and by status code for failures with
// a message of each.
type polOutcome struct {
	landed map[string]int
	failed map[codes.Code]int
	msgs   map[codes.Code]string
}

func (o polOutcome) String() string { return fmt.Sprintf("landed %v, failed %v", o.landed, o.failed) }

func (o polOutcome) count(ids ...string) int {
	n := 0
	for _, id := range ids {
		n += o.landed[id]
	}
	return n
}

// calls sends n UnaryCalls (EmptyCalls if method is "EmptyCall") on the conn of
// caller "<cluster>/<sa>/<service>", 16 at a time, with the metadata md, and counts
// what they gave.
func (w *policyWorld) calls(t *testing.T, caller string, n int, method string, md map[string]string) polOutcome {
	t.Helper()
	conn := w.conns[caller]
	if conn == nil {
		t.Fatalf("no client %s", caller)
	}
	ctx := w.ctx
	for k, v := range md {
		ctx = metadata.AppendToOutgoingContext(ctx, k, v)
	}
	o := polOutcome{landed: map[string]int{}, failed: map[codes.Code]int{}, msgs: map[codes.Code]string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range min(16, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				var id string
				var err error
				if method == "EmptyCall" {
					_, err = testgrpc.NewTestServiceClient(conn).EmptyCall(cctx, &testgrpc.Empty{})
					id = "(empty)"
				} else {
					id, err = meshecho.Call(cctx, conn)
				}
				cancel()
				mu.Lock()
				if err != nil {
					st := status.Convert(err)
					o.failed[st.Code()]++
					o.msgs[st.Code()] = st.Message()
				} else {
					o.landed[id]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return o
}

// polExplained is what the test reads of `meshfedctl policy explain -o json`
// (policyexplain.Result, internal to meshfedctl).
type polExplained struct {
	Authorization struct {
		Allowed   bool   `json:"allowed"`
		DecidedBy string `json:"decidedBy"`
	} `json:"authorization"`
	Routing struct {
		TrafficPolicy string             `json:"trafficPolicy"`
		Route         string             `json:"route"`
		Timeout       metav1.Duration    `json:"timeout"`
		Retries       *model.Retries     `json:"retries"`
		Fault         *model.Fault       `json:"fault"`
		LoadBalancer  model.LoadBalancer `json:"loadBalancer"`
		Split         []subsetShare      `json:"split"`
		Endpoints     []clusterEndpoints `json:"endpoints"`
	} `json:"routing"`
	Policies []struct {
		Kind       string `json:"kind"`
		Name       string `json:"name"`
		Served     bool   `json:"served"`
		Generation int64  `json:"generation"`
		Programmed string `json:"programmed"`
	} `json:"policies"`
	Warnings []string `json:"warnings"`
}

// explain runs `meshfedctl policy explain` for a call from caller
// ("<cluster>/<ns>/<sa>") to shop/<svc>'s method (UnaryCall if ""), with headers.
func (w *policyWorld) explain(t *testing.T, from, svc, method string, headers ...string) (*polExplained, error) {
	t.Helper()
	if method == "" {
		method = "UnaryCall"
	}
	args := []string{"policy", "explain", "--dir", w.s.Dir, "-o", "json", "--from", from, "--to", "shop/" + svc,
		"--method", "/grpc.testing.TestService/" + method}
	for _, h := range headers {
		args = append(args, "--header", h)
	}
	cmd := exec.CommandContext(w.ctx, meshfedctlBin(), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("meshfedctl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	r := &polExplained{}
	if err := json.Unmarshal(stdout.Bytes(), r); err != nil {
		t.Fatalf("policy explain -o json: %v\n%s", err, stdout.String())
	}
	return r, nil
}

// explainUntil waits until explain's answer satisfies check, and returns it.
func (w *policyWorld) explainUntil(t *testing.T, what, from, svc, method string, check func(*polExplained) error, headers ...string) *polExplained {
	t.Helper()
	var r *polExplained
	testutil.Eventually(t, waitLong, "policy explain: "+what, func() error {
		var err error
		if r, err = w.explain(t, from, svc, method, headers...); err != nil {
			return err
		}
		return check(r)
	})
	return r
}

// waitProgrammed waits until the hub says every proxy took the current generation of
// the policy (kind "TrafficPolicy" or "AuthorizationPolicy").
func (w *policyWorld) waitProgrammed(t *testing.T, kind, name string) {
	t.Helper()
	testutil.Eventually(t, waitLong, kind+" shop/"+name+" Programmed", func() error {
		gen, st, err := w.policyStatus(kind, name)
		if err != nil {
			return err
		}
		c := meta.FindStatusCondition(st.Conditions, v1.ConditionProgrammed)
		if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != gen || st.ObservedGeneration != gen {
			return fmt.Errorf("generation %d, status %+v", gen, st)
		}
		return nil
	})
}

func (w *policyWorld) policyStatus(kind, name string) (int64, v1.PolicyStatus, error) {
	key := client.ObjectKey{Namespace: "shop", Name: name}
	if kind == "TrafficPolicy" {
		tp := &v1.TrafficPolicy{}
		err := w.hub.Get(w.ctx, key, tp)
		return tp.Generation, tp.Status, err
	}
	ap := &v1.AuthorizationPolicy{}
	err := w.hub.Get(w.ctx, key, ap)
	return ap.Generation, ap.Status, err
}

// polWithin fails unless got is within tolerance of want.
func polWithin(t *testing.T, what string, got, want, tolerance float64) {
	t.Helper()
	if got < want-tolerance || got > want+tolerance {
		t.Errorf("%s: %.4f, want %.4f ± %.4f", what, got, want, tolerance)
	}
}

const polFrontend = "alpha/shop/frontend"

// testRetries: flaky's two backends fail 30% of calls with UNAVAILABLE. Without a
// TrafficPolicy every route retries twice (meshfed's failover retry), so about
// 0.3³ = 2.7% of calls fail (400 calls: about 11; none has odds of 2·10⁻⁵). With a
// route retrying UNAVAILABLE 10 times, 2,000·0.3¹¹ ≈ 0.0004 calls are expected to
// fail: 0 of 2,000.
func (w *policyWorld) testRetries(t *testing.T) {
	const caller = "alpha/frontend/" + polFlaky
	ex, err := w.explain(t, polFrontend, polFlaky, "")
	if err != nil {
		t.Fatal(err)
	}
	if r := ex.Routing; r.TrafficPolicy != "" || r.Retries == nil || r.Retries.Attempts != 2 || !slices.Contains(r.Retries.On, "Unavailable") {
		t.Errorf("explain without a policy: %+v, want meshfed's failover retry (2 retries of Unavailable), which every route is served", r)
	}
	without := w.calls(t, caller, 400, "", nil)
	if without.failed[codes.Unavailable] == 0 || len(without.failed) > 1 || without.count("flaky/alpha-0", "flaky/alpha-1")+without.failed[codes.Unavailable] != 400 {
		t.Errorf("without a policy: %v, want some UNAVAILABLE failures and nothing else", without)
	}

	tp := &v1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: polFlaky}, Spec: v1.TrafficPolicySpec{
		GlobalService: polFlaky,
		Routes: []v1.TrafficRoute{{Name: "all", Retries: &v1.RetryPolicy{Attempts: 10, On: []v1.RetryOn{v1.RetryOnUnavailable},
			Backoff: &v1.RetryBackoff{Base: &metav1.Duration{Duration: time.Millisecond}, Max: &metav1.Duration{Duration: 5 * time.Millisecond}}}}},
	}}
	if err := w.hub.Create(w.ctx, tp); err != nil {
		t.Fatal(err)
	}
	w.waitProgrammed(t, "TrafficPolicy", polFlaky) // alpha's frontend ACKed it
	ex = w.explainUntil(t, "flaky's route retries", polFrontend, polFlaky, "", func(r *polExplained) error {
		if g := r.Routing; g.Route != "all" || g.Retries == nil || g.Retries.Attempts != 10 || !slices.Equal(g.Retries.On, []string{"Unavailable"}) {
			return fmt.Errorf("routing %+v", g)
		}
		return nil
	})
	with := w.calls(t, caller, 2000, "", nil)
	if len(with.failed) > 0 || with.count("flaky/alpha-0", "flaky/alpha-1") != 2000 {
		t.Errorf("with 10 retries: %v, want 2000 answered, no failure", with)
	}
	w.figure("retries    | fail=30%% backends | no policy: %d of 400 failed (explain: failover retry, %d retries) | 10 retries: %d of 2000 failed (explain: route %s, %d retries)",
		without.failed[codes.Unavailable], 2, len(with.failed), ex.Routing.Route, ex.Routing.Retries.Attempts)
}

func cartPolicy() *v1.TrafficPolicy {
	present := true
	return &v1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: polCart}, Spec: v1.TrafficPolicySpec{
		GlobalService: polCart,
		Routes: []v1.TrafficRoute{
			{Name: "slow", Match: v1.RouteMatch{Headers: []v1.HeaderMatch{{Name: meshecho.DelayHeader, Present: &present}}},
				Timeout: &metav1.Duration{Duration: 100 * time.Millisecond}},
			{Name: "faulty", Match: v1.RouteMatch{Methods: []v1.MethodPattern{"/grpc.testing.TestService/*"}},
				Fault: &v1.FaultInjection{Abort: &v1.FaultAbort{Percent: intstr.FromInt32(10), Code: "Unavailable"}}},
		},
	}}
}

// testTimeoutAndFault: cart's route "slow" (calls with x-echo-delay) has a 100 ms
// timeout: a 1 s call fails with DEADLINE_EXCEEDED, a 10 ms one passes; route
// "faulty" (the other calls) aborts 10% with UNAVAILABLE, not retried: 10% ± 3% of
// 2,000 calls fail.
func (w *policyWorld) testTimeoutAndFault(t *testing.T) {
	const caller = "alpha/frontend/" + polCart
	w.waitProgrammed(t, "TrafficPolicy", polCart)
	slow, err := w.explain(t, polFrontend, polCart, "", meshecho.DelayHeader+"=1s")
	if err != nil {
		t.Fatal(err)
	}
	if g := slow.Routing; g.Route != "slow" || g.Timeout.Duration != 100*time.Millisecond || g.Fault != nil {
		t.Errorf("explain with %s: routing %+v, want route slow, timeout 100ms, no fault", meshecho.DelayHeader, g)
	}
	long := w.calls(t, caller, 3, "", map[string]string{meshecho.DelayHeader: "1s"})
	if long.failed[codes.DeadlineExceeded] != 3 {
		t.Errorf("1 s calls under the 100 ms timeout: %v, want 3 DEADLINE_EXCEEDED", long)
	}
	short := w.calls(t, caller, 20, "", map[string]string{meshecho.DelayHeader: "10ms"})
	if short.landed["cart/alpha"] != 20 {
		t.Errorf("10 ms calls under the 100 ms timeout: %v, want 20 answered", short)
	}

	faulty, err := w.explain(t, polFrontend, polCart, "")
	if err != nil {
		t.Fatal(err)
	}
	if g := faulty.Routing; g.Route != "faulty" || g.Fault == nil || g.Fault.Abort == nil || g.Fault.Abort.PerMillion != 100_000 ||
		g.Fault.Abort.Code != "Unavailable" || g.Timeout.Duration != 0 {
		t.Errorf("explain without %s: routing %+v, want route faulty aborting 10%% with Unavailable", meshecho.DelayHeader, g)
	}
	o := w.calls(t, caller, 2000, "", nil)
	share := float64(o.failed[codes.Unavailable]) / 2000
	polWithin(t, "share of calls aborted by the 10% fault", share, float64(faulty.Routing.Fault.Abort.PerMillion)/1e6, 0.03)
	if o.landed["cart/alpha"]+o.failed[codes.Unavailable] != 2000 {
		t.Errorf("%v: want only aborts and answers", o)
	}
	if m := o.msgs[codes.Unavailable]; !strings.Contains(m, "fault") {
		t.Logf("an aborted call's message: %q", m)
	}
	w.figure("timeout    | 1 s calls, route timeout 100 ms (explain: route slow, 100ms) | %d of 3 DEADLINE_EXCEEDED; 10 ms calls: %d of 20 answered",
		long.failed[codes.DeadlineExceeded], short.landed["cart/alpha"])
	w.figure("fault      | abort 10%% (explain: route faulty, %d per million) | %d of 2000 aborted = %.1f%%",
		faulty.Routing.Fault.Abort.PerMillion, o.failed[codes.Unavailable], share*100)
}

func catalogPolicy() *v1.TrafficPolicy {
	return &v1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: polCatalog}, Spec: v1.TrafficPolicySpec{
		GlobalService: polCatalog,
		Subsets:       []v1.Subset{{Name: "v2", Labels: map[string]string{"version": "v2"}}},
		Routes: []v1.TrafficRoute{{Name: "canary",
			Split: []v1.WeightedSubset{{Subset: "", Weight: 95}, {Subset: "v2", Weight: 5}}}},
	}}
}

// setReady sets the readiness of the endpoints of a member Service whose backends
// are ids (all without ids).
func (w *policyWorld) setReady(t *testing.T, cluster, svc string, ready bool, ids ...string) {
	t.Helper()
	s := w.services[cluster+"/"+svc]
	j := 0 // the Service's endpoints are its backends, in polBackends' order
	for _, b := range polBackends {
		if b.cluster != cluster || b.service != svc {
			continue
		}
		if len(ids) == 0 || slices.Contains(ids, b.id) {
			s.endpoints[j].ready, s.endpoints[j].serving = ready, ready
		}
		j++
	}
	if err := s.apply(w.ctx, kubernetes.NewForConfigOrDie(w.s.Cluster(cluster).Config())); err != nil {
		t.Fatal(err)
	}
}

// splitIs checks explain's split: weights and, per subset, "cluster ready/total" of
// each cluster holding some of its endpoints.
func splitIs(r *polExplained, want map[string]string) error {
	got := map[string]string{}
	for _, s := range r.Routing.Split {
		var parts []string
		for _, e := range s.Endpoints {
			parts = append(parts, fmt.Sprintf("%s %d/%d", e.Cluster, e.Ready, e.Total))
		}
		got[fmt.Sprintf("%q %d%%", s.Subset, s.Weight)] = strings.Join(parts, ", ")
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("split %v, want %v", got, want)
	}
	return nil
}

// testSplit: catalog's route sends 5% to subset v2 (Pods labelled version=v2: only
// beta's catalog-beta-v2), 95% to the rest (alpha's two zones, beta's v1, gamma
// through its gateway). From alpha's first zone, over 4,000 calls: 5% ± 1.5% land on
// v2, the rest on alpha's copy in the caller's zone. When alpha's copies die the rest
// fails over to beta's v1 (the caller's region) and v2 keeps its 5% (a subset fails
// over on its own; docs/policy.md). When v2 dies too it is left out of the split
// (the empty-subset rule): every call lands on the rest, none fails.
func (w *policyWorld) testSplit(t *testing.T) {
	const caller = "alpha/frontend/" + polCatalog
	w.waitProgrammed(t, "TrafficPolicy", polCatalog)
	ex := w.explainUntil(t, "the canary holds beta's v2 (its Pod's label published)", polFrontend, polCatalog, "", func(r *polExplained) error {
		return splitIs(r, map[string]string{`"" 95%`: "alpha 2/2, beta 1/1, gamma 1/1", `"v2" 5%`: "beta 1/1"})
	})
	testutil.Eventually(t, waitLong, "calls to reach v2", func() error {
		if o := w.calls(t, caller, 200, "", nil); o.landed["catalog/beta-v2"] == 0 || len(o.failed) > 0 {
			return fmt.Errorf("%v", o)
		}
		return nil
	})
	o := w.calls(t, caller, 4000, "", nil)
	if len(o.failed) > 0 || o.count("catalog/beta-v2", "catalog/alpha-a") != 4000 {
		t.Errorf("split from alpha's first zone: %v, want only v2 and alpha's copy in the caller's zone", o)
	}
	v2 := float64(o.landed["catalog/beta-v2"]) / 4000
	polWithin(t, "v2's share", v2, float64(ex.Routing.Split[1].Weight)/100, 0.015)

	// alpha's copies die: the rest fails over to beta's v1, v2 keeps its share.
	w.setReady(t, "alpha", polCatalog, false)
	w.explainUntil(t, "alpha's copies gone", polFrontend, polCatalog, "", func(r *polExplained) error {
		return splitIs(r, map[string]string{`"" 95%`: "alpha 0/2, beta 1/1, gamma 1/1", `"v2" 5%`: "beta 1/1"})
	})
	testutil.Eventually(t, waitLong, "the rest to fail over to beta's v1", func() error {
		if o := w.calls(t, caller, 100, "", nil); o.count("catalog/beta-v1", "catalog/beta-v2") != 100 {
			return fmt.Errorf("%v", o)
		}
		return nil
	})
	after := w.calls(t, caller, 4000, "", nil)
	if len(after.failed) > 0 || after.count("catalog/beta-v1", "catalog/beta-v2") != 4000 {
		t.Errorf("after alpha's copies died: %v, want only beta's v1 and v2", after)
	}
	v2After := float64(after.landed["catalog/beta-v2"]) / 4000
	polWithin(t, "v2's share after alpha's copies died", v2After, 0.05, 0.015)

	// v2 dies: left out of the split, its share goes to the rest.
	w.setReady(t, "beta", polCatalog, false, "catalog/beta-v2")
	w.explainUntil(t, "v2 empty", polFrontend, polCatalog, "", func(r *polExplained) error {
		return splitIs(r, map[string]string{`"" 95%`: "alpha 0/2, beta 1/1, gamma 1/1", `"v2" 5%`: "beta 0/1"})
	})
	testutil.Eventually(t, waitLong, "every call to land on beta's v1", func() error {
		if o := w.calls(t, caller, 100, "", nil); o.landed["catalog/beta-v1"] != 100 {
			return fmt.Errorf("%v", o)
		}
		return nil
	})
	empty := w.calls(t, caller, 1000, "", nil)
	if empty.landed["catalog/beta-v1"] != 1000 {
		t.Errorf("with v2 empty: %v, want every call on beta's v1", empty)
	}
	w.figure("split      | 95/5 to version=v2 (labels; explain: v2 = beta 1/1) | v2 %d of 4000 = %.2f%%, rest on alpha-a %d | alpha dead: v2 %d of 4000 = %.2f%%, rest on beta-v1 %d | v2 dead (explain: beta 0/1): beta-v1 %d of 1000, failed %d",
		o.landed["catalog/beta-v2"], v2*100, o.landed["catalog/alpha-a"], after.landed["catalog/beta-v2"], v2After*100,
		after.landed["catalog/beta-v1"], empty.landed["catalog/beta-v1"], len(empty.failed))
}

func sessionPolicy() *v1.TrafficPolicy {
	return &v1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: polSession}, Spec: v1.TrafficPolicySpec{
		GlobalService: polSession,
		LoadBalancer:  v1.LoadBalancer{Policy: v1.LoadBalancerRingHash, HashKey: &v1.HashKey{Header: "x-user"}},
	}}
}

// testRingHash: session's four backends (in alpha's first zone, each a process of its
// own) are picked by a ring hash of x-user. Calls with the same key land on one
// backend. When it dies (SIGKILL; its endpoint still ready), its keys move and no
// other key does. When its endpoint then leaves the load assignment, grpc-go rebuilds
// the ring for three: its keys stay away from it and a minority of the others may
// move between survivors (docs/policy.md, "Ring hash when an endpoint leaves").
func (w *policyWorld) testRingHash(t *testing.T) {
	const caller = "alpha/frontend/" + polSession
	w.waitProgrammed(t, "TrafficPolicy", polSession)
	ex := w.explainUntil(t, "session's ring hash", polFrontend, polSession, "", func(r *polExplained) error {
		if lb := r.Routing.LoadBalancer; lb.Policy != string(v1.LoadBalancerRingHash) || lb.HashHeader != "x-user" {
			return fmt.Errorf("load balancing %+v", lb)
		}
		return nil
	}, "x-user=user-0")
	// where maps each of 40 keys to the one backend its 3 calls land on.
	where := func() (map[string]string, error) {
		out := map[string]string{}
		var mu sync.Mutex
		var errs []string
		var wg sync.WaitGroup
		for k := range 40 {
			key := "user-" + strconv.Itoa(k)
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := w.calls(t, caller, 3, "", map[string]string{"x-user": key})
				mu.Lock()
				defer mu.Unlock()
				if len(o.landed) != 1 || len(o.failed) > 0 {
					errs = append(errs, fmt.Sprintf("key %s: %v", key, o))
				}
				for id := range o.landed {
					out[key] = id
				}
			}()
		}
		wg.Wait()
		if len(errs) > 0 {
			slices.Sort(errs)
			return nil, fmt.Errorf("want each key on one backend: %s", strings.Join(errs, "; "))
		}
		return out, nil
	}
	var before map[string]string
	testutil.Eventually(t, waitLong, "every key to stick to one backend, the keys spread over several", func() error {
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
	victimKeys := 0
	for _, id := range before {
		if id == victim {
			victimKeys++
		}
	}
	w.procs[victim].Kill(syscall.SIGKILL)
	var afterKill map[string]string
	testutil.Eventually(t, waitLong, "the keys of "+victim+" to move", func() error {
		m, err := where()
		if err != nil {
			return err
		}
		for k, id := range m {
			if id == victim {
				return fmt.Errorf("key %s still lands on %s", k, victim)
			}
		}
		afterKill = m
		return nil
	})
	movedOthers := 0
	for k, id := range before {
		if id != victim && afterKill[k] != id {
			movedOthers++
			t.Errorf("key %s moved from %s to %s, though %s lives", k, id, afterKill[k], id)
		}
	}

	w.setReady(t, "alpha", polSession, false, victim)
	w.explainUntil(t, "the dead backend out of session's endpoints", polFrontend, polSession, "", func(r *polExplained) error {
		if e := r.Routing.Endpoints; len(e) != 1 || e[0].Cluster != "alpha" || e[0].Ready != 3 || e[0].Total != 4 {
			return fmt.Errorf("endpoints %+v", e)
		}
		return nil
	})
	var rebuilt map[string]string
	testutil.Eventually(t, waitLong, "every key on a survivor", func() error {
		m, err := where()
		if err != nil {
			return err
		}
		for k, id := range m {
			if id == victim {
				return fmt.Errorf("key %s lands on %s", k, victim)
			}
		}
		rebuilt = m
		return nil
	})
	survivorKeys, moved := 0, 0
	for k, id := range afterKill {
		if before[k] == victim {
			continue
		}
		survivorKeys++
		if rebuilt[k] != id {
			moved++
		}
	}
	if moved*2 >= survivorKeys {
		t.Errorf("after the ring was rebuilt for three endpoints %d of the %d keys of survivors moved, want a minority", moved, survivorKeys)
	}
	w.figure("ring hash  | 40 keys x 3 calls, 4 backends (explain: %s on %s) | victim %s had %d keys: all moved, %d other keys moved | endpoint not ready: %d of %d survivors' keys moved between survivors",
		ex.Routing.LoadBalancer.Policy, ex.Routing.LoadBalancer.HashHeader, victim, victimKeys, movedOthers, moved, survivorKeys)
}

// paymentsPolicies: only shop/frontend of clusters may call payments (Allow), and
// alpha's frontend may not call EmptyCall (Deny, which wins).
func paymentsPolicies(clusters []v1.ClusterName) []client.Object {
	return []client.Object{
		&v1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "frontend-only"}, Spec: v1.AuthorizationPolicySpec{
			GlobalService: polPayments, Action: v1.AuthorizationAllow,
			Rules: []v1.AuthorizationRule{{From: []v1.AuthorizationSource{{Clusters: clusters, Namespaces: []string{"shop"}, ServiceAccounts: []string{"frontend"}}}}},
		}},
		&v1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "no-alpha-empty"}, Spec: v1.AuthorizationPolicySpec{
			GlobalService: polPayments, Action: v1.AuthorizationDeny,
			Rules: []v1.AuthorizationRule{{From: []v1.AuthorizationSource{{Clusters: []v1.ClusterName{"alpha"}, Namespaces: []string{"shop"}, ServiceAccounts: []string{"frontend"}}},
				Methods: []v1.MethodPattern{"/grpc.testing.TestService/EmptyCall"}}},
		}},
	}
}

// polCall is one kind of call to payments and what the server should decide.
type polCall struct {
	from   string // explain's --from
	conn   string // w.conns key
	method string // "" UnaryCall, or EmptyCall
}

// testAuthorization: payments runs in gamma only (alpha's callers reach it through
// gamma's gateway). frontend-only allows shop/frontend of alpha and beta;
// no-alpha-empty denies alpha's frontend EmptyCall. The server (grpc-go's RBAC
// filter) lets alpha's frontend call UnaryCall, and refuses with PERMISSION_DENIED
// its EmptyCall (Deny beats Allow), alpha's checkout (another identity) and gamma's
// frontend (the same service account from a cluster the rule leaves out). Then the
// Allow policy changes on the hub to beta and gamma: gamma's frontend passes, alpha's
// is refused, on the same connections to the same server process. Each time
// `meshfedctl policy explain` decides as the server did, naming the rule the server's
// denial names.
func (w *policyWorld) testAuthorization(t *testing.T) {
	for _, name := range []string{"frontend-only", "no-alpha-empty"} {
		w.waitProgrammed(t, "AuthorizationPolicy", name)
	}
	calls := []polCall{
		{"alpha/shop/frontend", "alpha/frontend/" + polPayments, ""},
		{"alpha/shop/frontend", "alpha/frontend/" + polPayments, "EmptyCall"},
		{"alpha/shop/checkout", "alpha/checkout/" + polPayments, ""},
		{"gamma/shop/frontend", "gamma/frontend/" + polPayments, ""},
	}
	// decide is what 10 calls of c gave: allowed (all answered) or denied (all
	// PERMISSION_DENIED), and the denial's message.
	decide := func(c polCall) (bool, string, error) {
		o := w.calls(t, c.conn, 10, c.method, nil)
		switch {
		case o.count("payments/gamma", "(empty)") == 10:
			return true, "", nil
		case o.failed[codes.PermissionDenied] == 10:
			return false, o.msgs[codes.PermissionDenied], nil
		}
		return false, "", fmt.Errorf("%s %s: %v, want all answered or all PERMISSION_DENIED", c.from, c.method, o)
	}
	check := func(want []bool) []string {
		t.Helper()
		var rows []string
		for i, c := range calls {
			var allowed bool
			var msg string
			testutil.Eventually(t, waitLong, c.from+" "+c.method+" decided", func() error {
				var err error
				allowed, msg, err = decide(c)
				return err
			})
			ex, err := w.explain(t, c.from, polPayments, c.method)
			if err != nil {
				t.Fatal(err)
			}
			a := ex.Authorization
			if allowed != want[i] || a.Allowed != allowed {
				t.Errorf("%s %s: the server allowed it: %v; explain: %+v; want %v", c.from, c.method, allowed, a, want[i])
			}
			if !allowed && strings.HasPrefix(a.DecidedBy, "Deny ") && !strings.Contains(msg, a.DecidedBy) {
				t.Errorf("%s %s: the server said %q, explain names %q", c.from, c.method, msg, a.DecidedBy)
			}
			method := c.method
			if method == "" {
				method = "UnaryCall"
			}
			verdict := "OK"
			if !allowed {
				verdict = "PERMISSION_DENIED"
			}
			rows = append(rows, fmt.Sprintf("%s %s: 10/10 %s (explain: %s)", c.from, method, verdict, a.DecidedBy))
		}
		return rows
	}
	before := check([]bool{true, false, false, false})
	// The identity the server saw is the caller's, end to end through gamma's gateway.
	cctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	_, peer, err := meshecho.CallPeer(cctx, w.conns["alpha/frontend/"+polPayments])
	cancel()
	if err != nil || peer != "spiffe://alpha.meshfed.local/ns/shop/sa/frontend" {
		t.Errorf("the server saw %q (%v), want alpha's frontend", peer, err)
	}

	server := w.procs[""]
	ap := &v1.AuthorizationPolicy{}
	if err := w.hub.Get(w.ctx, client.ObjectKey{Namespace: "shop", Name: "frontend-only"}, ap); err != nil {
		t.Fatal(err)
	}
	ap.Spec.Rules[0].From[0].Clusters = []v1.ClusterName{"beta", "gamma"}
	changed := time.Now()
	if err := w.hub.Update(w.ctx, ap); err != nil {
		t.Fatal(err)
	}
	var gammaIn, alphaOut time.Duration
	testutil.Eventually(t, 10*time.Second, "the changed policy to apply at the server", func() error {
		if gammaIn == 0 {
			if ok, _, _ := decide(calls[3]); ok {
				gammaIn = time.Since(changed)
			}
		}
		if alphaOut == 0 {
			if ok, _, err := decide(calls[0]); !ok && err == nil {
				alphaOut = time.Since(changed)
			}
		}
		if gammaIn == 0 || alphaOut == 0 {
			return fmt.Errorf("gamma's frontend allowed after %s, alpha's denied after %s", gammaIn, alphaOut)
		}
		return nil
	})
	t.Logf("the hub's change applied at the server: gamma's frontend allowed after %s, alpha's denied after %s (10 calls each poll)",
		gammaIn.Round(time.Millisecond), alphaOut.Round(time.Millisecond))
	if server.Exited() {
		t.Errorf("the server process exited: %v", server.Failure())
	}
	after := check([]bool{false, false, false, true})
	w.figure("authz      | before the change:\n             %s", strings.Join(before, "\n             "))
	w.figure("authz      | frontend-only changed to beta, gamma on the hub; at the server (same process, same connections) after %s (gamma allowed) and %s (alpha denied):\n             %s",
		gammaIn.Round(time.Millisecond), alphaOut.Round(time.Millisecond), strings.Join(after, "\n             "))
}

func ledgerPolicy(lb v1.LoadBalancerPolicy) *v1.TrafficPolicy {
	return &v1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: polLedger}, Spec: v1.TrafficPolicySpec{
		GlobalService: polLedger, LoadBalancer: v1.LoadBalancer{Policy: lb},
	}}
}

// polRefusal is the NACK the refusing proxy sends.
const polRefusal = "e2e refusing proxy: unsupported load balancing policy (on purpose)"

// testProgrammed: a proxy of beta (a raw ADS client with beta's xDS client
// certificate, subscribing to ledger's Cluster) refuses ledger's TrafficPolicy: the
// hub shows Programmed=False (Refused) naming beta and the NACK's message, in
// status.clusters (alpha, whose real client took it, programmed), in `meshfedctl
// status` and in `meshfedctl policy explain`. The next generation, which the proxy
// accepts, is Programmed=True with both clusters at that generation.
func (w *policyWorld) testProgrammed(t *testing.T) {
	beta := w.s.Cluster("beta")
	w.waitProgrammed(t, "TrafficPolicy", polLedger) // alpha's frontend ACKed generation 1
	conn, err := grpc.NewClient(beta.XDSAddr, grpc.WithTransportCredentials(beta.XDSCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "e2e-refusing-proxy", Locality: &corev3.Locality{Region: beta.Region, Zone: beta.Zones[0]}}
	// The Cluster resource of ledger's port (xds.ClusterName), which its TrafficPolicy shapes.
	name := fmt.Sprintf("outbound|%d||%s", polPorts[polLedger], strings.TrimSuffix(polTarget(polLedger), fmt.Sprintf(":%d", polPorts[polLedger])))
	send := func(version, nonce string, nack *statuspb.Status) {
		t.Helper()
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, ResourceNames: []string{name},
			VersionInfo: version, ResponseNonce: nonce, ErrorDetail: nack}); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() *discoveryv3.DiscoveryResponse {
		t.Helper()
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResources()) != 1 {
			t.Fatalf("response %v: want ledger's Cluster", resp)
		}
		return resp
	}
	send("", "", nil)
	first := recv()
	send("", first.GetNonce(), &statuspb.Status{Code: int32(codes.InvalidArgument), Message: polRefusal})

	var refused v1.PolicyStatus
	var gen int64
	testutil.Eventually(t, waitLong, "ledger's policy Refused on the hub", func() error {
		var err error
		if gen, refused, err = w.policyStatus("TrafficPolicy", polLedger); err != nil {
			return err
		}
		c := meta.FindStatusCondition(refused.Conditions, v1.ConditionProgrammed)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1.ReasonRefused {
			return fmt.Errorf("Programmed %+v", c)
		}
		if !strings.Contains(c.Message, "beta") || !strings.Contains(c.Message, polRefusal) {
			t.Errorf("Programmed's message %q: want beta and the refusal %q", c.Message, polRefusal)
		}
		return nil
	})
	clusters := map[string]v1.ClusterProgrammed{}
	for _, c := range refused.Clusters {
		clusters[c.Cluster] = c
	}
	if b := clusters["beta"]; b.Programmed || b.Generation != gen || !strings.Contains(b.Message, polRefusal) {
		t.Errorf("status.clusters beta: %+v, want generation %d refused with %q", b, gen, polRefusal)
	}
	if a := clusters["alpha"]; !a.Programmed || a.Generation != gen {
		t.Errorf("status.clusters alpha: %+v, want generation %d programmed", a, gen)
	}
	out, err := exec.CommandContext(w.ctx, meshfedctlBin(), "status", "--hub-kubeconfig", w.s.Hub.Kubeconfig).CombinedOutput()
	if err != nil {
		t.Fatalf("meshfedctl status: %v\n%s", err, out)
	}
	var notProgrammed string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "shop/"+polLedger && f[1] == "beta" {
			notProgrammed = line
		}
	}
	if !strings.Contains(notProgrammed, polRefusal) || !strings.Contains(string(out), "alpha ok, beta refused") {
		t.Errorf("meshfedctl status shows no refusal of shop/ledger by beta with the message:\n%s", out)
	}
	ex, err := w.explain(t, polFrontend, polLedger, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Policies) != 1 || ex.Policies[0].Programmed != "False Refused" || len(ex.Warnings) == 0 {
		t.Errorf("explain: policies %+v, warnings %q; want ledger's policy False Refused, with a warning", ex.Policies, ex.Warnings)
	}

	// The next generation changes the Cluster (least request): the proxy gets it and
	// accepts it.
	tp := &v1.TrafficPolicy{}
	if err := w.hub.Get(w.ctx, client.ObjectKey{Namespace: "shop", Name: polLedger}, tp); err != nil {
		t.Fatal(err)
	}
	tp.Spec.LoadBalancer = v1.LoadBalancer{Policy: v1.LoadBalancerLeastRequest}
	if err := w.hub.Update(w.ctx, tp); err != nil {
		t.Fatal(err)
	}
	second := recv()
	if second.GetVersionInfo() == first.GetVersionInfo() {
		t.Fatalf("no new version of ledger's Cluster for generation %d", tp.Generation)
	}
	send(second.GetVersionInfo(), second.GetNonce(), nil)
	w.waitProgrammed(t, "TrafficPolicy", polLedger)
	gen2, programmed, err := w.policyStatus("TrafficPolicy", polLedger)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, c := range programmed.Clusters {
		rows = append(rows, fmt.Sprintf("%s g%d %v", c.Cluster, c.Generation, c.Programmed))
		if !c.Programmed || c.Generation != gen2 {
			t.Errorf("status.clusters %+v, want generation %d programmed", c, gen2)
		}
	}
	if len(programmed.Clusters) != 2 {
		t.Errorf("status.clusters %+v, want alpha and beta", programmed.Clusters)
	}
	ex = w.explainUntil(t, "ledger's policy Programmed", polFrontend, polLedger, "", func(r *polExplained) error {
		if len(r.Policies) != 1 || r.Policies[0].Programmed != "True" || r.Policies[0].Generation != gen2 {
			return fmt.Errorf("policies %+v", r.Policies)
		}
		return nil
	})
	w.figure("programmed | beta's raw ADS client NACKs generation %d: Programmed=False Refused, status.clusters alpha ok / beta %q, meshfedctl status and explain (%s) say so | generation %d accepted: Programmed=True, status.clusters %s, explain %s",
		gen, clusters["beta"].Message, "False Refused", gen2, strings.Join(rows, ", "), ex.Policies[0].Programmed)
}
