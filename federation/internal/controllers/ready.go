package controllers

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/federation/internal/etcdsec"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// readyCheck is how often the leading hub checks that its ready marker is still in
// the store: a store replaced under a running hub is rebuilt within it.
const readyCheck = 10 * time.Second

// Ready writes the hub's ready marker (keyspace.HubReady) once the store holds every
// record the hub publishes: it writes every MeshCluster's registration (and etcd
// user), GlobalService, FailoverPolicy, TrafficPolicy and AuthorizationPolicy itself, then the marker. Agents take a
// store without the marker for one being rebuilt and keep serving what they hold
// rather than prune against it (kvstore.ReaderOptions.RequireKey): a hub store lost
// and recreated never empties the federation, not even for the moment between the
// store's return and the reconcilers' first writes. Only the leading hub runs it;
// it writes again whenever the marker is gone.
type Ready struct {
	Client client.Client
	KV     KV
	Auth   etcdsec.Auth
	Clock  clock.PassiveClock
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (r *Ready) NeedLeaderElection() bool { return true }

// Start implements manager.Runnable.
func (r *Ready) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("ready")
	since := r.Clock.Now()
	for {
		wrote, err := r.ensure(ctx, since)
		if err != nil {
			log.Error(err, "hub ready marker not written; will retry")
		} else if wrote {
			log.Info("every record written: hub ready marker in the store", "key", keyspace.HubReady())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(readyCheck):
		}
	}
}

// ensure writes every record and the marker when the marker is missing, and reports
// whether it did.
func (r *Ready) ensure(ctx context.Context, since time.Time) (bool, error) {
	cur, err := r.KV.Get(ctx, keyspace.HubReady(), clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("read the ready marker: %w", err)
	}
	if cur.Count > 0 {
		return false, nil
	}
	clusters := &v1.MeshClusterList{}
	if err := r.Client.List(ctx, clusters); err != nil {
		return false, err
	}
	for i := range clusters.Items {
		mc := &clusters.Items[i]
		if !mc.DeletionTimestamp.IsZero() || mc.Spec.Revoked {
			continue
		}
		if err := etcdsec.EnsureCluster(ctx, r.Auth, mc.Name, mc.Spec.Registration); err != nil {
			return false, err
		}
		if err := putRecord(ctx, r.KV, keyspace.ClusterInfo(mc.Name), clusterInfo(mc)); err != nil {
			return false, err
		}
	}
	services := &v1.GlobalServiceList{}
	if err := r.Client.List(ctx, services); err != nil {
		return false, err
	}
	for i := range services.Items {
		gs := &services.Items[i]
		if gs.DeletionTimestamp.IsZero() {
			if err := putRecord(ctx, r.KV, keyspace.GlobalService(gs.Namespace, gs.Name), globalService(gs)); err != nil {
				return false, err
			}
		}
	}
	policies := &v1.FailoverPolicyList{}
	if err := r.Client.List(ctx, policies); err != nil {
		return false, err
	}
	for i := range policies.Items {
		fp := &policies.Items[i]
		if fp.DeletionTimestamp.IsZero() {
			if err := putRecord(ctx, r.KV, keyspace.Policy(fp.Namespace, fp.Name), policy(fp)); err != nil {
				return false, err
			}
		}
	}
	if err := writePolicies(ctx, r.Client, r.KV); err != nil {
		return false, err
	}
	return true, putRecord(ctx, r.KV, keyspace.HubReady(), &model.HubReady{Since: since.UTC()})
}
