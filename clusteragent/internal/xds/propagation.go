package xds

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

// Per-cluster-pair propagation: how long a change written in cluster X (its
// record's ChangedAt, stamped by X's publisher when its informer saw the change)
// took to be pushed to this cluster's proxies, by X. A slow link shows as one
// source_cluster whose figures stand out.
//
// The two ends are read on two clocks, X's and this cluster's, so each figure
// includes the skew between them, as Istio's and Cilium's cross-cluster latency
// figures do. A figure below zero or above maxPropagation says more about the
// clocks (or about the writer) than about the link: it is counted in
// propagationDiscarded, never observed. ChangedAt is trusted for nothing else.

// maxPropagation bounds a believable figure: beyond it, the writer's clock or
// stamp is wrong, or the change waited on something other than the path (the
// agent was down).
const maxPropagation = time.Hour

var (
	propagationSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "propagation_seconds",
		Help: "From a service change seen by the informer of the source cluster's agent (the record's changedAt) to its push to this cluster's proxies, " +
			"by source cluster. Read on two clocks: includes the clock skew between the clusters.",
		Buckets: latencyBuckets,
	}, []string{"source_cluster"})
	propagationDiscarded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "propagation_discarded_total",
		Help: "Propagation figures not observed because they were negative or over an hour, by source cluster: the clusters' clocks disagree, or the source's stamp is wrong.",
	}, []string{"source_cluster"})
)

// propagation remembers, per source cluster, the earliest change written since the
// last push, and observes each one's age at the next push. Safe for concurrent use;
// the zero value is ready.
type propagation struct {
	mu sync.Mutex
	// pending maps a source cluster to the earliest ChangedAt of its records seen
	// since the last push.
	pending map[string]time.Time
}

// written notes a record of cluster that the next push carries. A record without
// ChangedAt (deleted, or from a writer that does not stamp) is ignored.
func (p *propagation) written(cluster string, rec *model.ServiceEndpoints) {
	if rec == nil || rec.ChangedAt.IsZero() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if at, ok := p.pending[cluster]; ok && !rec.ChangedAt.Before(at) {
		return
	}
	if p.pending == nil {
		p.pending = map[string]time.Time{}
	}
	p.pending[cluster] = rec.ChangedAt
}

// take returns, per source cluster, the earliest change written since the last take,
// and forgets them: what the rebuild starting now carries. A change written while it
// runs waits for the next one (the rebuild it wakes), so that no figure is observed
// before its change was pushed.
func (p *propagation) take() map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	pending := p.pending
	p.pending = nil
	return pending
}

// observePropagation observes, per source cluster, the age at now of the changes taken (take),
// which were pushed at now.
func observePropagation(taken map[string]time.Time, now time.Time) {
	for cluster, at := range taken {
		d := now.Sub(at)
		if d < 0 || d > maxPropagation {
			propagationDiscarded.WithLabelValues(cluster).Inc()
			continue
		}
		propagationSeconds.WithLabelValues(cluster).Observe(d.Seconds())
	}
}
