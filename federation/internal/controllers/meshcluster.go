package controllers

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/federation/internal/etcdsec"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/trust"
)

// Finalizer holds meshfed objects until the hub has removed them from etcd.
const Finalizer = "meshfed.io/hub"

// viewSyncWait is how soon a reconciler looks again while the view is not synced.
const viewSyncWait = 500 * time.Millisecond

// heartbeatStatusPeriod is how stale status.lastHeartbeatTime may get while a cluster
// stays connected: refreshing it on every heartbeat would write status every few
// seconds per cluster.
const heartbeatStatusPeriod = 15 * time.Second

// MeshClusterReconciler registers clusters in etcd (record, user and role) and reports
// their agents' state.
type MeshClusterReconciler struct {
	Client client.Client
	KV     KV
	Auth   etcdsec.Auth
	View   *view.View
	Clock  clock.PassiveClock
	// Events, if set, hears of Connected lost and regained.
	Events events.EventRecorder
	// views, if set, judges the agents' view reports (ViewInSync).
	views *viewSync
	// rejections, if set, is what the hub's own View refuses of each cluster
	// (PublishedDataValid); Setup sets it to View.
	rejections rejectionSource
	rejected   rejectedGauge
}

// clusterEvents are the MeshCluster transitions an operator hears of.
var clusterEvents = map[string]func(*metav1.Condition, metav1.Condition) bool{
	v1.ConditionRegistered: problemOrRecovery, // Revoked, and registered again
	v1.ConditionConnected:  becameOrStoppedTrue,
	v1.ConditionViewInSync: viewInSyncFlipped,
	// Refused data starts, changes reason, or stops.
	v1.ConditionPublishedDataValid: problemOrRecovery,
}

// Reconcile converges one MeshCluster.
func (r *MeshClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	mc := &v1.MeshCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, mc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	name := mc.Name
	removed := func() error {
		if err := r.remove(ctx, name); err != nil {
			return err
		}
		log.Info("unregistered cluster", "cluster", name)
		clusterConnected.DeleteLabelValues(name)
		clusterEndpoints.DeleteLabelValues(name)
		clusterCredentialsExpiry.DeleteLabelValues(name)
		clusterIntermediateExpiry.DeleteLabelValues(name)
		if r.views != nil {
			r.views.forget(name)
		}
		r.rejected.forget(name)
		return nil
	}
	if done, err := finalize(ctx, r.Client, mc, removed); done {
		return ctrl.Result{}, err
	}

	registered, err := r.register(ctx, mc)

	if !r.View.HasSynced() && err == nil {
		// Until the first list of the agents' records, the hub knows nothing of them:
		// writing status now would report every cluster disconnected.
		return ctrl.Result{RequeueAfter: viewSyncWait}, nil
	}
	status := mc.Status.DeepCopy()
	status.ObservedGeneration = mc.Generation
	status.AddressRanges = addressRanges(mc)
	setConditions(&status.Conditions, mc.Generation, registered)
	requeue := r.agentStatus(mc, status)
	if r.rejections != nil {
		rs := rejectionsOf(name, r.rejections.Rejections())
		r.rejected.set(name, rs)
		setConditions(&status.Conditions, mc.Generation, publishedDataCondition(rs, mc.Generation))
	}
	if r.views != nil {
		c, _ := r.View.Cluster(name)
		if again := r.views.viewInSync(ctx, name, c.Heartbeat, mc.Generation, status); again > 0 && (requeue == 0 || again < requeue) {
			requeue = again
		}
	}
	news := transitions(mc.Status.Conditions, status.Conditions, clusterEvents)
	if wrote, uerr := writeStatus(ctx, r.Client, mc, &mc.Status, status); uerr != nil {
		return ctrl.Result{}, uerr
	} else if wrote {
		announce(r.Events, mc, news)
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("register cluster %q: %w", name, err)
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// register converges the cluster's etcd user, role and record with its spec, and
// says so as the Registered condition: a revoked cluster has no user (every
// certificate of its registration is refused, and the embedded etcd's open streams of
// it end) and no keys (every reader drops its endpoints and identities); any other
// has exactly the user of its current registration.
func (r *MeshClusterReconciler) register(ctx context.Context, mc *v1.MeshCluster) (metav1.Condition, error) {
	cond := metav1.Condition{Type: v1.ConditionRegistered, Status: metav1.ConditionTrue, Reason: v1.ReasonRegistered,
		Message: "etcd user " + hubinfo.EtcdUser(mc.Name, mc.Spec.Registration) + ", its role and the registration record are in place"}
	var err error
	if mc.Spec.Revoked {
		cond.Status, cond.Reason = metav1.ConditionFalse, v1.ReasonRevoked
		cond.Message = "revoked: etcd refuses every certificate of registration " + registrationName(mc.Spec.Registration) +
			" and the cluster's records are deleted; run meshfedctl cluster register to register it again with new credentials"
		err = r.remove(ctx, mc.Name)
	} else {
		err = etcdsec.EnsureCluster(ctx, r.Auth, mc.Name, mc.Spec.Registration)
		if err == nil {
			err = putRecord(ctx, r.KV, keyspace.ClusterInfo(mc.Name), clusterInfo(mc))
		}
	}
	if err != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1.ReasonEtcdError, err.Error()
	}
	return cond, err
}

func registrationName(r string) string {
	if r == "" {
		return "(registered before registrations existed)"
	}
	return r
}

// agentStatus fills the conditions and counts that come from the agent's records, and
// says when to look again.
func (r *MeshClusterReconciler) agentStatus(mc *v1.MeshCluster, status *v1.MeshClusterStatus) time.Duration {
	gen := mc.Generation
	connected := metav1.Condition{Type: v1.ConditionConnected, Status: metav1.ConditionFalse, ObservedGeneration: gen,
		Reason: v1.ReasonNoHeartbeat, Message: "the cluster's agent has not written a heartbeat"}
	synced := metav1.Condition{Type: v1.ConditionSynced, Status: metav1.ConditionFalse, ObservedGeneration: gen,
		Reason: v1.ReasonNotSynced, Message: "the cluster's agent has not completed its initial publish"}
	c, ok := r.View.Cluster(mc.Name)
	var requeue time.Duration
	if ok {
		if c.Connected() {
			connected.Status, connected.Reason = metav1.ConditionTrue, v1.ReasonHeartbeatLive
			connected.Message = fmt.Sprintf("agent %s holds a heartbeat lease", c.Heartbeat.Agent)
			last := status.LastHeartbeatTime
			if last == nil || c.LastHeartbeat.Sub(last.Time) >= heartbeatStatusPeriod {
				status.LastHeartbeatTime = &metav1.Time{Time: c.LastHeartbeat.Truncate(time.Second)}
			}
			requeue = heartbeatStatusPeriod
			if c.Heartbeat.Version != "" {
				// Kept once the heartbeat lapses: the last build the agent ran.
				status.AgentVersion = c.Heartbeat.Version
			}
		} else if !c.LastHeartbeat.IsZero() {
			connected.Reason = v1.ReasonHeartbeatLapsed
			connected.Message = fmt.Sprintf("the agent's heartbeat lease expired; last heartbeat seen %s ago",
				r.Clock.Since(c.LastHeartbeat).Round(time.Second))
		}
		if c.Synced != nil {
			synced.Status, synced.Reason, synced.Message = metav1.ConditionTrue, v1.ReasonSynced, "the agent completed its initial publish"
		}
		total, _ := c.Endpoints()
		status.ExportedServices, status.ExportedEndpoints = int32(len(c.Services)), int32(total)
		if c.Intermediate != nil {
			status.IntermediateCAExpiry = &metav1.Time{Time: c.Intermediate.NotAfter}
			clusterIntermediateExpiry.WithLabelValues(mc.Name).Set(float64(c.Intermediate.NotAfter.Unix()))
		} else {
			clusterIntermediateExpiry.DeleteLabelValues(mc.Name)
		}
		if cond, ok := intermediateCondition(c, r.Clock.Now(), gen); ok {
			meta.SetStatusCondition(&status.Conditions, cond)
		}
		requeue = r.credentialsStatus(mc.Name, c.EtcdCert, status, requeue)
	} else {
		status.ExportedServices, status.ExportedEndpoints = 0, 0
		clusterIntermediateExpiry.DeleteLabelValues(mc.Name)
		requeue = r.credentialsStatus(mc.Name, nil, status, requeue)
	}
	meta.SetStatusCondition(&status.Conditions, connected)
	meta.SetStatusCondition(&status.Conditions, synced)
	up := 0.0
	if connected.Status == metav1.ConditionTrue {
		up = 1
	}
	clusterConnected.WithLabelValues(mc.Name).Set(up)
	clusterEndpoints.WithLabelValues(mc.Name).Set(float64(status.ExportedEndpoints))
	return requeue
}

// remove deletes the cluster's etcd users and role, then every key under its prefix
// (in that order, so that nothing the agent writes in between survives).
func (r *MeshClusterReconciler) remove(ctx context.Context, name string) error {
	if err := etcdsec.RemoveCluster(ctx, r.Auth, name); err != nil {
		return fmt.Errorf("unregister cluster %q: %w", name, err)
	}
	if err := deleteKey(ctx, r.KV, keyspace.ClusterPrefix(name), clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("unregister cluster %q: %w", name, err)
	}
	return nil
}

// intermediateCondition reports the cluster's intermediate CA, if the mesh CA is in
// use for it (a CSR or an answer exists): Expired or Expiring before it breaks traffic.
func intermediateCondition(c view.Cluster, now time.Time, gen int64) (metav1.Condition, bool) {
	cond := metav1.Condition{Type: v1.ConditionIntermediateCA, ObservedGeneration: gen}
	switch {
	case c.Intermediate == nil && c.IntermediateCSR == nil:
		return cond, false
	case c.Intermediate == nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1.ReasonIntermediatePending, "the agent's CSR waits for the hub's mesh CA"
	default:
		chain, err := pki.ParseCert([]byte(c.Intermediate.Chain))
		switch {
		case err != nil:
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1.ReasonIntermediateInvalid, err.Error()
		case !now.Before(chain.NotAfter):
			cond.Status, cond.Reason = metav1.ConditionFalse, v1.ReasonIntermediateExpired
			cond.Message = "the intermediate expired at " + chain.NotAfter.UTC().Format(time.RFC3339) + ": workload certificates can no longer be issued"
		case trust.NeedsRenewal(chain, now):
			cond.Status, cond.Reason = metav1.ConditionFalse, v1.ReasonIntermediateExpiring
			cond.Message = "the intermediate expires at " + chain.NotAfter.UTC().Format(time.RFC3339) + " and has not been renewed: is the agent running?"
		default:
			cond.Status, cond.Reason = metav1.ConditionTrue, v1.ReasonIntermediateValid
			cond.Message = "signed by the mesh root, expires " + chain.NotAfter.UTC().Format(time.RFC3339)
		}
	}
	return cond, true
}

// credentialsStatus sets CredentialsValid, status.credentialsExpiry and the expiry
// metric from the hub's record of the agent's etcd certificate, and returns requeue,
// shortened so that the condition turns Expiring and Expired on time even while no
// record changes.
func (r *MeshClusterReconciler) credentialsStatus(cluster string, rec *model.EtcdCert, status *v1.MeshClusterStatus, requeue time.Duration) time.Duration {
	now := r.Clock.Now()
	cond, next := credentialsCondition(rec, now, status.ObservedGeneration)
	meta.SetStatusCondition(&status.Conditions, cond)
	if rec == nil {
		status.CredentialsExpiry = nil
		clusterCredentialsExpiry.DeleteLabelValues(cluster)
	} else {
		status.CredentialsExpiry = &metav1.Time{Time: rec.NotAfter.Truncate(time.Second)}
		clusterCredentialsExpiry.WithLabelValues(cluster).Set(float64(rec.NotAfter.Unix()))
	}
	if !next.IsZero() {
		if d := next.Sub(now) + time.Second; requeue == 0 || d < requeue {
			requeue = d
		}
	}
	return requeue
}

// credentialsCondition is CredentialsValid for the hub's record of the agent's etcd
// certificate (nil: none yet), and the next time it changes by itself (zero: never).
// Expiring starts when a quarter of the certificate's life is left, later than the
// agent's renewal at a third, so that a renewal on time never shows as Expiring.
func credentialsCondition(rec *model.EtcdCert, now time.Time, gen int64) (metav1.Condition, time.Time) {
	cond := metav1.Condition{Type: v1.ConditionCredentialsValid, ObservedGeneration: gen}
	if rec == nil {
		cond.Status, cond.Reason = metav1.ConditionUnknown, v1.ReasonCredentialsPending
		cond.Message = "the hub has not yet renewed the agent's etcd certificate; a running agent asks at start"
		return cond, time.Time{}
	}
	cert, err := pki.ParseCert([]byte(rec.Cert))
	if err != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1.ReasonCredentialsInvalid, err.Error()
		return cond, time.Time{}
	}
	expiring := cert.NotAfter.Add(-cert.NotAfter.Sub(cert.NotBefore) / 4)
	at := cert.NotAfter.UTC().Format(time.RFC3339)
	switch {
	case !now.Before(cert.NotAfter):
		cond.Status, cond.Reason = metav1.ConditionFalse, v1.ReasonCredentialsExpired
		cond.Message = "the agent's etcd certificate expired at " + at + ": register the cluster again"
		return cond, time.Time{}
	case !now.Before(expiring):
		cond.Status, cond.Reason = metav1.ConditionFalse, v1.ReasonCredentialsExpiring
		cond.Message = "the agent's etcd certificate expires at " + at + " and has not been renewed: is the agent running?"
		return cond, cert.NotAfter
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, v1.ReasonCredentialsValid
		cond.Message = "renewed by the agent through the hub, expires " + at
		return cond, expiring
	}
}
