package controllers

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// FailoverPolicyReconciler writes FailoverPolicies to etcd and reports rules that name
// clusters that are not registered or localities no registered cluster is in.
type FailoverPolicyReconciler struct {
	Client client.Client
	KV     KV
	// Events, if set, hears of ResolvedRefs going False (UnknownCluster,
	// UnmatchedLocality) and back.
	Events events.EventRecorder
}

// Reconcile converges one FailoverPolicy.
func (r *FailoverPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	fp := &v1.FailoverPolicy{}
	if err := r.Client.Get(ctx, req.NamespacedName, fp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	key := keyspace.Policy(fp.Namespace, fp.Name)
	if done, err := finalize(ctx, r.Client, fp, func() error { return deleteKey(ctx, r.KV, key) }); done {
		return ctrl.Result{}, err
	}

	rec := policy(fp)
	accepted, err := writeRecord(ctx, r.KV, key, rec)
	clusters := &v1.MeshClusterList{}
	if lerr := r.Client.List(ctx, clusters); lerr != nil {
		return ctrl.Result{}, lerr
	}
	refs := resolvedRefs(rec, clusters.Items)

	status := fp.Status.DeepCopy()
	status.ObservedGeneration = fp.Generation
	setConditions(&status.Conditions, fp.Generation, accepted, refs)
	news := transitions(fp.Status.Conditions, status.Conditions, refsEvents)
	if wrote, uerr := writeStatus(ctx, r.Client, fp, &fp.Status, status); uerr != nil {
		return ctrl.Result{}, uerr
	} else if wrote {
		announce(r.Events, fp, news)
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("write failover policy %s/%s: %w", fp.Namespace, fp.Name, err)
	}
	return ctrl.Result{}, nil
}

// resolvedRefs is a policy's ResolvedRefs condition: False when a rule names clusters
// that are not registered (UnknownCluster) or localities no registered cluster is in
// (UnmatchedLocality), as such a rule applies to no client or sends traffic nowhere.
func resolvedRefs(p *model.Policy, registered []v1.MeshCluster) metav1.Condition {
	refs := metav1.Condition{Type: v1.ConditionResolvedRefs, Status: metav1.ConditionTrue, Reason: v1.ReasonResolvedRefs,
		Message: "every named cluster is registered and every locality matches one"}
	unknown, unmatched := unknownClusters(p, registered), unmatchedLocalities(p, registered)
	var msgs []string
	if len(unknown) > 0 {
		refs.Status, refs.Reason = metav1.ConditionFalse, v1.ReasonUnknownCluster
		msgs = append(msgs, fmt.Sprintf("failover names clusters that are not registered: %s; rules naming them have no effect until they are",
			strings.Join(unknown, ", ")))
	}
	if len(unmatched) > 0 {
		if refs.Status == metav1.ConditionTrue {
			refs.Status, refs.Reason = metav1.ConditionFalse, v1.ReasonUnmatchedLocality
		}
		msgs = append(msgs, "localities no registered cluster is in: "+strings.Join(unmatched, "; ")+
			"; these rules or destinations have no effect until a cluster there is registered")
	}
	if len(msgs) > 0 {
		refs.Message = strings.Join(msgs, ". ")
	}
	return refs
}

// unmatchedLocalities describes, in rule order, the regions of failover rules and the
// locality patterns of distribute rules that no registered cluster's region and zones
// match (model.ParsePattern: as the agents match them).
func unmatchedLocalities(p *model.Policy, registered []v1.MeshCluster) []string {
	matchesAny := func(pat model.Pattern) bool {
		for _, mc := range registered {
			region := string(mc.Spec.Region)
			// A zone wildcard also matches endpoints outside the listed zones.
			if pat.Spec < 3 && pat.Matches(region, "") {
				return true
			}
			for _, z := range mc.Spec.Zones {
				if pat.Matches(region, string(z)) {
					return true
				}
			}
		}
		return false
	}
	var out []string
	for i, rule := range p.Failover {
		var regions []string
		for _, l := range append([]model.Locality{rule.From}, rule.To...) {
			if l.Region != "" && !matchesAny(model.ParsePattern(l.Region)) && !slices.Contains(regions, l.Region) {
				regions = append(regions, l.Region)
			}
		}
		if len(regions) > 0 {
			out = append(out, fmt.Sprintf("failover[%d] region %s", i, quoteAll(regions)))
		}
	}
	for i, rule := range p.Distribute {
		var pats []string
		if !matchesAny(model.ParsePattern(rule.From)) {
			pats = append(pats, "from "+strconv.Quote(rule.From))
		}
		for _, t := range rule.To {
			if !matchesAny(model.ParsePattern(t.Locality)) {
				pats = append(pats, "to "+strconv.Quote(t.Locality))
			}
		}
		if len(pats) > 0 {
			out = append(out, fmt.Sprintf("distribute[%d] (from %q) %s", i, rule.From, strings.Join(pats, ", ")))
		}
	}
	return out
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// unknownClusters lists, sorted and once each, the clusters a policy names that are
// not registered.
func unknownClusters(p *model.Policy, registered []v1.MeshCluster) []string {
	known := map[string]bool{}
	for _, mc := range registered {
		known[mc.Name] = true
	}
	var out []string
	check := func(l model.Locality) {
		if l.Cluster != "" && !known[l.Cluster] && !slices.Contains(out, l.Cluster) {
			out = append(out, l.Cluster)
		}
	}
	for _, rule := range p.Failover {
		check(rule.From)
		for _, t := range rule.To {
			check(t)
		}
	}
	slices.Sort(out)
	return out
}
