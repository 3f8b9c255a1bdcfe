package publish

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
)

// indexByPod maps "<namespace>/<pod>" to the EndpointSlices with an endpoint whose
// target is that pod.
const indexByPod = "pod"

// ServiceAccounts returns the Kubernetes service accounts svc's endpoints run as,
// sorted and without duplicates: the valid names of its ServiceAccountsAnnotation
// when it names at least one, else the accounts of the pods behind the endpoints of
// its slices among endpointSlices (same selection as Build). podAccount returns the
// service account of a pod of svc's namespace, false when the pod is unknown (its
// endpoint then contributes nothing). invalid are the annotation's entries that are
// not service account names, for the caller to report.
//
// None found is not an error: readers then take the account to be "default", the
// account of a pod that names none.
func ServiceAccounts(svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, podAccount func(name string) (string, bool)) (accounts, invalid []string) {
	if value, ok := svc.Annotations[v1.ServiceAccountsAnnotation]; ok {
		for _, name := range strings.Split(value, ",") {
			name = strings.TrimSpace(name)
			switch {
			case name == "":
			case len(validation.IsDNS1123Subdomain(name)) > 0:
				invalid = append(invalid, name)
			default:
				accounts = append(accounts, name)
			}
		}
		if len(accounts) > 0 {
			return slices.Compact(slices.Sorted(slices.Values(accounts))), invalid
		}
	}
	for _, s := range endpointSlices {
		if s == nil || s.Namespace != svc.Namespace || s.Labels[discoveryv1.LabelServiceName] != svc.Name {
			continue
		}
		for _, e := range s.Endpoints {
			if name, ok := podOf(s.Namespace, e); ok {
				if sa, ok := podAccount(name); ok {
					accounts = append(accounts, sa)
				}
			}
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(accounts))), invalid
}

// podOf returns the name of the pod an endpoint targets, if it targets a pod of ns.
func podOf(ns string, e discoveryv1.Endpoint) (string, bool) {
	ref := e.TargetRef
	if ref == nil || ref.Kind != "Pod" || ref.Name == "" || (ref.Namespace != "" && ref.Namespace != ns) {
		return "", false
	}
	return ref.Name, true
}

// podsOfSlice is the index function of indexByPod.
func podsOfSlice(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	var keys []string
	for _, e := range s.Endpoints {
		if name, ok := podOf(s.Namespace, e); ok && !slices.Contains(keys, s.Namespace+"/"+name) {
			keys = append(keys, s.Namespace+"/"+name)
		}
	}
	return keys, nil
}

// newPodInformer watches the pods that may back endpoints: not those that finished.
// Its cost is a watch of every running pod's changes; trim keeps of each only what
// ServiceAccounts reads (a pod's service account cannot change), so the cache holds
// a few hundred bytes per pod.
func newPodInformer(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
	return coreinformers.NewFilteredPodInformer(c, metav1.NamespaceAll, resync, cache.Indexers{},
		func(o *metav1.ListOptions) {
			o.FieldSelector = fmt.Sprintf("status.phase!=%s,status.phase!=%s", corev1.PodSucceeded, corev1.PodFailed)
		})
}

// slimPod is what the Publisher keeps of a pod: its service account, and its labels
// (endpoint records carry some, see EndpointLabels).
func slimPod(pod *corev1.Pod) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
			Labels: pod.Labels},
		Spec: corev1.PodSpec{ServiceAccountName: pod.Spec.ServiceAccountName},
	}
}

// podAccount returns a lookup of the service accounts of namespace ns's pods in the
// pod cache. A pod that names none runs as "default".
func (p *Publisher) podAccount(ns string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		obj, ok, err := p.pods.GetByKey(ns + "/" + name)
		if err != nil || !ok {
			return "", false
		}
		sa := obj.(*corev1.Pod).Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		return sa, true
	}
}

// podHandler re-evaluates the Services with an endpoint on a pod that appeared or
// went away, or whose labels changed: an EndpointSlice may name a pod before the pod
// cache holds it, and endpoint records carry some of the labels. A pod's service
// account never changes.
func (p *Publisher) podHandler() cache.ResourceEventHandler {
	enqueue := func(obj any) {
		nn, ok := objectName(obj)
		if !ok {
			return
		}
		objs, _ := p.slices.ByIndex(indexByPod, nn.String()) // the index exists
		for _, o := range objs {
			p.enqueue(sliceService(o))
		}
	}
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if !initial {
				enqueue(obj)
			}
		},
		UpdateFunc: func(old, obj any) {
			if o, ok := old.(*corev1.Pod); ok {
				if n, ok := obj.(*corev1.Pod); ok && !maps.Equal(o.Labels, n.Labels) {
					enqueue(obj)
				}
			}
		},
		DeleteFunc: enqueue,
	}
}
