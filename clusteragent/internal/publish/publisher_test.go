package publish

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/yaml"

	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/kube/crds"
)

// Endpoint addresses come from the documentation ranges (RFC 5737, RFC 3849): the API
// server rejects loopback addresses in EndpointSlices, and nothing here dials them.
const (
	cluster = "east-1"
	ns      = "shop"
)

// member is a member cluster's API, with helpers that create objects the way a
// kubelet, a user and the EndpointSlice controller would.
type member struct {
	t    *testing.T
	ctx  context.Context
	kube kubernetes.Interface
	mcs  mcsclient.Interface
}

func (m *member) node(name, zone string) {
	m.t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}}}
	if zone != "" {
		n.Labels[corev1.LabelTopologyZone] = zone
	}
	if _, err := m.kube.CoreV1().Nodes().Create(m.ctx, n, metav1.CreateOptions{}); err != nil {
		m.t.Fatalf("create node %s: %v", name, err)
	}
}

func (m *member) setNodeZone(name, zone string) {
	m.t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, corev1.LabelTopologyZone, zone)
	if _, err := m.kube.CoreV1().Nodes().Patch(m.ctx, name, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
		m.t.Fatalf("label node %s: %v", name, err)
	}
}

// service creates a ClusterIP Service with an http port (80 → 8080).
func (m *member) service(name string, labels map[string]string, mods ...func(*corev1.Service)) *corev1.Service {
	m.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP, AppProtocol: ptr.To("http")}},
		},
	}
	for _, mod := range mods {
		mod(svc)
	}
	svc, err := m.kube.CoreV1().Services(ns).Create(m.ctx, svc, metav1.CreateOptions{})
	if err != nil {
		m.t.Fatalf("create service %s: %v", name, err)
	}
	return svc
}

// slice creates the EndpointSlice the EndpointSlice controller would for svc.
func (m *member) slice(svc *corev1.Service, at discoveryv1.AddressType, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	m.t.Helper()
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    svc.Namespace,
			GenerateName: svc.Name + "-",
			Labels: map[string]string{
				discoveryv1.LabelServiceName: svc.Name,
				discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
			},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(svc, corev1.SchemeGroupVersion.WithKind("Service"))},
		},
		AddressType: at,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP), AppProtocol: ptr.To("http")}},
		Endpoints:   eps,
	}
	s, err := m.kube.DiscoveryV1().EndpointSlices(ns).Create(m.ctx, s, metav1.CreateOptions{})
	if err != nil {
		m.t.Fatalf("create endpoint slice of %s: %v", svc.Name, err)
	}
	return s
}

func (m *member) updateSlice(s *discoveryv1.EndpointSlice, mod func(*discoveryv1.EndpointSlice)) *discoveryv1.EndpointSlice {
	m.t.Helper()
	s = s.DeepCopy()
	mod(s)
	s, err := m.kube.DiscoveryV1().EndpointSlices(ns).Update(m.ctx, s, metav1.UpdateOptions{})
	if err != nil {
		m.t.Fatalf("update endpoint slice %s: %v", s.Name, err)
	}
	return s
}

func (m *member) export(name string) {
	m.t.Helper()
	se := &mcsv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if _, err := m.mcs.MulticlusterV1alpha1().ServiceExports(ns).Create(m.ctx, se, metav1.CreateOptions{}); err != nil {
		m.t.Fatalf("create service export %s: %v", name, err)
	}
}

// podEndpoint is an endpoint of a pod on node, with the conditions the EndpointSlice
// controller sets. zone is set only when non-empty: the controller copies the node's,
// other slice owners may leave it to consumers.
func podEndpoint(addr, pod, node, zone string, ready bool) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{
		Addresses:  []string{addr},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready), Terminating: ptr.To(false)},
		NodeName:   ptr.To(node),
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod},
	}
	if zone != "" {
		e.Zone = ptr.To(zone)
	}
	return e
}

// installServiceExportCRD installs the ServiceExport CRD that ships in the mcs-api
// module.
func installServiceExportCRD(t *testing.T, ctx context.Context, cp *localkube.ControlPlane) {
	t.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(mcscrd.ServiceExportCRD, crd); err != nil {
		t.Fatalf("decode ServiceExport CRD: %v", err)
	}
	if err := crds.Install(ctx, cp.Config, []*apiextensionsv1.CustomResourceDefinition{crd}, waitFor); err != nil {
		t.Fatal(err)
	}
}

// startPublisher runs a Publisher until the test ends, and checks then that Run
// returned nil promptly.
func startPublisher(t *testing.T, opts Options) *Publisher {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Errorf("Run did not return within %s of cancel", waitFor)
		}
	})
	return p
}

// TestPublisher runs Publishers against a real kube-apiserver.
func TestPublisher(t *testing.T) {
	ctx := testContext(t)
	// Without CRDs: the ServiceExport API is installed halfway through.
	cp, err := localkube.Start(ctx, localkube.Options{Name: "member", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Stop)
	m := &member{t: t, ctx: ctx, kube: kubernetes.NewForConfigOrDie(cp.Config), mcs: mcsclient.NewForConfigOrDie(cp.Config)}
	// Cleanups run last-registered first: this one runs once every Publisher has
	// stopped, and before the control plane does. Idle client connections to the
	// API server may stay open.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, ignore,
			goleak.IgnoreTopFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		)
	})

	// The cluster before any agent runs.
	if _, err := m.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m.node("node-a", "zone-a")
	m.node("node-b", "zone-b")
	m.node("node-c", "")
	cart := m.service("cart", map[string]string{"app": "cart"})
	web := m.service("web", map[string]string{"app": "web", "tier": "front"})
	pay := m.service("pay", nil)
	internal := m.service("internal", nil)
	m.service("alias", nil, func(s *corev1.Service) {
		s.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "alias.example.com"}
	})
	// cart's slice has no zones, as a slice owner other than the controller may
	// write it: zones come from the nodes.
	cartSlice := m.slice(cart, discoveryv1.AddressTypeIPv4,
		podEndpoint("192.0.2.1", "cart-1", "node-a", "", true),
		podEndpoint("192.0.2.2", "cart-2", "node-b", "", true))
	// web is dual-stack, with zones in its slices that differ from the nodes'.
	m.slice(web, discoveryv1.AddressTypeIPv4, podEndpoint("192.0.2.3", "web-1", "node-a", "zone-slice", true))
	m.slice(web, discoveryv1.AddressTypeIPv6, podEndpoint("2001:db8::3", "web-1", "node-a", "zone-slice", true))
	m.slice(pay, discoveryv1.AddressTypeIPv4, podEndpoint("192.0.2.4", "pay-1", "node-c", "", true))
	m.slice(internal, discoveryv1.AddressTypeIPv4, podEndpoint("192.0.2.5", "internal-1", "node-c", "", true))

	globals := []model.GlobalService{
		{Namespace: ns, Name: "cart", Hostname: "cart.shop.global", Service: &model.ServiceRef{Namespace: ns, Name: "cart"}},
		{Namespace: ns, Name: "frontends", Hostname: "web.shop.global", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "front"}}},
		{Namespace: ns, Name: "internal", Hostname: "internal.shop.global", Service: &model.ServiceRef{Namespace: ns, Name: "internal"}, Clusters: []string{"west-1"}},
		{Namespace: ns, Name: "alias", Hostname: "alias.shop.global", Service: &model.ServiceRef{Namespace: ns, Name: "alias"}},
	}
	key := func(name string) string { return keyspace.ServiceEndpoints(cluster, ns, name) }

	t.Run("without the ServiceExport API", func(t *testing.T) {
		const probe = "probe-1"
		view := newFakeView(globals, nil)
		view.open()
		sink := newRecordingSink(view)
		startPublisher(t, Options{Cluster: probe, Kube: m.kube, MCS: m.mcs, Sink: sink, View: view, Logger: testLogger(t)})
		testutil.Eventually(t, waitFor, "the first pass", testutil.Check(func() (bool, string) {
			return sink.synced() != nil, "not synced"
		}))

		if got := promtest.ToFloat64(errorsTotal.WithLabelValues(probe, reasonDiscovery)); got != 0 {
			t.Errorf("discovery errors = %v, want 0: a missing API is not an error", got)
		}
		want := []string{keyspace.ServiceEndpoints(probe, ns, "cart"), keyspace.ServiceEndpoints(probe, ns, "web")}
		if got := slices.Sorted(maps.Keys(sink.synced())); !slices.Equal(got, want) {
			t.Errorf("published %v, want %v", got, want)
		}
	})

	installServiceExportCRD(t, ctx, cp)
	m.export("pay")
	// Another service's export that was already being deleted would not count;
	// exports of Services that do not exist publish nothing.
	m.export("ghost")

	// A previous run published "gone"; the view also (wrongly) lists a key of
	// another cluster, which must never be touched.
	foreign := keyspace.ServiceEndpoints("west-1", ns, "cart")
	// Counters are package-level: only what this Publisher adds counts.
	upserts0 := promtest.ToFloat64(publishOpsTotal.WithLabelValues(cluster, opUpsert))
	deletes0 := promtest.ToFloat64(publishOpsTotal.WithLabelValues(cluster, opDelete))
	view := newFakeView(globals, []string{key("cart"), key("gone"), foreign})
	sink := newRecordingSink(view)
	p := startPublisher(t, Options{Cluster: cluster, Kube: m.kube, MCS: m.mcs, Sink: sink, View: view, Logger: testLogger(t), ResyncPeriod: -1})

	t.Run("first pass waits for the view, prunes, then marks synced", func(t *testing.T) {
		select {
		case <-view.waiting:
		case <-time.After(waitFor):
			t.Fatal("Publisher never waited for the view")
		}
		// The informers are synced (WaitSynced comes after them) and the view is not:
		// nothing may have been published.
		if ops, _ := sink.calls(); len(ops) > 0 {
			t.Fatalf("published before the view synced: %v", ops)
		}
		view.open()
		testutil.Eventually(t, waitFor, "the first pass", testutil.Check(func() (bool, string) { return sink.synced() != nil, "not synced" }))

		ops, early := sink.calls()
		if len(early) > 0 {
			t.Errorf("calls before the view synced: %v", early)
		}
		if last := ops[len(ops)-1]; last.Op != "synced" {
			t.Errorf("last call of the first pass is %v, want MarkSynced", last)
		}
		wantKeys := []string{key("cart"), key("pay"), key("web")}
		if got := slices.Sorted(maps.Keys(sink.synced())); !slices.Equal(got, wantKeys) {
			t.Errorf("at MarkSynced the sink held %v, want %v", got, wantKeys)
		}
		if !slices.Contains(ops, sinkOp{"delete", key("gone")}) {
			t.Errorf("stale key %s not deleted in the first pass: %v", key("gone"), ops)
		}
		for _, op := range ops {
			if op.Key == foreign {
				t.Errorf("touched another cluster's key: %v", op)
			}
		}

		checkRecord(t, sink, "cart", []string{ExportedByGlobalService},
			"192.0.2.1(zone=\"zone-a\" ready=true serving=true terminating=false ref=Pod/cart-1 ports=[{http 8080}])",
			"192.0.2.2(zone=\"zone-b\" ready=true serving=true terminating=false ref=Pod/cart-2 ports=[{http 8080}])")
		checkRecord(t, sink, "web", []string{ExportedByGlobalService},
			"192.0.2.3(zone=\"zone-slice\" ready=true serving=true terminating=false ref=Pod/web-1 ports=[{http 8080}])",
			"2001:db8::3(zone=\"zone-slice\" ready=true serving=true terminating=false ref=Pod/web-1 ports=[{http 8080}])")
		checkRecord(t, sink, "pay", []string{ExportedByServiceExport},
			"192.0.2.4(zone=\"\" ready=true serving=true terminating=false ref=Pod/pay-1 ports=[{http 8080}])")
		rec := sink.get(t, key("cart"))
		if want := []model.ServicePort{{Name: "http", Port: 80, Protocol: "TCP", AppProtocol: "http"}}; !slices.Equal(rec.Ports, want) {
			t.Errorf("cart ports = %v, want %v", rec.Ports, want)
		}

		if got := promtest.ToFloat64(exportedServices.WithLabelValues(cluster)); got != 3 {
			t.Errorf("exported services gauge = %v, want 3", got)
		}
		if got := promtest.ToFloat64(publishedEndpoints.WithLabelValues(cluster)); got != 5 {
			t.Errorf("endpoints gauge = %v, want 5", got)
		}
	})

	t.Run("scale up", func(t *testing.T) {
		cartSlice = m.updateSlice(cartSlice, func(s *discoveryv1.EndpointSlice) {
			s.Endpoints = append(s.Endpoints, podEndpoint("192.0.2.6", "cart-3", "node-c", "", true))
		})
		waitRecord(t, sink, "cart", []string{ExportedByGlobalService},
			"192.0.2.1(zone=\"zone-a\" ready=true serving=true terminating=false ref=Pod/cart-1 ports=[{http 8080}])",
			"192.0.2.2(zone=\"zone-b\" ready=true serving=true terminating=false ref=Pod/cart-2 ports=[{http 8080}])",
			"192.0.2.6(zone=\"\" ready=true serving=true terminating=false ref=Pod/cart-3 ports=[{http 8080}])")
	})

	t.Run("readiness flips", func(t *testing.T) {
		cartSlice = m.updateSlice(cartSlice, func(s *discoveryv1.EndpointSlice) {
			s.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
		})
		waitRecord(t, sink, "cart", []string{ExportedByGlobalService},
			"192.0.2.1(zone=\"zone-a\" ready=false serving=true terminating=true ref=Pod/cart-1 ports=[{http 8080}])",
			"192.0.2.2(zone=\"zone-b\" ready=true serving=true terminating=false ref=Pod/cart-2 ports=[{http 8080}])",
			"192.0.2.6(zone=\"\" ready=true serving=true terminating=false ref=Pod/cart-3 ports=[{http 8080}])")
	})

	t.Run("scale down", func(t *testing.T) {
		cartSlice = m.updateSlice(cartSlice, func(s *discoveryv1.EndpointSlice) {
			s.Endpoints = slices.Delete(s.Endpoints, 0, 2)
		})
		waitRecord(t, sink, "cart", []string{ExportedByGlobalService},
			"192.0.2.6(zone=\"\" ready=true serving=true terminating=false ref=Pod/cart-3 ports=[{http 8080}])")
	})

	t.Run("a record says when its change was seen, and only a change writes", func(t *testing.T) {
		upserts := func() int { ops, _ := sink.calls(); return countOps(ops, "upsert", key("cart")) }
		before, n0 := time.Now(), upserts()
		// An update that changes nothing published (a label of the slice) rebuilds
		// cart's record, equal but for the time: no write.
		cartSlice = m.updateSlice(cartSlice, func(s *discoveryv1.EndpointSlice) { s.Labels["touched"] = "1" })
		// One worker takes items in order: once pay's change is published, cart's
		// update has been handled.
		paySlices, err := m.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=pay"})
		if err != nil || len(paySlices.Items) != 1 {
			t.Fatalf("pay's slices: %v, %v", paySlices, err)
		}
		paySlice := m.updateSlice(&paySlices.Items[0], func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Conditions.Ready = ptr.To(false) })
		// pay is ready again for the next tests.
		defer func() {
			m.updateSlice(paySlice, func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Conditions.Ready = ptr.To(true) })
			waitRecord(t, sink, "pay", []string{ExportedByServiceExport},
				"192.0.2.4(zone=\"\" ready=true serving=true terminating=false ref=Pod/pay-1 ports=[{http 8080}])")
		}()
		waitRecord(t, sink, "pay", []string{ExportedByServiceExport},
			"192.0.2.4(zone=\"\" ready=false serving=true terminating=false ref=Pod/pay-1 ports=[{http 8080}])")
		if n := upserts(); n != n0 {
			t.Errorf("cart written %d times by an update that changed nothing in its record, want 0", n-n0)
		}
		if at := sink.get(t, key("pay")).ChangedAt; at.Before(before) || at.After(time.Now()) {
			t.Errorf("pay's record says it changed at %v, want between the update (%v) and now", at, before)
		}

		// The writer acknowledges pay's value: each stage is observed once, and only
		// for the value handed over last.
		stale := sink.value(key("cart"))
		counts := func() []uint64 {
			return []uint64{histogramCount(t, publishStageSeconds, cluster, stageQueue), histogramCount(t, publishStageSeconds, cluster, stageBuild),
				histogramCount(t, publishStageSeconds, cluster, stageWrite), histogramCount(t, publishLatencySeconds, cluster)}
		}
		c0 := counts()
		p.Written(key("cart"), append(slices.Clone(stale), ' ')) // not what was handed over
		p.Written(key("pay"), sink.value(key("pay")))
		p.Written(key("pay"), sink.value(key("pay"))) // already acknowledged
		for i, c := range counts() {
			if c != c0[i]+1 {
				t.Errorf("publish histogram %d went from %d to %d figures, want one more", i, c0[i], c)
			}
		}
	})

	t.Run("node zones", func(t *testing.T) {
		// node-c had no zone: cart-3 and pay-1 take the new one. node-a's change does
		// not touch web, whose slices carry their own zone.
		m.setNodeZone("node-c", "zone-c")
		m.setNodeZone("node-a", "zone-a2")
		waitRecord(t, sink, "cart", []string{ExportedByGlobalService},
			"192.0.2.6(zone=\"zone-c\" ready=true serving=true terminating=false ref=Pod/cart-3 ports=[{http 8080}])")
		waitRecord(t, sink, "pay", []string{ExportedByServiceExport},
			"192.0.2.4(zone=\"zone-c\" ready=true serving=true terminating=false ref=Pod/pay-1 ports=[{http 8080}])")
		checkRecord(t, sink, "web", []string{ExportedByGlobalService},
			"192.0.2.3(zone=\"zone-slice\" ready=true serving=true terminating=false ref=Pod/web-1 ports=[{http 8080}])",
			"2001:db8::3(zone=\"zone-slice\" ready=true serving=true terminating=false ref=Pod/web-1 ports=[{http 8080}])")
	})

	t.Run("export by a new ServiceExport", func(t *testing.T) {
		m.export("internal")
		waitRecord(t, sink, "internal", []string{ExportedByServiceExport},
			"192.0.2.5(zone=\"zone-c\" ready=true serving=true terminating=false ref=Pod/internal-1 ports=[{http 8080}])")
	})

	t.Run("export of a new Service by selector", func(t *testing.T) {
		web2 := m.service("web2", map[string]string{"tier": "front"})
		waitRecord(t, sink, "web2", []string{ExportedByGlobalService})
		m.slice(web2, discoveryv1.AddressTypeIPv4, podEndpoint("192.0.2.7", "web2-1", "node-b", "zone-b", false))
		waitRecord(t, sink, "web2", []string{ExportedByGlobalService},
			"192.0.2.7(zone=\"zone-b\" ready=false serving=false terminating=false ref=Pod/web2-1 ports=[{http 8080}])")
	})

	t.Run("unexport by deleting the ServiceExport", func(t *testing.T) {
		if err := m.mcs.MulticlusterV1alpha1().ServiceExports(ns).Delete(ctx, "pay", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitDeleted(t, sink, key("pay"))
	})

	t.Run("unexport by a GlobalService change", func(t *testing.T) {
		view.setGlobals(slices.DeleteFunc(slices.Clone(globals), func(g model.GlobalService) bool { return g.Name == "cart" }))
		p.GlobalServicesChanged()
		waitDeleted(t, sink, key("cart"))
	})

	t.Run("unexport by deleting the Service", func(t *testing.T) {
		if err := m.kube.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitDeleted(t, sink, key("web"))
	})

	t.Run("final state", func(t *testing.T) {
		want := []string{key("internal"), key("web2")}
		if got := sink.keys(); !slices.Equal(got, want) {
			t.Errorf("sink holds %v, want %v", got, want)
		}
		ops, _ := sink.calls()
		if n := countOps(ops, "delete", key("gone")); n != 1 {
			t.Errorf("stale key deleted %d times, want once", n)
		}
		if n := countOps(ops, "synced"); n != 1 {
			t.Errorf("MarkSynced called %d times, want 1", n)
		}
		for _, op := range ops {
			if k, err := keyspace.Parse(op.Key); op.Key != "" && (err != nil || k.Cluster != cluster) {
				t.Errorf("call outside the cluster's prefix: %v", op)
			}
		}
		if got := promtest.ToFloat64(exportedServices.WithLabelValues(cluster)); got != 2 {
			t.Errorf("exported services gauge = %v, want 2", got)
		}
		if got := promtest.ToFloat64(publishOpsTotal.WithLabelValues(cluster, opDelete)) - deletes0; got != float64(countOps(ops, "delete")) {
			t.Errorf("delete counter grew by %v, sink saw %d", got, countOps(ops, "delete"))
		}
		if got := promtest.ToFloat64(publishOpsTotal.WithLabelValues(cluster, opUpsert)) - upserts0; got != float64(countOps(ops, "upsert")) {
			t.Errorf("upsert counter grew by %v, sink saw %d", got, countOps(ops, "upsert"))
		}
	})

}

// checkRecord checks the current record of shop/<name>; endpoints are as describe
// prints them.
func checkRecord(t *testing.T, sink *recordingSink, name string, exportedBy []string, endpoints ...string) {
	t.Helper()
	if ok, why := recordIs(t, sink, name, exportedBy, endpoints); !ok {
		t.Errorf("record of %s: %s", name, why)
	}
}

// waitRecord waits until the record of shop/<name> is as given.
func waitRecord(t *testing.T, sink *recordingSink, name string, exportedBy []string, endpoints ...string) {
	t.Helper()
	testutil.Eventually(t, waitFor, "the record of "+name, testutil.Check(func() (bool, string) { return recordIs(t, sink, name, exportedBy, endpoints) }))
}

func recordIs(t *testing.T, sink *recordingSink, name string, exportedBy, endpoints []string) (bool, string) {
	rec := sink.get(t, keyspace.ServiceEndpoints(cluster, ns, name))
	want := fmt.Sprintf("exportedBy=%v endpoints=[%s]", exportedBy, strings.Join(endpoints, " "))
	got := describe(rec)
	return got == want, fmt.Sprintf("\n got %s\nwant %s", got, want)
}

func waitDeleted(t *testing.T, sink *recordingSink, key string) {
	t.Helper()
	testutil.Eventually(t, waitFor, "deletion of "+key, testutil.Check(func() (bool, string) {
		return !slices.Contains(sink.keys(), key), fmt.Sprintf("sink holds %v", sink.keys())
	}))

}

// countOps counts the calls of kind op, to key if one is given.
func countOps(ops []sinkOp, op string, key ...string) int {
	n := 0
	for _, o := range ops {
		if o.Op == op && (len(key) == 0 || o.Key == key[0]) {
			n++
		}
	}
	return n
}

func testLogger(t *testing.T) logr.Logger {
	return testr.NewWithOptions(t, testr.Options{Verbosity: 1})
}
