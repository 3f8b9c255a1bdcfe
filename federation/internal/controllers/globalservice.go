package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
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
	// Events, if set, hears of ResolvedRefs going False (PolicyNotFound) and back,
	// and of HostnameConflict starting and ending.
	Events events.EventRecorder
}

// refsEvents are the GlobalService and FailoverPolicy transitions an operator hears of.
var refsEvents = map[string]func(*metav1.Condition, metav1.Condition) bool{
	v1.ConditionResolvedRefs:     problemOrRecovery,
	v1.ConditionHostnameConflict: conflictStartedOrEnded,
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
	owner, err := r.hostnameOwner(ctx, gs, rec.Hostname)
	if err != nil {
		return ctrl.Result{}, err
	}
	conflict := hostnameCondition(gs, rec.Hostname, owner)
	var accepted metav1.Condition
	if owner == nil {
		accepted, err = writeRecord(ctx, r.KV, key, rec)
	} else {
		// Not served: an older GlobalService owns the hostname. Removed from etcd in
		// case this one owned it before (the owner's creation was seen late).
		accepted = metav1.Condition{Type: v1.ConditionAccepted, Status: metav1.ConditionFalse, Reason: v1.ReasonHostnameInUse,
			Message: "not written to the hub's etcd: " + conflict.Message}
		if err = deleteKey(ctx, r.KV, key); err != nil {
			accepted.Reason, accepted.Message = v1.ReasonEtcdError, err.Error()
		}
	}
	refs := metav1.Condition{Type: v1.ConditionResolvedRefs, Status: metav1.ConditionTrue, Reason: v1.ReasonResolvedRefs,
		Message: "every referenced object exists"}
	if rec.Policy != "" {
		fp := &v1.FailoverPolicy{}
		if gerr := r.Client.Get(ctx, client.ObjectKey{Namespace: gs.Namespace, Name: rec.Policy}, fp); apierrors.IsNotFound(gerr) {
			refs.Status, refs.Reason = metav1.ConditionFalse, v1.ReasonPolicyNotFound
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
	status.Providers = providers(gs)
	status.Clusters, status.Excluded, status.ReadyEndpoints = nil, nil, 0
	if owner == nil {
		status.Clusters, status.Excluded, status.ReadyEndpoints = endpointsOf(rec, r.View.Clusters())
	}
	setConditions(&status.Conditions, gs.Generation, accepted, refs, conflict)
	news := transitions(gs.Status.Conditions, status.Conditions, refsEvents)
	if wrote, uerr := writeStatus(ctx, r.Client, gs, &gs.Status, status); uerr != nil {
		return ctrl.Result{}, uerr
	} else if wrote {
		announce(r.Events, gs, news)
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("write global service %s/%s: %w", gs.Namespace, gs.Name, err)
	}
	return ctrl.Result{}, nil
}

// endpointsOf counts, per cluster and zone, the published endpoints the global service
// selects that serve at least one of its ports (model.MemberPort and model.PortOf, as
// the agents route), and lists the clusters excluded from a port because no selected
// Service there has it. Clusters and exclusions are in the order of clusters.
func endpointsOf(g *model.GlobalService, clusters []view.Cluster) ([]v1.ClusterEndpoints, []v1.ExcludedCluster, int32) {
	var out []v1.ClusterEndpoints
	var excluded []v1.ExcludedCluster
	var ready int32
	for _, c := range clusters {
		region := ""
		if c.Info != nil {
			region = c.Info.Region
		}
		zones := map[string]*v1.LocalityEndpoints{}
		served := make([]bool, len(g.Ports))      // per global port: some selected Service has it
		lacking := make([][]string, len(g.Ports)) // per global port: the selected Services without it
		for nn, s := range c.Services {
			if !model.Selects(g, c.Name, nn.Namespace, nn.Name, s.Labels) {
				continue
			}
			var ports []model.ServicePort
			for i, gp := range g.Ports {
				sp, ok := model.MemberPort(s, gp)
				if !ok {
					lacking[i] = append(lacking[i], nn.Namespace+"/"+nn.Name)
					continue
				}
				served[i] = true
				ports = append(ports, sp)
			}
			for _, e := range s.Endpoints {
				if !slices.ContainsFunc(ports, func(sp model.ServicePort) bool { _, ok := model.PortOf(e, sp); return ok }) {
					continue // serves no global port: no client is sent to it
				}
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
		for i, gp := range g.Ports {
			if served[i] || len(lacking[i]) == 0 {
				continue
			}
			slices.Sort(lacking[i])
			excluded = append(excluded, v1.ExcludedCluster{Cluster: c.Name, Port: gp.Port, Reason: v1.ReasonPortNotFound,
				Message: fmt.Sprintf("%s %s no port %s: clients are not routed to this cluster on port %d",
					strings.Join(lacking[i], ", "), plural(len(lacking[i]), "has", "have"), portName(gp), gp.Port)})
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
	return out, excluded, ready
}

// portName is how the member port serving gp is looked for (model.MemberPort).
func portName(gp model.GlobalPort) string {
	if gp.Name != "" {
		return fmt.Sprintf("named %q", gp.Name)
	}
	return fmt.Sprintf("numbered %d", gp.Port)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// hostnameIndex indexes GlobalServices by the hostname they claim (hostnameOf).
const hostnameIndex = "meshfed.io/hostname"

// hostnameOf is the hostname gs claims: its spec's, or the MCS clusterset name.
func hostnameOf(gs *v1.GlobalService) string {
	if gs.Spec.Hostname != "" {
		return gs.Spec.Hostname
	}
	return model.ClusterSetHostname(gs.Namespace, gs.Name)
}

// hostnameOwner returns the GlobalService that owns hostname if it is not gs (nil if
// gs owns it): of every GlobalService claiming it, the oldest (claimsFirst).
func (r *GlobalServiceReconciler) hostnameOwner(ctx context.Context, gs *v1.GlobalService, hostname string) (*v1.GlobalService, error) {
	list := &v1.GlobalServiceList{}
	if err := r.Client.List(ctx, list, client.MatchingFields{hostnameIndex: hostname}); err != nil {
		return nil, fmt.Errorf("list global services claiming %s: %w", hostname, err)
	}
	var owner *v1.GlobalService
	for i := range list.Items {
		c := &list.Items[i]
		if c.UID != gs.UID && claimsFirst(c, gs) && (owner == nil || claimsFirst(c, owner)) {
			owner = c
		}
	}
	return owner, nil
}

// claimsFirst is the order in which GlobalServices own a hostname they both claim:
// by creationTimestamp, then namespace, then name. An owner keeps its hostname
// until it is deleted; a later claimant is not served meanwhile.
func claimsFirst(a, b *v1.GlobalService) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// hostnameCondition is HostnameConflict of gs, claiming hostname, owned by owner
// (nil: gs).
func hostnameCondition(gs *v1.GlobalService, hostname string, owner *v1.GlobalService) metav1.Condition {
	if owner == nil {
		return metav1.Condition{Type: v1.ConditionHostnameConflict, Status: metav1.ConditionFalse, Reason: v1.ReasonHostnameUnique,
			Message: fmt.Sprintf("no older GlobalService claims hostname %s", hostname)}
	}
	return metav1.Condition{Type: v1.ConditionHostnameConflict, Status: metav1.ConditionTrue, Reason: v1.ReasonHostnameInUse,
		Message: fmt.Sprintf("hostname %s belongs to GlobalService %s/%s, created %s, before this one: this one is not served "+
			"and takes the hostname over when that one is deleted; give it another spec.hostname to serve it now",
			hostname, owner.Namespace, owner.Name, owner.CreationTimestamp.UTC().Format(time.RFC3339))}
}

// conflictStartedOrEnded: HostnameConflict turned True, or False after True; not a
// GlobalService appearing without a conflict.
func conflictStartedOrEnded(prev *metav1.Condition, next metav1.Condition) bool {
	if prev == nil {
		return next.Status == metav1.ConditionTrue
	}
	return prev.Status != next.Status
}
