package e2e

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/clusteragent"
	"github.com/meshfed/meshfed/internal/dev/sandbox"
	"github.com/meshfed/meshfed/internal/dev/testnet"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// endpoint is one backend as the test wants it published.
type endpoint struct {
	addr                        string
	zone                        string
	ready, serving, terminating bool
	// pod, if set, is the Pod the endpoint's targetRef names (its labels are the
	// endpoint's, see publish.EndpointLabels): an API object only, no kubelet runs it.
	pod string
}

// service is a member Service and its endpoints, as the test wants them: the ground
// truth that the agents' views must equal.
type service struct {
	namespace, name string
	labels          map[string]string
	port            int32 // the Service port "grpc", served on the same target port
	endpoints       []endpoint
	// accounts, if any, are the service accounts the endpoints run as (the Service's
	// annotation v1alpha1.ServiceAccountsAnnotation: there are no pods).
	accounts []string
}

func ready(addr, zone string) endpoint {
	return endpoint{addr: addr, zone: zone, ready: true, serving: true}
}

// apply creates or updates the Service and its EndpointSlices in a member cluster, the
// way the EndpointSlice controller would: endpoints split over two slices.
func (s *service) apply(ctx context.Context, kube kubernetes.Interface) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.namespace}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	var annotations map[string]string
	if len(s.accounts) > 0 {
		annotations = map[string]string{v1.ServiceAccountsAnnotation: strings.Join(s.accounts, ",")}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.namespace, Name: s.name, Labels: s.labels, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": s.name},
			Ports: []corev1.ServicePort{{Name: "grpc", Port: s.port, TargetPort: intstr.FromInt32(s.port),
				Protocol: corev1.ProtocolTCP}},
		},
	}
	if cur, err := kube.CoreV1().Services(s.namespace).Get(ctx, s.name, metav1.GetOptions{}); err == nil {
		cur.Labels, cur.Annotations = s.labels, annotations
		if _, err := kube.CoreV1().Services(s.namespace).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return err
		}
	} else if _, err := kube.CoreV1().Services(s.namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	half := (len(s.endpoints) + 1) / 2
	for i, eps := range [][]endpoint{s.endpoints[:half], s.endpoints[half:]} {
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.namespace, Name: fmt.Sprintf("%s-%d", s.name, i),
				Labels: map[string]string{
					discoveryv1.LabelServiceName: s.name,
					discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
				}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To(s.port), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		for _, e := range eps {
			ep := discoveryv1.Endpoint{
				Addresses: []string{e.addr},
				Zone:      ptr.To(e.zone),
				Conditions: discoveryv1.EndpointConditions{
					Ready: ptr.To(e.ready), Serving: ptr.To(e.serving), Terminating: ptr.To(e.terminating),
				},
			}
			if e.pod != "" {
				ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: s.namespace, Name: e.pod}
			}
			slice.Endpoints = append(slice.Endpoints, ep)
		}
		slices := kube.DiscoveryV1().EndpointSlices(s.namespace)
		if cur, err := slices.Get(ctx, slice.Name, metav1.GetOptions{}); err == nil {
			slice.ResourceVersion = cur.ResourceVersion
			if _, err := slices.Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
				return err
			}
		} else if _, err := slices.Create(ctx, slice, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// delete removes the Service and its EndpointSlices.
func (s *service) delete(ctx context.Context, kube kubernetes.Interface) error {
	for i := range 2 {
		err := kube.DiscoveryV1().EndpointSlices(s.namespace).Delete(ctx, fmt.Sprintf("%s-%d", s.name, i), metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	err := kube.CoreV1().Services(s.namespace).Delete(ctx, s.name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// want is the canonical text of the ground truth.
func (s *service) want() string {
	var lines []string
	for _, e := range s.endpoints {
		lines = append(lines, fmt.Sprintf("%s zone=%s ready=%t serving=%t terminating=%t port=grpc:%d",
			e.addr, e.zone, e.ready, e.serving, e.terminating, s.port))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// got is the canonical text of a published record, in the same form as want.
func got(rec *model.ServiceEndpoints) string {
	var lines []string
	for _, e := range rec.Endpoints {
		var ports []string
		for _, p := range e.Ports {
			ports = append(ports, fmt.Sprintf("%s:%d", p.Name, p.Port))
		}
		lines = append(lines, fmt.Sprintf("%s zone=%s ready=%t serving=%t terminating=%t port=%s",
			e.Address, e.Zone, e.Ready, e.Serving, e.Terminating, strings.Join(ports, ",")))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// published returns what a view holds of a cluster's services, by namespace/name.
func published(v *clusteragent.DebugView, cluster string) map[string]*model.ServiceEndpoints {
	out := map[string]*model.ServiceEndpoints{}
	for _, c := range v.Clusters {
		if c.Name != cluster {
			continue
		}
		for _, s := range c.Services {
			out[s.Namespace+"/"+s.Name] = s
		}
	}
	return out
}

// matches says how the view's record of s in cluster differs from the ground truth,
// or nil if it equals it; s == nil wants the service absent.
func matches(v *clusteragent.DebugView, cluster, key string, s *service) error {
	rec := published(v, cluster)[key]
	switch {
	case s == nil && rec == nil:
		return nil
	case s == nil:
		return fmt.Errorf("%s in %s: still published", key, cluster)
	case rec == nil:
		return fmt.Errorf("%s in %s: not published", key, cluster)
	}
	if g, w := got(rec), s.want(); g != w {
		return fmt.Errorf("%s in %s:\n got:\n%s\nwant:\n%s", key, cluster, g, w)
	}
	if len(rec.Ports) != 1 || rec.Ports[0].Name != "grpc" || rec.Ports[0].Port != s.port {
		return fmt.Errorf("%s in %s: ports %+v, want grpc:%d", key, cluster, rec.Ports, s.port)
	}
	return nil
}

// zonalCart is shop/cart with perZone gRPC echo backends in every zone of every
// cluster of s, each answering "cluster/zone": the ground truth, by cluster, and
// setReady to change a cluster's (or one of its zones') readiness in place.
type zonalCart struct {
	t        *testing.T
	ctx      context.Context
	s        *sandbox.Sandbox
	services map[string]*service
}

func startZonalCart(t *testing.T, ctx context.Context, s *sandbox.Sandbox, perZone int) *zonalCart {
	return startZonalCartWith(t, ctx, s, perZone, false)
}

// startZonalCartWith is startZonalCart with, if mtls, backends that serve mTLS as
// proxyless gRPC xDS servers of their cluster's agent (the sandbox runs with MTLS and
// the workload identity shop/cart): each presents its cluster's shop/cart certificate,
// the account its cluster publishes for shop/cart.
func startZonalCartWith(t *testing.T, ctx context.Context, s *sandbox.Sandbox, perZone int, mtls bool) *zonalCart {
	t.Helper()
	host := testnet.New(t, perZone*2*len(s.Clusters))
	z := &zonalCart{t: t, ctx: ctx, s: s, services: map[string]*service{}}
	var specs []string
	i := 0
	for _, c := range s.Clusters {
		svc := &service{namespace: "shop", name: "cart", port: 8080}
		var xdsServer, certDir string
		if mtls {
			svc.accounts = []string{"cart"}
			xdsServer, certDir = forwardFrom(t, host, c.XDSAddr), waitCertDir(t, c, "shop/cart")
		}
		for _, zone := range c.Zones {
			for range perZone {
				addr := host.Addr(i).String()
				i++
				svc.endpoints = append(svc.endpoints, ready(addr, zone))
				spec := net.JoinHostPort(addr, "8080") + "=" + c.Name + "/" + zone
				if mtls {
					spec = xdsEchoSpec(net.JoinHostPort(addr, "8080"), c.Name+"/"+zone, xdsServer, c.Region, zone, certDir)
				}
				specs = append(specs, spec)
			}
		}
		z.services[c.Name] = svc
		if err := svc.apply(ctx, kubernetes.NewForConfigOrDie(c.Config())); err != nil {
			t.Fatal(err)
		}
	}
	host.Start(t, "grpc-echo", []string{meshfedTestBinary(t)}, grpcEchoEnv+"="+strings.Join(specs, ","))
	return z
}

// setReady sets the readiness of cluster's endpoints in zone ("" for every zone).
func (z *zonalCart) setReady(cluster, zone string, ready bool) {
	z.t.Helper()
	svc := z.services[cluster]
	for j := range svc.endpoints {
		if zone == "" || svc.endpoints[j].zone == zone {
			svc.endpoints[j].ready, svc.endpoints[j].serving = ready, ready
		}
	}
	if err := svc.apply(z.ctx, kubernetes.NewForConfigOrDie(z.s.Cluster(cluster).Config())); err != nil {
		z.t.Fatal(err)
	}
}
