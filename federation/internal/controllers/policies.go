package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// policyEvents are the TrafficPolicy and AuthorizationPolicy transitions an operator
// hears of: not accepted (Invalid, Conflicted, EtcdError) and unresolved references,
// and their recovery.
var policyEvents = map[string]func(*metav1.Condition, metav1.Condition) bool{
	v1.ConditionAccepted:     problemOrRecovery,
	v1.ConditionResolvedRefs: problemOrRecovery,
	v1.ConditionProgrammed:   programmedFlipped,
}

var (
	policyAccepted = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "hub", Name: "policy_accepted",
		Help: "1 while the traffic or authorization policy is Accepted (written to the hub's etcd), else 0.",
	}, []string{"kind", "namespace", "name"})
	policyResolved = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "hub", Name: "policy_resolved_refs",
		Help: "1 while every global service and cluster the traffic or authorization policy names exists, else 0.",
	}, []string{"kind", "namespace", "name"})
)

// recordPolicyMetrics sets the policy's gauges from its conditions; gone deletes them.
func recordPolicyMetrics(kind string, o metav1.Object, conds []metav1.Condition, gone bool) {
	labels := prometheus.Labels{"kind": kind, "namespace": o.GetNamespace(), "name": o.GetName()}
	if gone {
		policyAccepted.Delete(labels)
		policyResolved.Delete(labels)
		return
	}
	isTrue := func(typ string) float64 {
		for _, c := range conds {
			if c.Type == typ && c.Status == metav1.ConditionTrue {
				return 1
			}
		}
		return 0
	}
	policyAccepted.With(labels).Set(isTrue(v1.ConditionAccepted))
	policyResolved.With(labels).Set(isTrue(v1.ConditionResolvedRefs))
}

// TrafficPolicyReconciler writes TrafficPolicies to etcd and reports whether the
// global service and clusters they name exist.
type TrafficPolicyReconciler struct {
	Client client.Client
	KV     KV
	Events events.EventRecorder
	// View holds the clusters' programmed reports (Programmed); nil: NotReported.
	View *view.View
}

// Reconcile converges one TrafficPolicy.
func (r *TrafficPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	tp := &v1.TrafficPolicy{}
	if err := r.Client.Get(ctx, req.NamespacedName, tp); err != nil {
		if apierrors.IsNotFound(err) {
			recordPolicyMetrics("TrafficPolicy", &metav1.ObjectMeta{Namespace: req.Namespace, Name: req.Name}, nil, true)
			forgetProgrammed(model.PolicyKindTraffic, req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	key := keyspace.TrafficPolicy(tp.Namespace, tp.Name)
	if done, err := finalize(ctx, r.Client, tp, func() error { return deleteKey(ctx, r.KV, key) }); done {
		return ctrl.Result{}, err
	}

	siblings := &v1.TrafficPolicyList{}
	if err := r.Client.List(ctx, siblings, client.InNamespace(tp.Namespace)); err != nil {
		return ctrl.Result{}, err
	}
	var accepted metav1.Condition
	var err error
	rec, cerr := trafficPolicy(tp)
	if cerr == nil {
		cerr = rec.Validate()
	}
	switch first := firstTrafficPolicy(siblings.Items, tp.Spec.GlobalService); {
	case cerr != nil:
		accepted = notWritten(v1.ReasonInvalid, "the hub cannot serve it: "+cerr.Error())
		err = deleteKey(ctx, r.KV, key)
	case first != tp.Name:
		accepted = notWritten(v1.ReasonConflicted, fmt.Sprintf("TrafficPolicy %s/%s applies to GlobalService %s and comes first by name: only one policy applies to a service; merge them or delete one",
			tp.Namespace, first, tp.Spec.GlobalService))
		err = deleteKey(ctx, r.KV, key)
	default:
		accepted, err = writeRecord(ctx, r.KV, key, rec)
	}
	if err != nil && accepted.Status != metav1.ConditionTrue && accepted.Reason != v1.ReasonEtcdError {
		accepted.Reason, accepted.Message = v1.ReasonEtcdError, err.Error()
	}

	var clusters []string
	for _, s := range tp.Spec.Subsets {
		for _, c := range s.Clusters {
			clusters = append(clusters, string(c))
		}
	}
	refs, rerr := policyRefs(ctx, r.Client, tp.Namespace, string(tp.Spec.GlobalService), clusters, "subsets name")
	if rerr != nil {
		return ctrl.Result{}, rerr
	}

	status := tp.Status.DeepCopy()
	status.ObservedGeneration = tp.Generation
	setConditions(&status.Conditions, tp.Generation, accepted, refs)
	again := setProgrammed(r.View, model.PolicyKindTraffic, tp.Namespace, tp.Name, tp.Generation, status)
	news := transitions(tp.Status.Conditions, status.Conditions, policyEvents)
	if wrote, uerr := writeStatus(ctx, r.Client, tp, &tp.Status, status); uerr != nil {
		return ctrl.Result{}, uerr
	} else if wrote {
		announce(r.Events, tp, news)
	}
	recordPolicyMetrics("TrafficPolicy", tp, status.Conditions, false)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("write traffic policy %s/%s: %w", tp.Namespace, tp.Name, err)
	}
	return ctrl.Result{RequeueAfter: again}, nil
}

// firstTrafficPolicy is the name of the TrafficPolicy of policies (one namespace's)
// that applies to globalService: the first by name of those not being deleted, as
// view.TrafficPolicy picks it.
func firstTrafficPolicy(policies []v1.TrafficPolicy, globalService v1.GlobalServiceName) string {
	first := ""
	for _, p := range policies {
		if p.Spec.GlobalService == globalService && p.DeletionTimestamp.IsZero() && (first == "" || p.Name < first) {
			first = p.Name
		}
	}
	return first
}

func notWritten(reason, msg string) metav1.Condition {
	return metav1.Condition{Type: v1.ConditionAccepted, Status: metav1.ConditionFalse, Reason: reason,
		Message: "not written to the hub's etcd: " + msg}
}

// policyRefs is a policy's ResolvedRefs condition: False when the global service it
// names does not exist (GlobalServiceNotFound) or clusters it names are not
// registered (UnknownCluster); the message names both. what says where the clusters
// are named.
func policyRefs(ctx context.Context, c client.Client, namespace, globalService string, clusters []string, what string) (metav1.Condition, error) {
	refs := metav1.Condition{Type: v1.ConditionResolvedRefs, Status: metav1.ConditionTrue, Reason: v1.ReasonResolvedRefs,
		Message: "every named global service and cluster exists"}
	var msgs []string
	if globalService != "" {
		err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: globalService}, &v1.GlobalService{})
		switch {
		case apierrors.IsNotFound(err):
			refs.Status, refs.Reason = metav1.ConditionFalse, v1.ReasonGlobalServiceNotFound
			msgs = append(msgs, fmt.Sprintf("GlobalService %s/%s does not exist; the policy applies to nothing until it does", namespace, globalService))
		case err != nil:
			return refs, err
		}
	}
	if len(clusters) > 0 {
		registered := &v1.MeshClusterList{}
		if err := c.List(ctx, registered); err != nil {
			return refs, err
		}
		var unknown []string
		for _, name := range clusters {
			if !slices.ContainsFunc(registered.Items, func(mc v1.MeshCluster) bool { return mc.Name == name }) && !slices.Contains(unknown, name) {
				unknown = append(unknown, name)
			}
		}
		slices.Sort(unknown)
		if len(unknown) > 0 {
			if refs.Status == metav1.ConditionTrue {
				refs.Status, refs.Reason = metav1.ConditionFalse, v1.ReasonUnknownCluster
			}
			msgs = append(msgs, fmt.Sprintf("%s clusters that are not registered: %s; they match no endpoint or caller until they are", what, strings.Join(unknown, ", ")))
		}
	}
	if len(msgs) > 0 {
		refs.Message = strings.Join(msgs, ". ")
	}
	return refs, nil
}

// AuthorizationPolicyReconciler writes AuthorizationPolicies to etcd and reports
// whether the global service and clusters they name exist.
type AuthorizationPolicyReconciler struct {
	Client client.Client
	KV     KV
	Events events.EventRecorder
	// View holds the clusters' programmed reports (Programmed); nil: NotReported.
	View *view.View
}

// Reconcile converges one AuthorizationPolicy.
func (r *AuthorizationPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ap := &v1.AuthorizationPolicy{}
	if err := r.Client.Get(ctx, req.NamespacedName, ap); err != nil {
		if apierrors.IsNotFound(err) {
			recordPolicyMetrics("AuthorizationPolicy", &metav1.ObjectMeta{Namespace: req.Namespace, Name: req.Name}, nil, true)
			forgetProgrammed(model.PolicyKindAuthorization, req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	key := keyspace.AuthorizationPolicy(ap.Namespace, ap.Name)
	if done, err := finalize(ctx, r.Client, ap, func() error { return deleteKey(ctx, r.KV, key) }); done {
		return ctrl.Result{}, err
	}

	rec := authorizationPolicy(ap)
	var accepted metav1.Condition
	var err error
	if verr := rec.Validate(); verr != nil {
		accepted = notWritten(v1.ReasonInvalid, "the hub cannot serve it: "+verr.Error())
		if err = deleteKey(ctx, r.KV, key); err != nil {
			accepted.Reason, accepted.Message = v1.ReasonEtcdError, err.Error()
		}
	} else {
		accepted, err = writeRecord(ctx, r.KV, key, rec)
	}
	var clusters []string
	for _, rule := range rec.Rules {
		for _, f := range rule.From {
			clusters = append(clusters, f.Clusters...)
		}
	}
	refs, rerr := policyRefs(ctx, r.Client, ap.Namespace, rec.GlobalService, clusters, "rules name")
	if rerr != nil {
		return ctrl.Result{}, rerr
	}

	status := ap.Status.DeepCopy()
	status.ObservedGeneration = ap.Generation
	setConditions(&status.Conditions, ap.Generation, accepted, refs)
	again := setProgrammed(r.View, model.PolicyKindAuthorization, ap.Namespace, ap.Name, ap.Generation, status)
	news := transitions(ap.Status.Conditions, status.Conditions, policyEvents)
	if wrote, uerr := writeStatus(ctx, r.Client, ap, &ap.Status, status); uerr != nil {
		return ctrl.Result{}, uerr
	} else if wrote {
		announce(r.Events, ap, news)
	}
	recordPolicyMetrics("AuthorizationPolicy", ap, status.Conditions, false)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("write authorization policy %s/%s: %w", ap.Namespace, ap.Name, err)
	}
	return ctrl.Result{RequeueAfter: again}, nil
}

// existenceOnly passes creates and deletes: what changes whether a name resolves.
var existenceOnly = builder.WithPredicates(predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})

// setupPolicies registers the TrafficPolicy and AuthorizationPolicy reconcilers.
func setupPolicies(mgr ctrl.Manager, opts Options) error {
	c := mgr.GetClient()
	// A cluster registered or removed changes the references of every policy; a
	// global service appearing or going, those of its namespace's.
	requests := func(ctx context.Context, list client.ObjectList, namespace string) []reconcile.Request {
		if err := c.List(ctx, list, client.InNamespace(namespace)); err != nil {
			return nil
		}
		var out []reconcile.Request
		switch l := list.(type) {
		case *v1.TrafficPolicyList:
			for _, p := range l.Items {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
			}
		case *v1.AuthorizationPolicyList:
			for _, p := range l.Items {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
			}
		}
		return out
	}
	traffic := &TrafficPolicyReconciler{Client: c, KV: opts.KV, Events: opts.Events, View: opts.View}
	trafficReports := &programmedRequests{v: opts.View, kind: model.PolicyKindTraffic, last: map[string][]types.NamespacedName{}}
	authzReports := &programmedRequests{v: opts.View, kind: model.PolicyKindAuthorization, last: map[string][]types.NamespacedName{}}
	err := ctrl.NewControllerManagedBy(mgr).For(&v1.TrafficPolicy{}).Named("trafficpolicy").
		// Another policy of the namespace appearing, changing or going decides which
		// policy of a global service comes first (Conflicted).
		Watches(&v1.TrafficPolicy{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return requests(ctx, &v1.TrafficPolicyList{}, o.GetNamespace())
		})).
		Watches(&v1.MeshCluster{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
			return requests(ctx, &v1.TrafficPolicyList{}, "")
		}), existenceOnly).
		Watches(&v1.GlobalService{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return requests(ctx, &v1.TrafficPolicyList{}, o.GetNamespace())
		}), existenceOnly).
		// A cluster's report, heartbeat or registration changes the policies it reports on.
		WatchesRawSource(viewSource(opts.View, trafficReports.requests)).
		Complete(traffic)
	if err != nil {
		return err
	}
	authz := &AuthorizationPolicyReconciler{Client: c, KV: opts.KV, Events: opts.Events, View: opts.View}
	return ctrl.NewControllerManagedBy(mgr).For(&v1.AuthorizationPolicy{}).Named("authorizationpolicy").
		Watches(&v1.MeshCluster{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
			return requests(ctx, &v1.AuthorizationPolicyList{}, "")
		}), existenceOnly).
		Watches(&v1.GlobalService{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return requests(ctx, &v1.AuthorizationPolicyList{}, o.GetNamespace())
		}), existenceOnly).
		WatchesRawSource(viewSource(opts.View, authzReports.requests)).
		Complete(authz)
}

// writePolicies writes every TrafficPolicy and AuthorizationPolicy record the
// reconcilers would (for Ready): valid ones, and of a global service's traffic
// policies the first by name.
func writePolicies(ctx context.Context, c client.Client, kv KV) error {
	traffic := &v1.TrafficPolicyList{}
	if err := c.List(ctx, traffic); err != nil {
		return err
	}
	for i := range traffic.Items {
		tp := &traffic.Items[i]
		if !tp.DeletionTimestamp.IsZero() {
			continue
		}
		var sameNamespace []v1.TrafficPolicy
		for _, p := range traffic.Items {
			if p.Namespace == tp.Namespace {
				sameNamespace = append(sameNamespace, p)
			}
		}
		rec, err := trafficPolicy(tp)
		if err != nil || rec.Validate() != nil || firstTrafficPolicy(sameNamespace, tp.Spec.GlobalService) != tp.Name {
			continue
		}
		if err := putRecord(ctx, kv, keyspace.TrafficPolicy(tp.Namespace, tp.Name), rec); err != nil {
			return err
		}
	}
	authz := &v1.AuthorizationPolicyList{}
	if err := c.List(ctx, authz); err != nil {
		return err
	}
	for i := range authz.Items {
		ap := &authz.Items[i]
		if rec := authorizationPolicy(ap); ap.DeletionTimestamp.IsZero() && rec.Validate() == nil {
			if err := putRecord(ctx, kv, keyspace.AuthorizationPolicy(ap.Namespace, ap.Name), rec); err != nil {
				return err
			}
		}
	}
	return nil
}
