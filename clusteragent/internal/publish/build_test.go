package publish

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

// testService is shop/cart with an http and a grpc port.
func testService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, AppProtocol: ptr.To("http")},
			{Name: "grpc", Port: 9090, Protocol: corev1.ProtocolTCP, AppProtocol: ptr.To("kubernetes.io/h2c")},
		}},
	}
}

// slice returns an EndpointSlice of shop/<service> with the given ports ("name",
// port pairs) and endpoints.
func slice(name, service string, at discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: at,
		Ports:       ports,
		Endpoints:   eps,
	}
}

func port(name string, p int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(p), Protocol: ptr.To(corev1.ProtocolTCP)}
}

// cartPorts are the slice ports of shop/cart.
var cartPorts = []discoveryv1.EndpointPort{port("http", 8080), port("grpc", 9090)}

// wantPorts are cartPorts as published: sorted by name.
var wantPorts = []model.EndpointPort{{Name: "grpc", Port: 9090}, {Name: "http", Port: 8080}}

// ep returns a ready endpoint; mods adjust it.
func ep(addr string, mods ...func(*discoveryv1.Endpoint)) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{
		Addresses:  []string{addr},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
	}
	for _, m := range mods {
		m(&e)
	}
	return e
}

func onNode(n string) func(*discoveryv1.Endpoint) {
	return func(e *discoveryv1.Endpoint) { e.NodeName = ptr.To(n) }
}
func inZone(z string) func(*discoveryv1.Endpoint) {
	return func(e *discoveryv1.Endpoint) { e.Zone = ptr.To(z) }
}
func pod(n string) func(*discoveryv1.Endpoint) {
	return func(e *discoveryv1.Endpoint) {
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: n}
	}
}
func conds(ready, serving, terminating *bool) func(*discoveryv1.Endpoint) {
	return func(e *discoveryv1.Endpoint) {
		e.Conditions = discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}
	}
}

// want returns a ready published endpoint with wantPorts; mods adjust it.
func want(addr string, mods ...func(*model.Endpoint)) model.Endpoint {
	e := model.Endpoint{Address: addr, Ready: true, Serving: true, Ports: wantPorts}
	for _, m := range mods {
		m(&e)
	}
	return e
}

func TestBuild(t *testing.T) {
	zones := map[string]string{"node-a": "zone-a", "node-b": "zone-b", "node-nozone": ""}
	wantServicePorts := []model.ServicePort{
		{Name: "http", Port: 80, Protocol: "TCP", AppProtocol: "http"},
		{Name: "grpc", Port: 9090, Protocol: "TCP", AppProtocol: "kubernetes.io/h2c"},
	}
	v4 := discoveryv1.AddressTypeIPv4
	v6 := discoveryv1.AddressTypeIPv6

	tests := map[string]struct {
		svc        *corev1.Service
		slices     []*discoveryv1.EndpointSlice
		exportedBy []string
		want       []model.Endpoint // Ports are wantServicePorts unless wantPorts is set
		wantPorts  []model.ServicePort
		wantBy     []string
	}{
		"no slices": {
			want: []model.Endpoint{},
		},
		"service ports in service order, without appProtocol": {
			svc: &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
					{Name: "z", Port: 2, Protocol: corev1.ProtocolUDP},
					{Name: "a", Port: 1, Protocol: corev1.ProtocolSCTP},
				}},
			},
			want:      []model.Endpoint{},
			wantPorts: []model.ServicePort{{Name: "z", Port: 2, Protocol: "UDP"}, {Name: "a", Port: 1, Protocol: "SCTP"}},
		},
		"exportedBy is sorted and deduplicated": {
			exportedBy: []string{ExportedByServiceExport, ExportedByGlobalService, ExportedByServiceExport},
			want:       []model.Endpoint{},
			wantBy:     []string{ExportedByGlobalService, ExportedByServiceExport},
		},
		"endpoints from several slices, sorted numerically, IPv4 first": {
			slices: []*discoveryv1.EndpointSlice{
				slice("cart-v6", "cart", v6, cartPorts, ep("fd00::2"), ep("fd00::10")),
				slice("cart-b", "cart", v4, cartPorts, ep("10.0.0.10")),
				slice("cart-a", "cart", v4, cartPorts, ep("10.0.0.9"), ep("10.0.0.100")),
			},
			want: []model.Endpoint{want("10.0.0.9"), want("10.0.0.10"), want("10.0.0.100"), want("fd00::2"), want("fd00::10")},
		},
		"nil conditions: ready and serving, not terminating": {
			slices: []*discoveryv1.EndpointSlice{slice("cart-a", "cart", v4, cartPorts, ep("10.0.0.1", conds(nil, nil, nil)))},
			want:   []model.Endpoint{want("10.0.0.1")},
		},
		"nil serving is true even when not ready (API docs, kube-proxy)": {
			slices: []*discoveryv1.EndpointSlice{slice("cart-a", "cart", v4, cartPorts, ep("10.0.0.1", conds(ptr.To(false), nil, nil)))},
			want:   []model.Endpoint{want("10.0.0.1", func(e *model.Endpoint) { e.Ready = false })},
		},
		"not ready, not serving": {
			slices: []*discoveryv1.EndpointSlice{slice("cart-a", "cart", v4, cartPorts, ep("10.0.0.1", conds(ptr.To(false), ptr.To(false), ptr.To(false))))},
			want:   []model.Endpoint{want("10.0.0.1", func(e *model.Endpoint) { e.Ready, e.Serving = false, false })},
		},
		"terminating but serving": {
			slices: []*discoveryv1.EndpointSlice{slice("cart-a", "cart", v4, cartPorts, ep("10.0.0.1", conds(ptr.To(false), ptr.To(true), ptr.To(true))))},
			want:   []model.Endpoint{want("10.0.0.1", func(e *model.Endpoint) { e.Ready, e.Terminating = false, true })},
		},
		"zones: endpoint's own beats its node's; node's; none": {
			slices: []*discoveryv1.EndpointSlice{slice("cart-a", "cart", v4, cartPorts,
				ep("10.0.0.1", inZone("zone-x"), onNode("node-a")),
				ep("10.0.0.2", onNode("node-b")),
				ep("10.0.0.3", onNode("node-unknown")),
				ep("10.0.0.4", onNode("node-nozone")),
				ep("10.0.0.5"),
				ep("10.0.0.6", inZone(""), onNode("node-a")),
			)},
			want: []model.Endpoint{
				want("10.0.0.1", func(e *model.Endpoint) { e.Zone = "zone-x" }),
				want("10.0.0.2", func(e *model.Endpoint) { e.Zone = "zone-b" }),
				want("10.0.0.3"), want("10.0.0.4"), want("10.0.0.5"),
				want("10.0.0.6", func(e *model.Endpoint) { e.Zone = "zone-a" }),
			},
		},
		"target refs": {
			slices: []*discoveryv1.EndpointSlice{slice("cart-a", "cart", v4, cartPorts,
				ep("10.0.0.1", pod("cart-1")),
				ep("10.0.0.2", func(e *discoveryv1.Endpoint) { e.TargetRef = &corev1.ObjectReference{Name: "vm-2"} }),
				ep("10.0.0.3"),
			)},
			want: []model.Endpoint{
				want("10.0.0.1", func(e *model.Endpoint) { e.TargetRef = "Pod/cart-1" }),
				want("10.0.0.2", func(e *model.Endpoint) { e.TargetRef = "vm-2" }),
				want("10.0.0.3"),
			},
		},
		"endpoint ports sorted by name; a port without number is left out": {
			slices: []*discoveryv1.EndpointSlice{slice("cart-a", "cart", v4,
				[]discoveryv1.EndpointPort{port("b", 2), {Name: ptr.To("all")}, port("a", 1), {Port: ptr.To[int32](3)}},
				ep("10.0.0.1"))},
			want: []model.Endpoint{want("10.0.0.1", func(e *model.Endpoint) {
				e.Ports = []model.EndpointPort{{Port: 3}, {Name: "a", Port: 1}, {Name: "b", Port: 2}}
			})},
		},
		"duplicate across slices: the ready copy wins": {
			slices: []*discoveryv1.EndpointSlice{
				slice("cart-a", "cart", v4, cartPorts, ep("10.0.0.1", conds(ptr.To(false), ptr.To(false), nil), pod("old"))),
				slice("cart-b", "cart", v4, cartPorts, ep("10.0.0.1", pod("new"))),
			},
			want: []model.Endpoint{want("10.0.0.1", func(e *model.Endpoint) { e.TargetRef = "Pod/new" })},
		},
		"duplicate across slices: serving beats neither": {
			slices: []*discoveryv1.EndpointSlice{
				slice("cart-b", "cart", v4, cartPorts, ep("10.0.0.1", conds(ptr.To(false), ptr.To(true), ptr.To(true)))),
				slice("cart-a", "cart", v4, cartPorts, ep("10.0.0.1", conds(ptr.To(false), ptr.To(false), ptr.To(true)))),
			},
			want: []model.Endpoint{want("10.0.0.1", func(e *model.Endpoint) { e.Ready, e.Terminating = false, true })},
		},
		"duplicate, equally available: the first slice by name wins": {
			slices: []*discoveryv1.EndpointSlice{
				slice("cart-b", "cart", v4, cartPorts, ep("10.0.0.1", inZone("zone-b"))),
				slice("cart-a", "cart", v4, cartPorts, ep("10.0.0.1", inZone("zone-a"))),
			},
			want: []model.Endpoint{want("10.0.0.1", func(e *model.Endpoint) { e.Zone = "zone-a" })},
		},
		"duplicate within one slice": {
			slices: []*discoveryv1.EndpointSlice{slice("cart-a", "cart", v4, cartPorts, ep("10.0.0.1"), ep("10.0.0.1"))},
			want:   []model.Endpoint{want("10.0.0.1")},
		},
		"same address with another port set is another endpoint": {
			slices: []*discoveryv1.EndpointSlice{
				slice("cart-a", "cart", v4, cartPorts, ep("10.0.0.1")),
				slice("cart-b", "cart", v4, []discoveryv1.EndpointPort{port("http", 8081)}, ep("10.0.0.1")),
			},
			want: []model.Endpoint{
				want("10.0.0.1"),
				want("10.0.0.1", func(e *model.Endpoint) { e.Ports = []model.EndpointPort{{Name: "http", Port: 8081}} }),
			},
		},
		"addresses are canonical; unparsable and empty ones are skipped; only the first counts": {
			slices: []*discoveryv1.EndpointSlice{
				slice("cart-v6", "cart", v6, cartPorts, ep("FD00:0::1"), ep("not-an-ip"), discoveryv1.Endpoint{}),
				slice("cart-v4", "cart", v4, cartPorts, ep("10.0.0.1", func(e *discoveryv1.Endpoint) { e.Addresses = append(e.Addresses, "10.0.0.2") })),
			},
			want: []model.Endpoint{want("10.0.0.1"), want("fd00::1")},
		},
		"FQDN slices, other services' and other namespaces' slices are ignored": {
			slices: []*discoveryv1.EndpointSlice{
				slice("cart-fqdn", "cart", discoveryv1.AddressTypeFQDN, cartPorts, ep("cart.example.com")),
				slice("pay-a", "pay", v4, cartPorts, ep("10.0.0.2")),
				func() *discoveryv1.EndpointSlice {
					s := slice("cart-x", "cart", v4, cartPorts, ep("10.0.0.3"))
					s.Namespace = "other"
					return s
				}(),
				func() *discoveryv1.EndpointSlice {
					s := slice("cart-unlabelled", "cart", v4, cartPorts, ep("10.0.0.4"))
					s.Labels = nil
					return s
				}(),
				nil,
				slice("cart-a", "cart", v4, cartPorts, ep("10.0.0.1")),
			},
			want: []model.Endpoint{want("10.0.0.1")},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			svc := tc.svc
			if svc == nil {
				svc = testService()
			}
			got := Build(svc, tc.slices, zones, tc.exportedBy)
			wantSP := tc.wantPorts
			if wantSP == nil {
				wantSP = wantServicePorts
			}
			wantRec := model.ServiceEndpoints{Namespace: "shop", Name: "cart", Ports: wantSP, Endpoints: tc.want, ExportedBy: tc.wantBy}
			if d := cmp.Diff(wantRec, got); d != "" {
				t.Errorf("Build mismatch (-want +got):\n%s", d)
			}
			if _, err := model.Encode(&got); err != nil {
				t.Errorf("Encode: %v", err)
			}
		})
	}
}

// TestBuildDeterministic checks that the order of slices and of endpoints within
// them never changes the encoded record.
func TestBuildDeterministic(t *testing.T) {
	v4 := discoveryv1.AddressTypeIPv4
	mk := func() []*discoveryv1.EndpointSlice {
		return []*discoveryv1.EndpointSlice{
			slice("cart-a", "cart", v4, cartPorts, ep("10.0.0.3", onNode("node-a")), ep("10.0.0.1", pod("p1")), ep("10.0.0.2", conds(ptr.To(false), nil, nil))),
			slice("cart-b", "cart", v4, cartPorts, ep("10.0.0.2", inZone("z")), ep("10.0.0.4")),
			slice("cart-c", "cart", v4, []discoveryv1.EndpointPort{port("http", 1), port("grpc", 2)}, ep("10.0.0.1"), ep("10.0.0.5")),
			slice("cart-v6", "cart", discoveryv1.AddressTypeIPv6, cartPorts, ep("fd00::1"), ep("fd00::1", conds(ptr.To(false), ptr.To(false), nil))),
		}
	}
	zones := map[string]string{"node-a": "zone-a"}
	exportedBy := []string{ExportedByGlobalService, ExportedByServiceExport}
	first := Build(testService(), mk(), zones, exportedBy)
	golden, err := model.Encode(&first)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		s := mk()
		rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		for _, sl := range s {
			rng.Shuffle(len(sl.Endpoints), func(i, j int) { sl.Endpoints[i], sl.Endpoints[j] = sl.Endpoints[j], sl.Endpoints[i] })
			rng.Shuffle(len(sl.Ports), func(i, j int) { sl.Ports[i], sl.Ports[j] = sl.Ports[j], sl.Ports[i] })
		}
		by := slices.Clone(exportedBy)
		slices.Reverse(by)
		rec := Build(testService(), s, zones, by)
		got, err := model.Encode(&rec)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, golden) {
			t.Fatalf("permutation %d encodes differently:\n got %s\nwant %s", i, got, golden)
		}
	}
}
