package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// Desync detection, the hub's side: every agent reports in its heartbeat the digest
// of the view it serves at a revision (model.ViewDigest); the hub computes the digest
// of its own store at that revision (a keys-only read of the whole keyspace) and sets
// ViewInSync. The agent checks itself the same way and resyncs; the hub's verdict is
// the operator's independent word on it.

const (
	// viewCheckMinInterval bounds the hub's reads per cluster: a report newer than
	// this after the last judged waits for the rest of it.
	viewCheckMinInterval = 2 * time.Second
	// viewDigestCacheSize is how many revisions' store digests are kept: agents that
	// report the same revision (a quiet keyspace) cost one read.
	viewDigestCacheSize = 16
	// viewCheckTimeout bounds one digest of the store.
	viewCheckTimeout = 30 * time.Second
)

var (
	hubViewInSync = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "hub", Name: "cluster_view_in_sync",
		Help: "1 if the cluster's agent's last reported view equals the hub's store at the same revision, 0 if it differs; absent while unknown.",
	}, []string{"cluster"})
	hubViewDesyncs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "hub", Name: "cluster_view_desyncs_total",
		Help: "Reports of a cluster's agent whose view differed from the hub's store at the same revision.",
	}, []string{"cluster"})
)

// viewSync judges the agents' view reports. Safe for concurrent reconciles.
type viewSync struct {
	kv    kvstore.RangeClient
	clock clock.PassiveClock

	mu    sync.Mutex
	store map[int64]kvstore.Digest // by revision; at most viewDigestCacheSize
	order []int64                  // store's revisions, oldest first
	last  map[string]judgement     // by cluster
}

// judgement is the verdict on one report of one cluster.
type judgement struct {
	report model.ViewDigest
	cond   metav1.Condition
	at     time.Time
}

func newViewSync(kv kvstore.RangeClient, clk clock.PassiveClock) *viewSync {
	return &viewSync{kv: kv, clock: clk, store: map[int64]kvstore.Digest{}, last: map[string]judgement{}}
}

// viewInSync sets the ViewInSync condition of status from the cluster's heartbeat
// (nil: none) and says how soon to look again (0: at the next change).
func (s *viewSync) viewInSync(ctx context.Context, cluster string, hb *model.Heartbeat, gen int64, status *v1.MeshClusterStatus) time.Duration {
	cond, again := s.condition(ctx, cluster, hb)
	cond.ObservedGeneration = gen
	meta.SetStatusCondition(&status.Conditions, cond)
	switch cond.Status {
	case metav1.ConditionTrue:
		hubViewInSync.WithLabelValues(cluster).Set(1)
	case metav1.ConditionFalse:
		hubViewInSync.WithLabelValues(cluster).Set(0)
	default:
		hubViewInSync.DeleteLabelValues(cluster)
	}
	return again
}

// forget drops what is known of a cluster that was unregistered.
func (s *viewSync) forget(cluster string) {
	s.mu.Lock()
	delete(s.last, cluster)
	s.mu.Unlock()
	hubViewInSync.DeleteLabelValues(cluster)
	hubViewDesyncs.DeleteLabelValues(cluster)
}

func (s *viewSync) condition(ctx context.Context, cluster string, hb *model.Heartbeat) (metav1.Condition, time.Duration) {
	if hb == nil || hb.View == nil {
		msg := "the cluster's agent holds no heartbeat"
		if hb != nil {
			msg = "the cluster's agent has not reported its view yet"
		}
		return metav1.Condition{Type: v1.ConditionViewInSync, Status: metav1.ConditionUnknown, Reason: v1.ReasonViewNoReport, Message: msg}, 0
	}
	report := *hb.View
	now := s.clock.Now()
	s.mu.Lock()
	last, judged := s.last[cluster]
	s.mu.Unlock()
	if judged && last.report == report {
		return last.cond, 0
	}
	if judged {
		if wait := viewCheckMinInterval - now.Sub(last.at); wait > 0 {
			return last.cond, wait
		}
	}
	agent, err := kvstore.ParseDigest(report.Digest)
	if err != nil {
		return metav1.Condition{Type: v1.ConditionViewInSync, Status: metav1.ConditionUnknown, Reason: v1.ReasonViewNoReport,
			Message: "the agent's report does not parse: " + err.Error()}, 0 // model.Decode validated it: unreachable
	}
	store, err := s.storeDigest(ctx, report.Revision)
	var cond metav1.Condition
	switch {
	case errors.Is(err, rpctypes.ErrCompacted):
		cond = metav1.Condition{Type: v1.ConditionViewInSync, Status: metav1.ConditionUnknown, Reason: v1.ReasonViewRevisionCompacted,
			Message: fmt.Sprintf("revision %d of the agent's report is compacted away; waiting for the next report", report.Revision)}
	case err != nil:
		// Not recorded as judged: the next reconcile tries this report again.
		return metav1.Condition{Type: v1.ConditionViewInSync, Status: metav1.ConditionUnknown, Reason: v1.ReasonViewCheckFailed,
			Message: err.Error()}, viewCheckMinInterval
	default:
		cond = viewInSyncCondition(report.Revision, agent, store)
		if cond.Status == metav1.ConditionFalse {
			hubViewDesyncs.WithLabelValues(cluster).Inc()
		}
	}
	s.mu.Lock()
	s.last[cluster] = judgement{report: report, cond: cond, at: now}
	s.mu.Unlock()
	return cond, 0
}

// viewInSyncCondition is the verdict on an agent's digest at rev against the store's.
func viewInSyncCondition(rev int64, agent, store kvstore.Digest) metav1.Condition {
	if agent == store {
		return metav1.Condition{Type: v1.ConditionViewInSync, Status: metav1.ConditionTrue, Reason: v1.ReasonViewInSync,
			Message: fmt.Sprintf("at revision %d the agent serves the %d keys the hub's store holds", rev, store.Keys)}
	}
	return metav1.Condition{Type: v1.ConditionViewInSync, Status: metav1.ConditionFalse, Reason: v1.ReasonViewDigestMismatch,
		Message: fmt.Sprintf("at revision %d the agent serves %d keys (digest %016x) where the hub's store holds %d (digest %016x); the agent resyncs its view",
			rev, agent.Keys, agent.Sum, store.Keys, store.Sum)}
}

// storeDigest returns the digest of the whole keyspace at rev, from the cache or the
// store.
func (s *viewSync) storeDigest(ctx context.Context, rev int64) (kvstore.Digest, error) {
	s.mu.Lock()
	d, ok := s.store[rev]
	s.mu.Unlock()
	if ok {
		return d, nil
	}
	ctx, cancel := context.WithTimeout(ctx, viewCheckTimeout)
	defer cancel()
	d, err := kvstore.DigestAt(ctx, s.kv, keyspace.Root, rev, 0)
	if err != nil {
		return kvstore.Digest{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.store[rev]; !ok {
		s.store[rev] = d
		s.order = append(s.order, rev)
		slices.Sort(s.order)
		if len(s.order) > viewDigestCacheSize {
			delete(s.store, s.order[0])
			s.order = s.order[1:]
		}
	}
	return d, nil
}

// viewInSyncFlipped: an Event when a view is found different, and when it is in
// sync again; not for Unknown, which comes and goes with heartbeats.
func viewInSyncFlipped(prev *metav1.Condition, next metav1.Condition) bool {
	switch next.Status {
	case metav1.ConditionFalse:
		return prev == nil || prev.Status != metav1.ConditionFalse
	case metav1.ConditionTrue:
		return prev != nil && prev.Status == metav1.ConditionFalse
	}
	return false
}
