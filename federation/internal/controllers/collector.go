package controllers

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/federation/internal/etcdsec"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
)

// collectPeriod is how often the Collector looks for orphans after its first pass.
const collectPeriod = time.Minute

// Collector deletes what the hub's etcd holds that no object on the hub accounts for:
// global services and policies (failover, traffic, authorization) without their CRD, and clusters (keys, user, role)
// without a MeshCluster. It runs once the caches are synced and then periodically.
type Collector struct {
	Client client.Client
	KV     KV
	Auth   etcdsec.Auth
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: one hub collects.
func (c *Collector) NeedLeaderElection() bool { return true }

// Start implements manager.Runnable.
func (c *Collector) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("collector")
	for {
		if n, err := c.Collect(ctx); err != nil {
			log.Error(err, "collect orphaned etcd state")
		} else if n > 0 {
			orphansDeleted.Add(float64(n))
			log.Info("deleted orphaned etcd state", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(collectPeriod):
		}
	}
}

// Collect runs one pass and returns how many orphans it deleted. It lists etcd before
// the objects, so an object created during the pass is never mistaken for missing.
func (c *Collector) Collect(ctx context.Context) (int, error) {
	var keys []keyspace.Key
	for _, prefix := range []string{keyspace.GlobalServicesPrefix(), keyspace.PoliciesPrefix(), keyspace.ClustersPrefix(),
		keyspace.TrafficPoliciesPrefix(), keyspace.AuthorizationPoliciesPrefix()} {
		resp, err := c.KV.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return 0, fmt.Errorf("list %s: %w", prefix, err)
		}
		for _, kv := range resp.Kvs {
			if k, err := keyspace.Parse(string(kv.Key)); err == nil {
				keys = append(keys, k)
			}
		}
	}
	services, policies, clusters := &v1.GlobalServiceList{}, &v1.FailoverPolicyList{}, &v1.MeshClusterList{}
	traffic, authz := &v1.TrafficPolicyList{}, &v1.AuthorizationPolicyList{}
	for _, list := range []client.ObjectList{services, policies, clusters, traffic, authz} {
		if err := c.Client.List(ctx, list); err != nil {
			return 0, err
		}
	}
	live := map[string]bool{}
	for _, o := range services.Items {
		live[keyspace.GlobalService(o.Namespace, o.Name)] = true
	}
	for _, o := range policies.Items {
		live[keyspace.Policy(o.Namespace, o.Name)] = true
	}
	for _, o := range traffic.Items {
		live[keyspace.TrafficPolicy(o.Namespace, o.Name)] = true
	}
	for _, o := range authz.Items {
		live[keyspace.AuthorizationPolicy(o.Namespace, o.Name)] = true
	}
	registered := map[string]bool{}
	for _, o := range clusters.Items {
		registered[o.Name] = true
	}

	deleted := 0
	removedClusters := map[string]bool{}
	for _, k := range keys {
		switch {
		case k.Cluster != "":
			if registered[k.Cluster] || removedClusters[k.Cluster] {
				continue
			}
			removedClusters[k.Cluster] = true
			if err := etcdsec.RemoveCluster(ctx, c.Auth, k.Cluster); err != nil {
				return deleted, err
			}
			if err := deleteKey(ctx, c.KV, keyspace.ClusterPrefix(k.Cluster), clientv3.WithPrefix()); err != nil {
				return deleted, err
			}
			deleted++
		case !live[k.String()]:
			if err := deleteKey(ctx, c.KV, k.String()); err != nil {
				return deleted, err
			}
			deleted++
		}
	}
	return deleted, nil
}
