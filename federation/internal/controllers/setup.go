package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/federation/internal/etcdsec"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// Options are what the reconcilers need.
type Options struct {
	KV    KV
	Auth  etcdsec.Auth
	View  *view.View
	Clock clock.PassiveClock
	// Events records the reconcilers' Events; nil: the manager's recorder for
	// EventSource.
	Events events.EventRecorder
}

// EventSource is the reporting controller of the hub's Events.
const EventSource = "meshfed.io/hub"

// Setup registers the reconcilers and the Collector with mgr.
func Setup(mgr ctrl.Manager, opts Options) error {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Events == nil {
		opts.Events = mgr.GetEventRecorder(EventSource)
	}
	c := mgr.GetClient()
	clusters := &MeshClusterReconciler{Client: c, KV: opts.KV, Auth: opts.Auth, View: opts.View, Clock: opts.Clock, Events: opts.Events,
		views: newViewSync(opts.KV, opts.Clock), rejections: opts.View}
	err := ctrl.NewControllerManagedBy(mgr).For(&v1.MeshCluster{}).Named("meshcluster").
		WatchesRawSource(viewSource(opts.View, func(ctx context.Context, k keyspace.Key) []reconcile.Request {
			switch {
			case k.Cluster != "":
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: k.Cluster}}}
			case k.Kind == keyspace.KindGlobalService:
				// Which services a cluster may provide changed: what the view refuses
				// of every cluster may have (PublishedDataValid).
				return allClusters(ctx, c)
			}
			return nil
		})).
		Complete(clusters)
	if err != nil {
		return err
	}

	services := &GlobalServiceReconciler{Client: c, KV: opts.KV, View: opts.View, Events: opts.Events}
	err = mgr.GetFieldIndexer().IndexField(context.Background(), &v1.GlobalService{}, hostnameIndex, func(o client.Object) []string {
		return []string{hostnameOf(o.(*v1.GlobalService))}
	})
	if err != nil {
		return err
	}
	err = ctrl.NewControllerManagedBy(mgr).For(&v1.GlobalService{}).Named("globalservice").
		// A GlobalService claiming a hostname, releasing it or going decides who owns
		// the hostname: the others claiming it look again (HostnameConflict).
		Watches(&v1.GlobalService{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			list := &v1.GlobalServiceList{}
			if err := c.List(ctx, list, client.MatchingFields{hostnameIndex: hostnameOf(o.(*v1.GlobalService))}); err != nil {
				return nil
			}
			var out []reconcile.Request
			for _, gs := range list.Items {
				if gs.UID != o.GetUID() {
					out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&gs)})
				}
			}
			return out
		})).
		// A policy appearing or going changes the ResolvedRefs of the services naming it.
		Watches(&v1.FailoverPolicy{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return globalServicesIn(ctx, c, o.GetNamespace(), func(gs *v1.GlobalService) bool {
				return gs.Spec.FailoverPolicyRef != nil && gs.Spec.FailoverPolicyRef.Name == o.GetName()
			})
		})).
		// Published services change the endpoint counts of the global services that may
		// select them: those in the service's namespace and those naming it.
		WatchesRawSource(viewSource(opts.View, func(ctx context.Context, k keyspace.Key) []reconcile.Request {
			if k.Kind != keyspace.KindServiceEndpoints {
				return nil
			}
			return globalServicesIn(ctx, c, "", func(gs *v1.GlobalService) bool {
				return gs.Namespace == k.Namespace || (gs.Spec.Service != nil && gs.Spec.Service.Namespace == k.Namespace)
			})
		})).
		Complete(services)
	if err != nil {
		return err
	}

	policies := &FailoverPolicyReconciler{Client: c, KV: opts.KV, Events: opts.Events}
	err = ctrl.NewControllerManagedBy(mgr).For(&v1.FailoverPolicy{}).Named("failoverpolicy").
		// Registering or removing a cluster changes which policy references resolve.
		Watches(&v1.MeshCluster{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
			list := &v1.FailoverPolicyList{}
			if err := c.List(ctx, list); err != nil {
				return nil
			}
			out := make([]reconcile.Request, 0, len(list.Items))
			for _, fp := range list.Items {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&fp)})
			}
			return out
		})).
		Complete(policies)
	if err != nil {
		return err
	}
	if err := setupPolicies(mgr, opts); err != nil {
		return err
	}
	if err := mgr.Add(&Ready{Client: c, KV: opts.KV, Auth: opts.Auth, Clock: opts.Clock}); err != nil {
		return err
	}
	return mgr.Add(&Collector{Client: c, KV: opts.KV, Auth: opts.Auth})
}

func allClusters(ctx context.Context, c client.Client) []reconcile.Request {
	list := &v1.MeshClusterList{}
	if err := c.List(ctx, list); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, mc := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: mc.Name}})
	}
	return out
}

func globalServicesIn(ctx context.Context, c client.Client, namespace string, keep func(*v1.GlobalService) bool) []reconcile.Request {
	list := &v1.GlobalServiceList{}
	if err := c.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		if keep(&list.Items[i]) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return out
}

// viewSource enqueues the requests toRequests maps each change of the view to.
func viewSource(v *view.View, toRequests func(context.Context, keyspace.Key) []reconcile.Request) source.Source {
	return source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		_ = v.Subscribe(func(k keyspace.Key) {
			for _, r := range toRequests(ctx, k) {
				q.Add(r)
			}
		})
		return nil
	})
}
