package publish

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

func TestServiceAccountsOf(t *testing.T) {
	svc := func(annotation *string) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cart"}}
		if annotation != nil {
			s.Annotations = map[string]string{v1.ServiceAccountsAnnotation: *annotation}
		}
		return s
	}
	slice := func(namespace, service string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: service + "-x",
			Labels: map[string]string{discoveryv1.LabelServiceName: service}}, Endpoints: eps}
	}
	pod := func(name string) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: name}}
	}
	pods := map[string]string{"cart-1": "cart", "cart-2": "cart", "cart-3": "cart-canary", "other-1": "other"}
	lookup := func(name string) (string, bool) { sa, ok := pods[name]; return sa, ok }
	slices_ := []*discoveryv1.EndpointSlice{
		slice(ns, "cart", pod("cart-2"), pod("cart-1"), pod("unknown")),
		slice(ns, "cart", pod("cart-3"), discoveryv1.Endpoint{TargetRef: &corev1.ObjectReference{Kind: "Node", Name: "cart-1"}}),
		slice(ns, "other", pod("other-1")),         // another Service's
		slice("elsewhere", "cart", pod("other-1")), // another namespace's
	}
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		name                  string
		annotation            *string
		wantAccounts, invalid []string
	}{
		{"the pods' accounts, sorted, deduplicated", nil, []string{"cart", "cart-canary"}, nil},
		{"the annotation overrides", str(" web , cart,web,"), []string{"cart", "web"}, nil},
		{"invalid entries are reported and skipped", str("web,Not_A/Name"), []string{"web"}, []string{"Not_A/Name"}},
		{"an annotation naming nothing valid falls back to the pods", str("Bad!"), []string{"cart", "cart-canary"}, []string{"Bad!"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, invalid := ServiceAccounts(svc(tc.annotation), slices_, lookup)
			if !slices.Equal(got, tc.wantAccounts) || !slices.Equal(invalid, tc.invalid) {
				t.Errorf("got %v (invalid %v), want %v (invalid %v)", got, invalid, tc.wantAccounts, tc.invalid)
			}
		})
	}
}

// TestPublishedServiceAccounts: a Publisher against a real kube-apiserver publishes the
// service accounts of the pods behind a Service's endpoints, catches up when a slice
// names a pod before the pod exists, and takes a Service's annotation over the pods.
func TestPublishedServiceAccounts(t *testing.T) {
	ctx := testContext(t)
	cp, err := localkube.Start(ctx, localkube.Options{Name: "member", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Stop)
	m := &member{t: t, ctx: ctx, kube: kubernetes.NewForConfigOrDie(cp.Config)}
	if _, err := m.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Without a controller manager, nothing makes service accounts: the API server's
	// admission wants the pods' to exist.
	for _, sa := range []string{"default", "cart", "cart-canary"} {
		if _, err := m.kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createPod := func(name, sa string) {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		if _, err := m.kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	m.node("node-a", "zone-a")
	createPod("cart-1", "cart")
	createPod("cart-2", "") // runs as default
	cart := m.service("cart", nil)
	slice := m.slice(cart, discoveryv1.AddressTypeIPv4,
		podEndpoint("192.0.2.1", "cart-1", "node-a", "", true), podEndpoint("192.0.2.2", "cart-2", "node-a", "", true))
	web := m.service("web", nil, func(s *corev1.Service) {
		s.Annotations = map[string]string{v1.ServiceAccountsAnnotation: "web,web-v2,-bad-"}
	})
	m.slice(web, discoveryv1.AddressTypeIPv4, podEndpoint("192.0.2.9", "web-1", "node-a", "", true))

	globals := []model.GlobalService{
		{Namespace: ns, Name: "cart", Hostname: "cart.shop.global", Service: &model.ServiceRef{Namespace: ns, Name: "cart"}},
		{Namespace: ns, Name: "web", Hostname: "web.shop.global", Service: &model.ServiceRef{Namespace: ns, Name: "web"}},
	}
	const accountsCluster = "accounts-1"
	view := newFakeView(globals, nil)
	view.open()
	sink := newRecordingSink(view)
	p := startPublisher(t, Options{Cluster: accountsCluster, Kube: m.kube, Sink: sink, View: view, Logger: testLogger(t), ResyncPeriod: -1})
	accounts := func(name string, want ...string) {
		t.Helper()
		key := keyspace.ServiceEndpoints(accountsCluster, ns, name)
		testutil.Eventually(t, waitFor, name+"'s accounts", testutil.Check(func() (bool, string) {
			rec := sink.get(t, key)
			if rec == nil {
				return false, "not published"
			}
			return slices.Equal(rec.ServiceAccounts, want), "accounts " + describeAccounts(rec.ServiceAccounts)
		}))
	}
	accounts("cart", "cart", "default")
	accounts("web", "web", "web-v2")
	if got := promtest.ToFloat64(errorsTotal.WithLabelValues(accountsCluster, reasonAnnotation)); got < 1 {
		t.Errorf("annotation errors = %v, want the invalid entry counted", got)
	}

	// The slice names a pod the cache does not hold yet, as when the EndpointSlice
	// controller is quicker than the pod informer: the pod's arrival completes it.
	m.updateSlice(slice, func(s *discoveryv1.EndpointSlice) {
		s.Endpoints = append(s.Endpoints, podEndpoint("192.0.2.3", "cart-3", "node-a", "", true))
	})
	testutil.Eventually(t, waitFor, "the endpoint of the pod not yet created", testutil.Check(func() (bool, string) {
		rec := sink.get(t, keyspace.ServiceEndpoints(accountsCluster, ns, "cart"))
		return rec != nil && len(rec.Endpoints) == 3, "not yet"
	}))
	accounts("cart", "cart", "default")
	createPod("cart-3", "cart-canary")
	accounts("cart", "cart", "cart-canary", "default")

	// A change of a pod's labels is published, only the keys that can matter: the
	// default ones, then those a traffic policy's subsets name once it arrives.
	labels := func(want map[string]string) {
		t.Helper()
		testutil.Eventually(t, waitFor, "cart-1's labels", testutil.Check(func() (bool, string) {
			rec := sink.get(t, keyspace.ServiceEndpoints(accountsCluster, ns, "cart"))
			for _, e := range rec.Endpoints {
				if e.Address == "192.0.2.1" {
					return maps.Equal(e.Labels, want), fmt.Sprintf("labels %v", e.Labels)
				}
			}
			return false, "no endpoint 192.0.2.1"
		}))
	}
	pod, err := m.kube.CoreV1().Pods(ns).Get(ctx, "cart-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Labels = map[string]string{"version": "v2", "track": "canary", "pod-template-hash": "abc"}
	if _, err := m.kube.CoreV1().Pods(ns).Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels(map[string]string{"version": "v2"})
	view.setTraffic(&model.TrafficPolicy{Namespace: ns, Name: "cart", GlobalService: "cart",
		Subsets: []model.Subset{{Name: "canary", Labels: map[string]string{"track": "canary"}}}})
	p.GlobalServicesChanged() // as the agent does on a traffic policy's change
	labels(map[string]string{"version": "v2", "track": "canary"})
}

func describeAccounts(a []string) string {
	if a == nil {
		return "none"
	}
	return "[" + strings.Join(a, ",") + "]"
}
