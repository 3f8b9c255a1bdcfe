package controllers

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// What a member cluster publishes is a claim: the hub's own View checks every record
// against the cluster's registration (zones, address ranges, limits) and the services
// it may provide, as every agent's does, and refuses the rest. PublishedDataValid and
// meshfed_hub_rejected_records show what it refuses now, by cluster and reason.

var hubRejected = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Namespace: "meshfed", Subsystem: "hub", Name: "rejected_records",
	Help: "Records or endpoints of the cluster the hub's view refuses now, by reason (see the MeshCluster's PublishedDataValid condition).",
}, []string{"cluster", "reason"})

// rejectionSource is what the MeshCluster reconciler needs of a View.
type rejectionSource interface {
	Rejections() []view.Rejection
}

// rejectedGauge keeps meshfed_hub_rejected_records equal to the latest rejections of
// each cluster, removing the reasons that went away.
type rejectedGauge struct {
	mu      sync.Mutex
	reasons map[string][]string // by cluster: the reasons set last
}

func (g *rejectedGauge) set(cluster string, rs []view.Rejection) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.reasons == nil {
		g.reasons = map[string][]string{}
	}
	var now []string
	for _, r := range rs {
		hubRejected.WithLabelValues(cluster, r.Reason).Set(float64(r.Count))
		now = append(now, r.Reason)
	}
	for _, old := range g.reasons[cluster] {
		if !slices.Contains(now, old) {
			hubRejected.DeleteLabelValues(cluster, old)
		}
	}
	g.reasons[cluster] = now
}

func (g *rejectedGauge) forget(cluster string) { g.set(cluster, nil) }

// rejectionsOf returns cluster's rejections out of all, those with a count only,
// merged by reason (a reader reports one per reason; merging keeps this correct if
// one reports more), the largest count first, then by reason.
func rejectionsOf(cluster string, all []view.Rejection) []view.Rejection {
	var out []view.Rejection
	for _, r := range all {
		if r.Cluster != cluster || r.Count <= 0 {
			continue
		}
		if i := slices.IndexFunc(out, func(o view.Rejection) bool { return o.Reason == r.Reason }); i >= 0 {
			out[i].Count += r.Count
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b view.Rejection) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Reason, b.Reason))
	})
	return out
}

// publishedDataCondition is PublishedDataValid for a cluster's rejections (see
// rejectionsOf): False with the largest reason and one example of it, naming the
// others with their counts; True without any.
func publishedDataCondition(rs []view.Rejection, gen int64) metav1.Condition {
	cond := metav1.Condition{Type: v1.ConditionPublishedDataValid, ObservedGeneration: gen}
	if len(rs) == 0 {
		cond.Status, cond.Reason = metav1.ConditionTrue, v1.ReasonPublishedDataValid
		cond.Message = "the hub's view accepts every record the cluster publishes"
		return cond
	}
	top := rs[0]
	cond.Status, cond.Reason = metav1.ConditionFalse, top.Reason
	var b strings.Builder
	fmt.Fprintf(&b, "%d refused for %s, e.g. %s: %s", top.Count, top.Reason, top.Key, top.Detail)
	if len(rs) > 1 {
		others := make([]string, 0, len(rs)-1)
		for _, r := range rs[1:] {
			others = append(others, fmt.Sprintf("%d for %s", r.Count, r.Reason))
		}
		fmt.Fprintf(&b, "; also %s", strings.Join(others, ", "))
	}
	b.WriteString("; what is refused reaches no client (see meshfed_hub_rejected_records)")
	cond.Message = b.String()
	return cond
}

// addressRanges is status.addressRanges: what readers accept the cluster's
// endpoints in.
func addressRanges(mc *v1.MeshCluster) string {
	if len(mc.Spec.AddressRanges) == 0 {
		return v1.AddressRangesAnyRoutable
	}
	out := make([]string, len(mc.Spec.AddressRanges))
	for i, r := range mc.Spec.AddressRanges {
		out[i] = string(r)
	}
	return strings.Join(out, ",")
}

// providers is a GlobalService's status.providers.
func providers(gs *v1.GlobalService) string {
	if len(gs.Spec.Clusters) == 0 {
		return v1.ProvidersAll
	}
	out := make([]string, len(gs.Spec.Clusters))
	for i, c := range gs.Spec.Clusters {
		out[i] = string(c)
	}
	return strings.Join(out, ",")
}
