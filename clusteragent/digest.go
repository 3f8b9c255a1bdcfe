package clusteragent

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"k8s.io/utils/clock"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// DefaultViewCheckInterval is how often an agent compares its view with the hub's
// store by default. Each check reads every key of the keyspace (keys only) from the
// hub's etcd, and the hub reads them again to judge the report: at 100,000 keys that
// is some megabytes per agent per check, so the default is not seconds.
const DefaultViewCheckInterval = 30 * time.Second

// Resync reasons, the values of the "reason" label of viewResyncs.
const (
	// The View's records differ from the versions its Reader delivered: the View
	// lost, kept or changed a record of its own accord.
	resyncViewInconsistent = "view_inconsistent"
	// The View's digest differs from the store's at the same revision: a version was
	// lost between the store and the View.
	resyncDigestMismatch = "digest_mismatch"
)

// changingRetries bounds how often a check asks a View between revisions again,
// changingWait apart: a batch of events applies in microseconds, a list in up to
// seconds, after which the next check comes soon enough.
const (
	changingRetries = 20
	changingWait    = 50 * time.Millisecond
)

var (
	viewInSync = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "agent", Name: "view_in_sync",
		Help: "1 if the last check found the imported view equal to the hub's store at the same revision, 0 if it differed (a resync followed).",
	})
	viewResyncs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "agent", Name: "view_resyncs_total",
		Help: "Resyncs of the imported view after a check found it different from the hub's store, by reason.",
	}, []string{"reason"})
	viewCheckSeconds = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "agent", Name: "view_check_duration_seconds",
		Help: "How long the last view check took: the View's digest and the store's keys-only read.",
	})
)

func registerDigestMetrics(reg prometheus.Registerer) {
	reg.MustRegister(viewInSync, viewResyncs, viewCheckSeconds)
}

// digestView is the part of the View a viewCheck reads.
type digestView interface {
	Digest() (view.Digest, error)
}

// viewCheck compares what the agent serves with the hub's store and resyncs the
// import when they differ. Every replica runs one over its own View (each serves xDS
// from it); the leader also publishes the latest report in the heartbeat, for the
// hub's ViewInSync condition.
type viewCheck struct {
	view     digestView
	store    kvstore.RangeClient
	resync   func()
	interval time.Duration
	clock    clock.WithTicker
	log      logr.Logger

	resyncs atomic.Int64
	latest  atomic.Pointer[model.ViewDigest]
	// reported is signalled (capacity 1) when latest changed, so that the heartbeat
	// carries a bad report before the resync that follows it heals the view.
	reported chan struct{}
}

func newViewCheck(v digestView, store kvstore.RangeClient, resync func(), interval time.Duration, log logr.Logger) *viewCheck {
	if interval <= 0 {
		interval = DefaultViewCheckInterval
	}
	return &viewCheck{view: v, store: store, resync: resync, interval: interval, clock: clock.RealClock{}, log: log,
		reported: make(chan struct{}, 1)}
}

// Report returns the latest report, nil before the first check. Nil-safe.
func (c *viewCheck) Report() *model.ViewDigest {
	if c == nil {
		return nil
	}
	return c.latest.Load()
}

// Reported is signalled after each new report; nil (never ready) on a nil viewCheck.
func (c *viewCheck) Reported() <-chan struct{} {
	if c == nil {
		return nil
	}
	return c.reported
}

// run checks every interval until ctx is done.
func (c *viewCheck) run(ctx context.Context) error {
	t := c.clock.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		if err := c.check(ctx); err != nil && ctx.Err() == nil {
			c.log.V(1).Info("View check skipped", "error", err.Error())
		}
	}
}

// check compares the View with the store once, reports the View's digest, and asks
// for a resync if they differ. An error means nothing was compared.
func (c *viewCheck) check(ctx context.Context) error {
	start := c.clock.Now()
	d, err := c.digest(ctx)
	if err != nil {
		return err
	}
	reason := ""
	var store kvstore.Digest
	if d.Served != d.Imported {
		reason = resyncViewInconsistent
	} else {
		store, err = kvstore.DigestAt(ctx, c.store, keyspace.Root, d.Revision, 0)
		if errors.Is(err, rpctypes.ErrCompacted) {
			// The store forgot that revision; the View moves on, and the next
			// check compares at a newer one.
			return err
		}
		if err != nil {
			return err
		}
		if store != d.Served {
			reason = resyncDigestMismatch
		}
	}
	viewCheckSeconds.Set(c.clock.Since(start).Seconds())
	c.latest.Store(&model.ViewDigest{Revision: d.Revision, Digest: d.Served.String(), Resyncs: c.resyncs.Load()})
	select {
	case c.reported <- struct{}{}:
	default:
	}
	if reason == "" {
		viewInSync.Set(1)
		return nil
	}
	viewInSync.Set(0)
	viewResyncs.WithLabelValues(reason).Inc()
	c.resyncs.Add(1)
	c.log.Info("The imported view differs from the hub's store: resyncing", "reason", reason, "revision", d.Revision,
		"served", d.Served.String(), "imported", d.Imported.String(), "store", store.String())
	c.resync()
	return nil
}

// digest asks the View for its Digest, waiting briefly while it is between
// revisions.
func (c *viewCheck) digest(ctx context.Context) (view.Digest, error) {
	for i := 0; ; i++ {
		d, err := c.view.Digest()
		if !errors.Is(err, view.ErrChanging) || i == changingRetries {
			return d, err
		}
		select {
		case <-ctx.Done():
			return view.Digest{}, ctx.Err()
		case <-c.clock.After(changingWait):
		}
	}
}
