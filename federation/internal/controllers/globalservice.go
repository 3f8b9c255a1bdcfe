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
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// GlobalServiceReconciler writes GlobalServices to etcd and reports where their
// endpoints are.
type GlobalServiceReconciler struct {
	Client client.Client
	KV     KV
	View   *view.View
}

// Reconcile converges one GlobalService.
func (r *GlobalServiceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	gs := &v1.GlobalService{}
	if err := r.Client.Get(ctx, req.NamespacedName, gs); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	key := keyspace.GlobalService(gs.Namespace, gs.Name)
	if done, err := finalize(ctx, r.Client, gs, func() error { return deleteKey(ctx, r.KV, key) }); done {
		return ctrl.Result{}, err
	}

	rec := globalService(gs)
	accepted := metav1.Condition{Type: v1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: "Accepted",
		Message: "written to the hub's etcd"}
	err := putRecord(ctx, r.KV, key, rec)
	if err != nil {
		accepted.Status, accepted.Reason, accepted.Message = metav1.ConditionFalse, "EtcdError", err.Error()
	}
	refs := metav1.Condition{Type: v1.ConditionResolvedRefs, Status: metav1.ConditionTrue, Reason: "ResolvedRefs",
		Message: "every referenced object exists"}
	if rec.Policy != "" {
		fp := &v1.FailoverPolicy{}
		if gerr := r.Client.Get(ctx, client.ObjectKey{Namespace: gs.Namespace, Name: rec.Policy}, fp); apierrors.IsNotFound(gerr) {
			refs.Status, refs.Reason = metav1.ConditionFalse, "PolicyNotFound"
			refs.Message = fmt.Sprintf("FailoverPolicy %s/%s does not exist; clients use the default locality preference", gs.Namespace, rec.Policy)
		} else if gerr != nil {
			return ctrl.Result{}, gerr
		}
	}

	if !r.View.HasSynced() && err == nil {
		return ctrl.Result{RequeueAfter: viewSyncWait}, nil // see MeshClusterReconciler
	}
	status := gs.Status.DeepCopy()
	status.ObservedGeneration = gs.Generation
	status.Hostname = rec.Hostname
	status.Clusters, status.ReadyEndpoints = endpointsOf(rec, r.View.Clusters())
	for _, c := range []metav1.Condition{accepted, refs} {
		c.ObservedGeneration = gs.Generation
		meta.SetStatusCondition(&status.Conditions, c)
	}
	if !equality.Semantic.DeepEqual(status, &gs.Status) {
		gs.Status = *status
		if uerr := r.Client.Status().Update(ctx, gs); uerr != nil && !apierrors.IsConflict(uerr) {
			return ctrl.Result{}, uerr
		}
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("write global service %s/%s: %w", gs.Namespace, gs.Name, err)
	}
	return ctrl.Result{}, nil
}

// endpointsOf counts, per cluster and zone, the published endpoints the global service
// selects.
func endpointsOf(g *model.GlobalService, clusters []view.Cluster) ([]v1.ClusterEndpoints, int32) {
	var out []v1.ClusterEndpoints
	var ready int32
	for _, c := range clusters {
		region := ""
		if c.Info != nil {
			region = c.Info.Region
		}
		zones := map[string]*v1.LocalityEndpoints{}
		for nn, s := range c.Services {
			if !model.Selects(g, c.Name, nn.Namespace, nn.Name, s.Labels) {
				continue
			}
			for _, e := range s.Endpoints {
				z := zones[e.Zone]
				if z == nil {
					z = &v1.LocalityEndpoints{Region: region, Zone: e.Zone}
					zones[e.Zone] = z
				}
				z.Total++
				if e.Ready {
					z.Ready++
					ready++
				}
			}
		}
		if len(zones) == 0 {
			continue
		}
		ce := v1.ClusterEndpoints{Cluster: c.Name}
		for _, z := range zones {
			ce.Localities = append(ce.Localities, *z)
		}
		slices.SortFunc(ce.Localities, func(a, b v1.LocalityEndpoints) int { return strings.Compare(a.Zone, b.Zone) })
		out = append(out, ce)
	}
	return out, ready
}
