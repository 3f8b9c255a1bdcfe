package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// Programmed, the hub's side: every agent reports per policy generation whether its
// proxies took (ACKed) or refused (NACKed) the resources it shaped
// (keyspace.ClusterProgrammed); the policy reconcilers turn the reports of the
// connected clusters into status.clusters and the Programmed condition.
//
// Which clusters count: the connected ones (a live heartbeat) whose report lists the
// policy, i.e. where some proxy subscribes to a resource the policy shapes. A cluster
// none of whose proxies uses the policy's global service has nothing to program and
// is not waited for.

// maxProgrammedMessage bounds the Programmed condition's message: a few clusters'
// refusals, each at most model.MaxProgrammedMessage.
const maxProgrammedMessage = 4096

var policyProgrammedClusters = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Namespace: "meshfed", Subsystem: "hub", Name: "policy_programmed_clusters",
	Help: "Connected clusters reporting on the traffic or authorization policy, by state: Programmed (their proxies took the current generation), Refused (a proxy NACKed it), Pending.",
}, []string{"kind", "namespace", "name", "state"})

// setProgrammed sets the policy's status.clusters and Programmed condition at
// generation gen from the reports v holds. Until v holds the first list of the
// clusters' records it keeps what status says (the hub knows nothing of the reports
// yet) and asks to look again after viewSyncWait.
func setProgrammed(v *view.View, kind, namespace, name string, gen int64, status *v1.PolicyStatus) time.Duration {
	if v != nil && !v.HasSynced() {
		if meta.FindStatusCondition(status.Conditions, v1.ConditionProgrammed) == nil {
			_, cond := programmedStatus(nil, kind, namespace, name, gen)
			setConditions(&status.Conditions, gen, cond)
		}
		return viewSyncWait
	}
	var cond metav1.Condition
	status.Clusters, cond = programmedStatus(v, kind, namespace, name, gen)
	setConditions(&status.Conditions, gen, cond)
	return 0
}

// programmedStatus is the policy's status.clusters and Programmed condition at
// generation gen, from the reports v holds, and sets its gauge. v nil: NotReported.
func programmedStatus(v *view.View, kind, namespace, name string, gen int64) ([]v1.ClusterProgrammed, metav1.Condition) {
	cond := metav1.Condition{Type: v1.ConditionProgrammed, Status: metav1.ConditionUnknown, Reason: v1.ReasonNotReported,
		Message: "no connected cluster reports on this policy: no proxy uses a resource it shapes yet"}
	counts := map[string]int{}
	defer func() {
		for _, state := range []string{model.StateProgrammed, model.StateRefused, model.StatePending} {
			policyProgrammedClusters.WithLabelValues(kind, namespace, name, state).Set(float64(counts[state]))
		}
	}()
	if v == nil {
		return nil, cond
	}
	var clusters []v1.ClusterProgrammed
	var programmed, pending, refused []string
	var refusals []string
	for _, r := range v.Programmed(kind, namespace, name) {
		if !r.Connected {
			continue
		}
		cp := v1.ClusterProgrammed{Cluster: r.Cluster, Generation: r.Ref.Generation}
		switch {
		case r.Ref.Generation != gen:
			cp.Message = fmt.Sprintf("the cluster's proxies use generation %d; the agent has not served generation %d yet", r.Ref.Generation, gen)
			pending = append(pending, r.Cluster)
			counts[model.StatePending]++
		case r.State == model.StateProgrammed:
			cp.Programmed = true
			programmed = append(programmed, r.Cluster)
			counts[model.StateProgrammed]++
		case r.State == model.StateRefused:
			cp.Message = fmt.Sprintf("refused by proxy %s: %s", r.Node, r.Message)
			refused = append(refused, r.Cluster)
			refusals = append(refusals, r.Cluster+": "+cp.Message)
			counts[model.StateRefused]++
		default:
			cp.Message = "waiting for the cluster's proxies to acknowledge it"
			pending = append(pending, r.Cluster)
			counts[model.StatePending]++
		}
		if len(clusters) < 1024 { // the CRD's maxItems
			clusters = append(clusters, cp)
		}
	}
	switch {
	case len(refused) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1.ReasonRefused
		cond.Message = model.Truncate(fmt.Sprintf("generation %d refused in %s. %s", gen, strings.Join(refused, ", "), strings.Join(refusals, "; ")), maxProgrammedMessage)
	case len(pending) > 0:
		cond.Reason = v1.ReasonPending
		cond.Message = model.Truncate(fmt.Sprintf("waiting for the proxies of %s to take generation %d; %d clusters have",
			strings.Join(pending, ", "), gen, len(programmed)), maxProgrammedMessage)
	case len(programmed) > 0:
		cond.Status, cond.Reason = metav1.ConditionTrue, v1.ReasonProgrammed
		cond.Message = model.Truncate(fmt.Sprintf("the proxies of every connected cluster that uses the policy took generation %d: %s",
			gen, strings.Join(programmed, ", ")), maxProgrammedMessage)
	}
	return clusters, cond
}

// forgetProgrammed deletes a deleted policy's gauges.
func forgetProgrammed(kind, namespace, name string) {
	for _, state := range []string{model.StateProgrammed, model.StateRefused, model.StatePending} {
		policyProgrammedClusters.DeleteLabelValues(kind, namespace, name, state)
	}
}

// programmedFlipped: an Event when a generation is refused (or refused with another
// message), and when it is programmed everywhere again or for the first time; not for
// Pending and NotReported, which come and go with every change.
func programmedFlipped(prev *metav1.Condition, next metav1.Condition) bool {
	switch next.Status {
	case metav1.ConditionFalse:
		return prev == nil || prev.Status != metav1.ConditionFalse || prev.Message != next.Message
	case metav1.ConditionTrue:
		return prev == nil || prev.Status != metav1.ConditionTrue || prev.ObservedGeneration != next.ObservedGeneration
	}
	return false
}

// programmedRequests maps a change of a cluster's report or heartbeat to the
// policies of kind its report lists, now or at its previous change (a policy that
// left the report must drop the cluster).
type programmedRequests struct {
	v    *view.View
	kind string
	mu   sync.Mutex
	last map[string][]types.NamespacedName // by cluster
}

func (p *programmedRequests) requests(_ context.Context, k keyspace.Key) []reconcile.Request {
	if k.Kind != keyspace.KindProgrammed && k.Kind != keyspace.KindClusterHeartbeat && k.Kind != keyspace.KindClusterInfo {
		return nil
	}
	var now []types.NamespacedName
	if rep := p.v.ProgrammedReport(k.Cluster); rep != nil {
		for _, e := range rep.Policies {
			if e.Ref.Kind == p.kind {
				now = append(now, types.NamespacedName{Namespace: e.Ref.Namespace, Name: e.Ref.Name})
			}
		}
	}
	p.mu.Lock()
	prev := p.last[k.Cluster]
	p.last[k.Cluster] = now
	p.mu.Unlock()
	seen := map[types.NamespacedName]bool{}
	var out []reconcile.Request
	for _, nn := range append(now, prev...) {
		if !seen[nn] {
			seen[nn] = true
			out = append(out, reconcile.Request{NamespacedName: nn})
		}
	}
	return out
}
