package clusteragent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/clock"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/meshfed/meshfed/clusteragent/internal/publish"
	"github.com/meshfed/meshfed/clusteragent/internal/xds"
	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/internal/xdsnames"
)

// Options configure the agent. KubeConfig is required.
type Options struct {
	// KubeConfig reaches the member cluster's API server.
	KubeConfig *rest.Config
	// Namespace holds the credentials Secret and the leader-election Lease. Default
	// meshfed-system.
	Namespace string
	// Identity names this replica in the Lease and the heartbeat. Default: the host
	// name. Keep it stable across restarts of one replica, so that a restarted leader
	// takes its Lease back at once instead of waiting for it to expire.
	Identity string
	// HTTPAddr serves /healthz and /readyz, for the kubelet's probes. Default ":9092".
	HTTPAddr string
	// MetricsAddr serves /metrics and DebugAddr /debug/ (the imported view, explain):
	// both on loopback by default (DefaultMetricsAddr, DefaultDebugAddr), because the
	// view shows the whole federation. Open them explicitly. Surfaces given the same
	// address share one listener; "0" turns a surface off.
	MetricsAddr, DebugAddr string
	// XDSAddr serves xDS (ADS, gRPC) to the cluster's proxies. Default ":15010" with
	// XDSAuth mtls, "127.0.0.1:15010" without.
	XDSAddr string
	// XDSAuth is how the xDS port authenticates proxies: XDSAuthMTLS or XDSAuthNone.
	// Default: mtls with MTLS (the mesh has a CA), none otherwise.
	XDSAuth string
	// XDSInsecureListen lets XDSAuth none listen on an address that is not loopback:
	// then anyone who reaches it is served the cluster's configuration, in plaintext.
	XDSInsecureListen bool
	// XDSServerNames are the DNS names and IPs of the xDS serving certificate: the
	// hosts proxies may name the agent by in their bootstraps. Default
	// DefaultXDSServerNames(Namespace), and the host of XDSAddr when it is an IP.
	XDSServerNames []string
	// MTLS and TrustDomain: see xds.Options.
	MTLS        bool
	TrustDomain string
	// WorkloadCerts are issued from the cluster's intermediate once the hub's mesh CA
	// has signed it.
	WorkloadCerts WorkloadCerts
	// HeartbeatTTL is the lease of the heartbeat; the hub reports the cluster
	// disconnected this long after the agent stops. Default 15s. The heartbeat is
	// rewritten every third of it.
	HeartbeatTTL time.Duration
	// LeaseDuration, RenewDeadline and RetryPeriod tune leader election. Defaults
	// 15s, 10s and 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// ViewCheckInterval is how often the agent compares its imported view with the
	// hub's store (and resyncs it if they differ). Default DefaultViewCheckInterval.
	ViewCheckInterval time.Duration
	Logger            logr.Logger

	// viewCheck is the running agent's view check, whose reports the heartbeat
	// carries; set by Run.
	viewCheck *viewCheck
}

// Defaults of Options.
const (
	DefaultHTTPAddr    = ":9092"
	DefaultMetricsAddr = "127.0.0.1:9093"
	DefaultDebugAddr   = "127.0.0.1:9094"
	DefaultXDSAddr     = ":" + xdsnames.AgentXDSPort
	// DefaultXDSLoopbackAddr is the xDS address without authentication.
	DefaultXDSLoopbackAddr = "127.0.0.1:" + xdsnames.AgentXDSPort
	DefaultHeartbeatTTL    = 15 * time.Second
)

func (o *Options) setDefaults() error {
	if o.KubeConfig == nil {
		return errors.New("agent: KubeConfig is required")
	}
	if o.Namespace == "" {
		o.Namespace = hubinfo.Namespace
	}
	if o.Identity == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("agent identity: %w", err)
		}
		o.Identity = host
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = DefaultHTTPAddr
	}
	if o.MetricsAddr == "" {
		o.MetricsAddr = DefaultMetricsAddr
	}
	if o.DebugAddr == "" {
		o.DebugAddr = DefaultDebugAddr
	}
	if err := o.setXDSDefaults(); err != nil {
		return err
	}
	if o.HeartbeatTTL == 0 {
		o.HeartbeatTTL = DefaultHeartbeatTTL
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = 15 * time.Second
	}
	if o.RenewDeadline == 0 {
		o.RenewDeadline = 10 * time.Second
	}
	if o.RetryPeriod == 0 {
		o.RetryPeriod = 2 * time.Second
	}
	return nil
}

// setXDSDefaults settles how the xDS port authenticates and where it listens: nothing
// is served unauthenticated beyond loopback unless XDSInsecureListen says so.
func (o *Options) setXDSDefaults() error {
	if o.XDSAuth == "" {
		o.XDSAuth = XDSAuthNone
		if o.MTLS {
			o.XDSAuth = XDSAuthMTLS
		}
	}
	switch o.XDSAuth {
	case XDSAuthMTLS:
		if o.XDSAddr == "" {
			o.XDSAddr = DefaultXDSAddr
		}
		if len(o.XDSServerNames) == 0 {
			o.XDSServerNames = DefaultXDSServerNames(o.Namespace)
			if host, _, err := net.SplitHostPort(o.XDSAddr); err == nil {
				if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !slices.Contains(o.XDSServerNames, ip.String()) {
					o.XDSServerNames = append(o.XDSServerNames, ip.String())
				}
			}
		}
	case XDSAuthNone:
		if o.XDSAddr == "" {
			o.XDSAddr = DefaultXDSLoopbackAddr
		}
		if !o.XDSInsecureListen && !isLoopback(o.XDSAddr) {
			return fmt.Errorf("agent: --xds-addr %s is not a loopback address and --xds-auth is %s: serve xDS with --xds-auth=%s "+
				"(needs the hub's mesh CA), listen on 127.0.0.1, or accept unauthenticated proxies from anywhere with --xds-insecure-listen",
				o.XDSAddr, XDSAuthNone, XDSAuthMTLS)
		}
	default:
		return fmt.Errorf("agent: --xds-auth %q: use %s or %s", o.XDSAuth, XDSAuthMTLS, XDSAuthNone)
	}
	return nil
}

// Run runs the agent until ctx is done.
func Run(ctx context.Context, opts Options) error {
	if err := opts.setDefaults(); err != nil {
		return err
	}
	log := opts.Logger
	ctx = logr.NewContext(ctx, log)
	kube, err := kubernetes.NewForConfig(opts.KubeConfig)
	if err != nil {
		return err
	}
	creds, err := agentcreds.Load(ctx, kube, opts.Namespace)
	if err != nil {
		return err
	}
	cluster := creds.Cluster
	log = log.WithValues("cluster", cluster)
	// The pair is read at every handshake: credentials renews it in place.
	pair, err := etcdconn.NewKeyPair(creds.Etcd.Cert, creds.Etcd.Key)
	if err != nil {
		return err
	}
	etcd, err := etcdconn.Dial(ctx, creds.Etcd.Endpoints, creds.Etcd.CA, pair)
	if err != nil {
		return err
	}
	defer etcd.Close()

	v := view.New(view.Options{Self: cluster, Logger: log.WithName("admission")})
	// Before the hub's store: a replica that starts during a hub outage serves the
	// last view its cluster saved.
	restoreSnapshot(ctx, kube, opts.Namespace, v, log.WithName("snapshot"))
	mcs, err := mcsclient.NewForConfig(opts.KubeConfig)
	if err != nil {
		return err
	}
	deps := publishDeps{kube: kube, mcs: mcs}
	cr := &credentials{cluster: cluster, namespace: opts.Namespace, kube: kube, pair: pair, etcd: etcd, view: v,
		clock: clock.RealClock{}, log: log.WithName("credentials")}
	reader, err := kvstore.NewReader(kvstore.ReaderOptions[model.Record]{
		Client: etcd, Prefix: keyspace.Root, Decode: v.Decode, Observer: v, Logger: log.WithName("import"),
		// A store without the hub's ready marker is being rebuilt: keep serving.
		RequireKey: keyspace.HubReady(),
	})
	if err != nil {
		return err
	}
	v.SetResync(reader.Resync)
	opts.viewCheck = newViewCheck(v, etcd, reader.Resync, opts.ViewCheckInterval, log.WithName("viewcheck"))

	xdsOpts := xds.Options{Cluster: cluster, View: v, Addr: opts.XDSAddr, MTLS: opts.MTLS,
		TrustDomain: opts.TrustDomain, Logger: log.WithName("xds")}
	components := map[string]func(context.Context) error{}
	switch {
	case opts.XDSAuth == XDSAuthMTLS:
		xt := &xdsTLS{cluster: cluster, namespace: opts.Namespace, kube: kube, view: v, names: opts.XDSServerNames, log: log.WithName("xds-tls")}
		xdsOpts.TLS = xt.config()
		components["xds-tls"] = xt.run
	case !isLoopback(opts.XDSAddr):
		log.Info("WARNING: xDS is served WITHOUT AUTHENTICATION beyond loopback (--xds-insecure-listen): anyone who reaches "+
			"this address gets the cluster's configuration and may open any number of streams", "addr", opts.XDSAddr)
	}
	xdsServer, err := xds.New(xdsOpts)
	if err != nil {
		return err
	}
	servers, err := listenHTTP(opts, debugSurfaces(cluster, v, xdsServer.Explain, registry()), log)
	if err != nil {
		return err
	}
	for addr, serve := range servers {
		components["http "+addr] = serve
	}
	log.Info("agent started", "identity", opts.Identity, "etcd", creds.Etcd.Endpoints, "health", opts.HTTPAddr,
		"metrics", opts.MetricsAddr, "debug", opts.DebugAddr, "xds", opts.XDSAddr, "xdsAuth", opts.XDSAuth)
	maps.Copy(components, map[string]func(context.Context) error{
		"import": reader.Run,
		"digest": opts.viewCheck.run,
		"hub":    func(ctx context.Context) error { return watchHub(ctx, etcd, cluster, v, log.WithName("hub")) },
		"local": func(ctx context.Context) error {
			return publishLocal(ctx, opts, cluster, deps, v, log.WithName("local"))
		},
		"xds": xdsServer.Run,
		"sync": func(ctx context.Context) error {
			return lead(ctx, kube, deps, opts, cluster, etcd, v, cr, log, func(ctx context.Context) {
				reportProgrammed(ctx, etcd, v, cluster, xdsServer, programmedInterval, log.WithName("programmed"))
			})
		},
		"credentials": cr.reload,
	})
	return runAll(ctx, components)
}

// registry holds the agent's metrics: its own packages', and no other component's,
// beside controller-runtime's registry, which has the Go runtime's, the process's,
// client-go's and the work queues' (the publisher's queue among them).
func registry() prometheus.Gatherer {
	reg := prometheus.NewRegistry()
	kvstore.RegisterMetrics(reg)
	view.RegisterMetrics(reg)
	publish.RegisterMetrics(reg)
	xds.RegisterMetrics(reg)
	registerAgentMetrics(reg)
	registerCredentialsMetrics(reg)
	registerDigestMetrics(reg)
	registerXDSTLSMetrics(reg)
	return prometheus.Gatherers{ctrlmetrics.Registry, reg}
}

// runAll runs every component until ctx is done or one of them fails; a failure
// cancels the others. It returns once all have returned: nil if ctx ended them, the
// first failure (named by its component) otherwise.
func runAll(ctx context.Context, components map[string]func(context.Context) error) error {
	g, gctx := errgroup.WithContext(ctx)
	for name, run := range components {
		g.Go(func() error {
			err := run(gctx)
			if err == nil && gctx.Err() == nil {
				err = errors.New("stopped")
			}
			if err != nil && gctx.Err() == nil {
				return fmt.Errorf("agent %s: %w", name, err)
			}
			return nil
		})
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// serveHTTP serves until ctx is done, then shuts the server down.
func serveHTTP(ctx context.Context, server *http.Server, l net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- server.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		server.Shutdown(context.WithoutCancel(ctx)) //nolint:errcheck // closing: nothing to do with its error
		<-errc
		return nil
	}
}

// lead runs the sync side, the renewal of the etcd credentials and report (the
// programmed report) whenever this replica holds the Lease.
func lead(ctx context.Context, kube kubernetes.Interface, deps publishDeps, opts Options, cluster string, etcd *clientv3.Client,
	v *view.View, cr *credentials, log logr.Logger, report func(context.Context)) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: opts.Namespace, Name: "meshfed-agent"},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: opts.Identity},
	}
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   opts.LeaseDuration,
			RenewDeadline:   opts.RenewDeadline,
			RetryPeriod:     opts.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            "meshfed-agent",
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					log.Info("leading: publishing this cluster")
					renewed := make(chan struct{})
					go func() { defer close(renewed); cr.renew(ctx) }()
					reported := make(chan struct{})
					go func() { defer close(reported); report(ctx) }()
					syncCluster(ctx, deps, opts, cluster, etcd, v, log)
					<-renewed
					<-reported
				},
				OnStoppedLeading: func() { log.Info("stopped leading") },
			},
		})
	}
	return nil
}
