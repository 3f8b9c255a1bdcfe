package clusteragent

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/meshfed/meshfed/clusteragent/internal/publish"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/internal/version"
)

// syncRetry is the pause before the sync side starts again after failing.
const syncRetry = 2 * time.Second

// syncCluster runs the sync side until ctx is done, starting it again after failures.
func syncCluster(ctx context.Context, deps publishDeps, opts Options, cluster string, etcd *clientv3.Client, v *view.View, log logr.Logger) {
	for {
		err := syncOnce(ctx, deps, opts, cluster, etcd, v, log)
		if ctx.Err() != nil {
			return
		}
		log.Error(err, "sync side failed; starting it again", "after", syncRetry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(syncRetry):
		}
	}
}

// publishDeps are the member cluster's clients a Publisher reads with.
type publishDeps struct {
	kube kubernetes.Interface
	mcs  mcsclient.Interface
}

func syncOnce(ctx context.Context, deps publishDeps, opts Options, cluster string, etcd *clientv3.Client, v *view.View, log logr.Logger) error {
	// The publisher is the only writer of the cluster's services: after a hub
	// store restored from a backup, services deleted since come back, and the
	// writer deletes them.
	// pub is set before services.Run, the only caller of OnWritten, starts.
	var pub *publish.Publisher
	services, err := kvstore.NewWriter(kvstore.WriterOptions{
		Name: "services", Client: etcd, SyncedKey: keyspace.ClusterSynced(cluster), Logger: log.WithName("services"),
		OwnedPrefixes: []string{keyspace.ClusterServices(cluster)},
		OnWritten:     func(key string, value []byte) { pub.Written(key, value) },
	})
	if err != nil {
		return err
	}
	defer services.Close()
	// Revoking on close tells the hub at once that a stopped agent is gone; a killed
	// one is noticed when the lease expires.
	heartbeat, err := kvstore.NewWriter(kvstore.WriterOptions{
		Name: "heartbeat", Client: etcd, LeaseTTL: opts.HeartbeatTTL, RevokeOnClose: true, Logger: log.WithName("heartbeat"),
	})
	if err != nil {
		return err
	}
	defer heartbeat.Close()
	pub, err = publish.New(publish.Options{
		Cluster: cluster, Kube: deps.kube, MCS: deps.mcs, Sink: services, View: publishView{v, cluster},
		// The publisher names the cluster in its own log lines.
		Logger: opts.Logger.WithName("publish"),
	})
	if err != nil {
		return err
	}
	defer followGlobalServices(v, pub)()

	ts := &trustSync{cluster: cluster, namespace: opts.Namespace, kube: deps.kube, view: v, sink: services,
		workloads: opts.WorkloadCerts, log: log.WithName("trust")}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ts.run(ctx) })
	g.Go(func() error { return services.Run(ctx) })
	g.Go(func() error { return heartbeat.Run(ctx) })
	g.Go(func() error { return pub.Run(ctx) })
	g.Go(func() error { return beat(ctx, heartbeat, cluster, opts, v) })
	g.Go(func() error { return saveSnapshots(ctx, deps.kube, opts.Namespace, v, log.WithName("snapshot")) })
	return g.Wait()
}

// beat rewrites the heartbeat every heartbeatInterval, so that readers see it fresh.
func beat(ctx context.Context, w *kvstore.Writer, cluster string, opts Options, v *view.View) error {
	key := keyspace.ClusterHeartbeat(cluster)
	for {
		value, err := model.Encode(&model.Heartbeat{Time: time.Now().UTC(), TTL: int64(opts.HeartbeatTTL / time.Second), Agent: opts.Identity,
			View: opts.viewCheck.Report(), Version: version.String()})
		if err != nil {
			return err
		}
		w.Upsert(key, value)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(heartbeatInterval(opts.HeartbeatTTL, v.Policies())):
		case <-opts.viewCheck.Reported():
			// At once: a report of a view found different must reach the hub
			// before the resync that follows heals it.
		}
	}
}

// publishView is what the hub's Publisher reads: a live view of the hub's etcd, as
// it prunes what the store holds and a restored view may lack the latest keys.
type publishView struct {
	*view.View
	cluster string
}

func (p publishView) PublishedServices() []string { return p.View.PublishedServices(p.cluster) }

func (p publishView) WaitSynced(ctx context.Context) error { return p.View.WaitLive(ctx) }

var _ publish.View = publishView{}

// followGlobalServices tells pub of every change to the global services (and traffic
// policies, which name the labels records carry) in v, until
// the returned function is called.
func followGlobalServices(v *view.View, pub *publish.Publisher) (unsubscribe func()) {
	return v.Subscribe(func(k keyspace.Key) {
		// A traffic policy may name label keys endpoint records must carry.
		if k.Kind == keyspace.KindGlobalService || k.Kind == keyspace.KindTrafficPolicy {
			pub.GlobalServicesChanged()
		}
	})
}
