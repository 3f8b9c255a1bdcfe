package clusteragent

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshfed/meshfed/clusteragent/internal/publish"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// Static stability: what an agent serves never waits for the hub.
//   - Every replica runs a local Publisher whose records go straight into its View
//     as its own cluster's services (localSink), so a readiness change in this
//     cluster reaches this cluster's proxies in milliseconds, with or without the hub.
//   - watchHub tells the View whether the hub's etcd can be read. While it cannot,
//     no other cluster's heartbeat lapses: this agent's outage says nothing of them.
//   - A restarted agent serves the snapshot of its last view (snapshot.go) until the
//     hub answers.

// localSink hands a Publisher's records to the View as its own cluster's services.
type localSink struct {
	v   *view.View
	log logr.Logger
}

func (s localSink) Upsert(key string, value []byte) {
	rec, err := model.Decode(key, value)
	if err != nil {
		s.log.Error(err, "Local record does not decode; keeping the last good one", "key", key) // unreachable: the publisher encoded it
		return
	}
	if se, ok := rec.(*model.ServiceEndpoints); ok {
		s.v.LocalUpsert(key, se)
	}
}

func (s localSink) Delete(key string) { s.v.LocalDelete(key) }
func (s localSink) MarkSynced()       { s.v.LocalSynced() }

// localView is what the local Publisher reads: serving needs a view, restored or live.
type localView struct {
	*view.View
	cluster string
}

func (l localView) PublishedServices() []string { return l.View.PublishedServices(l.cluster) }

// publishLocal runs the local Publisher until ctx is done.
func publishLocal(ctx context.Context, opts Options, cluster string, deps publishDeps, v *view.View, log logr.Logger) error {
	pub, err := publish.New(publish.Options{
		Cluster: cluster, Kube: deps.kube, MCS: deps.mcs, Sink: localSink{v: v, log: log}, View: localView{v, cluster},
		Local: true, Logger: log,
	})
	if err != nil {
		return err
	}
	defer followGlobalServices(v, pub)()
	return pub.Run(ctx)
}

// Hub contact probing: a linearizable read, so that a hub whose etcd has lost its
// quorum, is frozen or is cut off counts as unreachable.
const (
	hubProbeInterval = time.Second
	hubProbeTimeout  = 2 * time.Second
)

var hubReachable = prometheus.NewGauge(prometheus.GaugeOpts{
	Namespace: "meshfed", Subsystem: "agent", Name: "hub_reachable",
	Help: "1 while the agent can read the hub's etcd; 0 during an outage, when other clusters' heartbeats do not lapse.",
})

// watchHub probes the hub's etcd until ctx is done and tells the View.
func watchHub(ctx context.Context, kv clientv3.KV, cluster string, v *view.View, log logr.Logger) error {
	key := keyspace.ClusterHeartbeat(cluster)
	ticker := time.NewTicker(hubProbeInterval)
	defer ticker.Stop()
	was := v.HubReachable()
	for {
		pctx, cancel := context.WithTimeout(ctx, hubProbeTimeout)
		_, err := kv.Get(pctx, key, clientv3.WithCountOnly())
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		ok := err == nil
		v.SetHubReachable(ok)
		if ok {
			hubReachable.Set(1)
		} else {
			hubReachable.Set(0)
		}
		if ok != was {
			if ok {
				log.Info("Hub reachable again: heartbeats lapse again from now")
			} else {
				log.Error(err, "Hub unreachable: serving the last view; other clusters' heartbeats do not lapse meanwhile")
			}
			was = ok
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// minHeartbeatInterval bounds how often an agent writes its heartbeat.
const minHeartbeatInterval = 250 * time.Millisecond

// heartbeatInterval is how often an agent writes its heartbeat: a third of its lease's
// TTL, or of the shortest demoteAfter of any policy, whichever is shorter, so that no
// reader judges a live cluster stale. Readers judge freshness by when they last saw
// the heartbeat written, not by whether its key exists: the lease outlives the last
// write by up to its TTL. A policy with a short demoteAfter thus costs heartbeat
// writes, which the operator asked for.
func heartbeatInterval(ttl time.Duration, policies []*model.Policy) time.Duration {
	d := ttl / 3
	for _, p := range policies {
		if p.DemoteAfter.Duration > 0 {
			d = min(d, p.DemoteAfter.Duration/3)
		}
	}
	return max(d, minHeartbeatInterval)
}
