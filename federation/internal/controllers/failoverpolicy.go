package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// FailoverPolicyReconciler writes FailoverPolicies to etcd and reports references to
// clusters that are not registered.
type FailoverPolicyReconciler struct {
	Client client.Client
	KV     KV
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
	accepted := metav1.Condition{Type: v1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: "Accepted",
		Message: "written to the hub's etcd"}
	err := putRecord(ctx, r.KV, key, rec)
	if err != nil {
		accepted.Status, accepted.Reason, accepted.Message = metav1.ConditionFalse, "EtcdError", err.Error()
	}
	clusters := &v1.MeshClusterList{}
	if lerr := r.Client.List(ctx, clusters); lerr != nil {
		return ctrl.Result{}, lerr
	}
	refs := metav1.Condition{Type: v1.ConditionResolvedRefs, Status: metav1.ConditionTrue, Reason: "ResolvedRefs",
		Message: "every named cluster is registered"}
	if unknown := unknownClusters(rec, clusters.Items); len(unknown) > 0 {
		refs.Status, refs.Reason = metav1.ConditionFalse, "UnknownCluster"
		refs.Message = fmt.Sprintf("failover names clusters that are not registered: %s; rules naming them have no effect until they are",
			strings.Join(unknown, ", "))
	}

	status := fp.Status.DeepCopy()
	status.ObservedGeneration = fp.Generation
	for _, c := range []metav1.Condition{accepted, refs} {
		c.ObservedGeneration = fp.Generation
		meta.SetStatusCondition(&status.Conditions, c)
	}
	if !equality.Semantic.DeepEqual(status, &fp.Status) {
		fp.Status = *status
		if uerr := r.Client.Status().Update(ctx, fp); uerr != nil && !apierrors.IsConflict(uerr) {
			return ctrl.Result{}, uerr
		}
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("write failover policy %s/%s: %w", fp.Namespace, fp.Name, err)
	}
	return ctrl.Result{}, nil
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
