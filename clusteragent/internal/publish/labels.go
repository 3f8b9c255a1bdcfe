package publish

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

// DefaultEndpointLabels are the Pod label keys every endpoint record carries when its
// Pod has them, whatever the traffic policies say: the usual version labels, so that a
// canary subset by version works the moment its policy arrives.
var DefaultEndpointLabels = []string{"version", "app.kubernetes.io/version"}

// policyView is a View that knows the hub's traffic policies (*view.View).
type policyView interface {
	TrafficPolicies() []*model.TrafficPolicy
}

// LabelKeys are the Pod label keys endpoint records carry, in order of precedence:
// DefaultEndpointLabels, then every key a subset of policies selects by, sorted.
func LabelKeys(policies []*model.TrafficPolicy) []string {
	var named []string
	for _, p := range policies {
		for _, s := range p.Subsets {
			for k := range s.Labels {
				if !slices.Contains(DefaultEndpointLabels, k) {
					named = append(named, k)
				}
			}
		}
	}
	slices.Sort(named)
	return append(slices.Clone(DefaultEndpointLabels), slices.Compact(named)...)
}

// EndpointLabels are the labels of podLabels an endpoint record carries: those of
// keys (LabelKeys) the Pod has with a valid value, at most model.MaxEndpointLabels,
// the first keys first; nil if none.
func EndpointLabels(podLabels map[string]string, keys []string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		v, ok := podLabels[k]
		if !ok || len(validation.IsQualifiedName(k)) > 0 || len(validation.IsValidLabelValue(v)) > 0 {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
		if len(out) == model.MaxEndpointLabels {
			break
		}
	}
	return out
}

// labelEndpoints gives rec's endpoints the labels of their Pods (the pod cache's).
func (p *Publisher) labelEndpoints(rec *model.ServiceEndpoints) {
	var policies []*model.TrafficPolicy
	if pv, ok := p.opts.View.(policyView); ok {
		policies = pv.TrafficPolicies()
	}
	keys := LabelKeys(policies)
	for i, e := range rec.Endpoints {
		name, ok := strings.CutPrefix(e.TargetRef, "Pod/")
		if !ok || p.pods == nil {
			continue
		}
		obj, ok, err := p.pods.GetByKey(rec.Namespace + "/" + name)
		if err != nil || !ok {
			continue
		}
		rec.Endpoints[i].Labels = EndpointLabels(obj.(*corev1.Pod).Labels, keys)
	}
}
