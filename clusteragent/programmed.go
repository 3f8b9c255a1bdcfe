package clusteragent

import (
	"bytes"
	"context"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshfed/meshfed/internal/etcd/admit"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// programmedInterval is the least time between two writes of the programmed report:
// ACKs arrive per stream, the report changes far less often.
const programmedInterval = time.Second

var programmedWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "meshfed", Subsystem: "agent", Name: "programmed_writes_total",
	Help: "Writes of the cluster's programmed report (which policy generations its proxies took) to the hub's etcd, by result (ok, error, over_limit).",
}, []string{"result"})

// programmedSource is the xDS server's judgement of the policy generations.
type programmedSource interface {
	Programmed() []model.PolicyProgrammed
	ProgrammedChanged() <-chan struct{}
}

// reportProgrammed writes the cluster's programmed report (keyspace.ClusterProgrammed)
// while ctx lasts (the leader's term): once at the start, then when it changes, at
// most every interval, and again after a failed write.
func reportProgrammed(ctx context.Context, etcd *clientv3.Client, v *view.View, cluster string, src programmedSource,
	interval time.Duration, log logr.Logger) {
	var last []byte
	retry := time.NewTimer(0) // the first report
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-src.ProgrammedChanged():
		case <-retry.C:
		}
		val := programmedValue(v, cluster, src.Programmed(), log)
		if val != nil && !bytes.Equal(val, last) {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := etcd.Put(wctx, keyspace.ClusterProgrammed(cluster), string(val))
			cancel()
			if err != nil {
				programmedWrites.WithLabelValues("error").Inc()
				log.Error(err, "write the programmed report; retrying")
				retry.Reset(interval)
			} else {
				programmedWrites.WithLabelValues("ok").Inc()
				last = val
			}
		}
		select { // debounce
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// programmedValue is the report's value, within the cluster's value limit: when the
// whole report does not fit, Programmed entries go first (Refused and Pending say
// more), then the rest from the end. nil if it cannot be encoded.
func programmedValue(v *view.View, cluster string, policies []model.PolicyProgrammed, log logr.Logger) []byte {
	limit := admit.LimitsOf(nil).ValueBytes
	if c, ok := v.Cluster(cluster); ok {
		limit = admit.LimitsOf(c.Info).ValueBytes
	}
	if len(policies) > model.MaxProgrammedPolicies {
		policies = policies[:model.MaxProgrammedPolicies]
	}
	rec := &model.Programmed{Cluster: cluster, Policies: policies}
	val, err := model.Encode(rec)
	if err != nil {
		log.Error(err, "encode the programmed report")
		return nil
	}
	if len(val) <= limit {
		return val
	}
	programmedWrites.WithLabelValues("over_limit").Inc()
	var kept []model.PolicyProgrammed
	for _, p := range policies {
		if p.State != model.StateProgrammed {
			kept = append(kept, p)
		}
	}
	for {
		rec.Policies = kept
		if val, err = model.Encode(rec); err == nil && len(val) <= limit {
			log.Info("programmed report over the cluster's value limit: entries left out", "limit", limit,
				"policies", len(policies), "kept", len(kept))
			return val
		}
		if len(kept) == 0 {
			return nil
		}
		kept = kept[:len(kept)/2]
	}
}
