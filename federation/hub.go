package federation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/federation/console"
	"github.com/meshfed/meshfed/federation/internal/controllers"
	"github.com/meshfed/meshfed/federation/internal/etcdmaint"
	"github.com/meshfed/meshfed/federation/internal/etcdsec"
	"github.com/meshfed/meshfed/federation/internal/signer"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/embedetcd"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/internal/version"
	"github.com/meshfed/meshfed/trust/meshca"
)

// caLifetime is the life of the embedded etcd's CA; its serving certificate is
// reissued at every start and renewed while the hub runs (hubCerts).
const caLifetime = 10 * 365 * 24 * time.Hour

// Defaults of the hub's etcd upkeep (docs/operations.md, "The hub's etcd").
const (
	// DefaultEtcdCompactionInterval is kube-apiserver's: a watcher that falls
	// at most this far behind resumes without a re-list.
	DefaultEtcdCompactionInterval = 5 * time.Minute
	DefaultEtcdQuotaBytes         = embedetcd.DefaultQuotaBytes
	DefaultEtcdMaxRequestBytes    = embedetcd.DefaultMaxRequestBytes
	DefaultEtcdDefragMinFreeBytes = etcdmaint.DefaultDefragMinFreeBytes
	DefaultEtcdDefragMinRatio     = etcdmaint.DefaultDefragMinRatio
	DefaultEtcdCheckInterval      = etcdmaint.DefaultCheckInterval
)

// Options configure the hub. KubeConfig and DataDir are required.
type Options struct {
	// KubeConfig reaches the hub's API server.
	KubeConfig *rest.Config
	// DataDir holds the embedded etcd's data and the hub's etcd CA. It survives restarts.
	DataDir string

	// EtcdListenURL is where the embedded etcd serves clients. Default
	// https://127.0.0.1:2379. Ignored with external etcd.
	EtcdListenURL string
	// EtcdAdvertiseURLs are the etcd URLs agents use. Default EtcdListenURL, or
	// EtcdEndpoints with external etcd.
	EtcdAdvertiseURLs []string
	// EtcdServerNames are extra DNS names or IPs for the embedded etcd's serving
	// certificate, for agents that reach it by another name.
	EtcdServerNames []string

	// External etcd: EtcdEndpoints replaces the embedded server. The hub connects as
	// etcd's root user with EtcdCertFile/EtcdKeyFile, trusting EtcdCAFile, and signs
	// agents' client certificates with the CA etcd trusts for clients
	// (EtcdClientCACertFile/EtcdClientCAKeyFile).
	EtcdEndpoints        []string
	EtcdCAFile           string
	EtcdCertFile         string
	EtcdKeyFile          string
	EtcdClientCACertFile string
	EtcdClientCAKeyFile  string

	// The hub's etcd upkeep. EtcdQuotaBytes and EtcdMaxRequestBytes limit the
	// embedded etcd (an external one has its own flags); defaults
	// DefaultEtcdQuotaBytes (2 GiB) and DefaultEtcdMaxRequestBytes (1.5 MiB).
	// History older than EtcdCompactionInterval is compacted, by the embedded
	// etcd itself or by the hub's leader for an external one; default
	// DefaultEtcdCompactionInterval (5m). A member is defragmented when its
	// free pages reach both EtcdDefragMinFreeBytes and EtcdDefragMinRatio of
	// its database; defaults 100 MiB and 0.5. Every EtcdCheckInterval the
	// leader reads the members' status and alarms and recovers from NOSPACE;
	// default DefaultEtcdCheckInterval (30s).
	EtcdQuotaBytes         int64
	EtcdMaxRequestBytes    uint
	EtcdCompactionInterval time.Duration
	EtcdDefragMinFreeBytes int64
	EtcdDefragMinRatio     float64
	EtcdCheckInterval      time.Duration

	// MetricsAddr serves Prometheus metrics; "0" disables. Default ":9090".
	MetricsAddr string
	// HealthAddr serves /healthz and /readyz; "0" disables. Default ":9091".
	HealthAddr string
	// ConsoleAddr serves the read-only web console (package console) on every
	// replica, standbys too; "" or "0" is off, the default: the page shows the whole
	// federation to anyone who reaches it, unauthenticated, so an operator opens it
	// on purpose (loopback and kubectl port-forward, or behind an authenticating
	// proxy). ConsoleAgents maps a cluster to the URL of its agent's debug address,
	// where the console asks for explain tables.
	ConsoleAddr   string
	ConsoleAgents map[string]string
	// LeaderElection runs this hub as one of several replicas (see leader.go): the
	// holder of the Lease LeaderElectionID in hubinfo.Namespace on the hub's API server
	// runs everything that writes; the others keep a warm view and take over when it
	// dies. It needs EtcdEndpoints: with the embedded etcd every replica would run an
	// etcd and a CA of its own (split brain), so setDefaults refuses it.
	LeaderElection bool
	// LeaderElectionIdentity names this replica in the Lease. Default: the host name
	// and a random suffix, unique even for replicas on one host.
	LeaderElectionIdentity string
	// LeaseDuration, RenewDeadline and RetryPeriod tune the election: a dead leader is
	// replaced within LeaseDuration+RetryPeriod. Defaults DefaultLeaseDuration,
	// DefaultRenewDeadline, DefaultRetryPeriod.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration

	// MeshCA runs the mesh's CA (cert-manager's controllers in-process, the root as a
	// CA ClusterIssuer) and signs clusters' intermediate CSRs. TrustDomain is the
	// mesh's SPIFFE trust domain; default "meshfed.local".
	MeshCA      bool
	TrustDomain string

	// AgentCertLifetime is the life of agents' etcd client certificates the hub signs
	// (at registration and at each renewal), and the most a registration may ask for.
	// Default 30 days (signer.DefaultLifetime); at most 90 days.
	AgentCertLifetime time.Duration
	// EtcdCertLifetime is the life of the embedded etcd's serving certificate and of
	// the hub's own etcd client certificate, renewed at two thirds of it. Default
	// DefaultEtcdCertLifetime. Ignored with external etcd.
	EtcdCertLifetime time.Duration

	Logger logr.Logger
}

// Defaults of Options.
const (
	DefaultEtcdListenURL = "https://127.0.0.1:2379"
	DefaultMetricsAddr   = ":9090"
	DefaultHealthAddr    = ":9091"
)

func (o *Options) setDefaults() error {
	if o.KubeConfig == nil || o.DataDir == "" {
		return errors.New("hub: KubeConfig and DataDir are required")
	}
	if err := o.setLeaderElectionDefaults(); err != nil {
		return err
	}
	if o.EtcdListenURL == "" {
		o.EtcdListenURL = DefaultEtcdListenURL
	}
	if len(o.EtcdAdvertiseURLs) == 0 {
		o.EtcdAdvertiseURLs = []string{o.EtcdListenURL}
		if len(o.EtcdEndpoints) > 0 {
			o.EtcdAdvertiseURLs = o.EtcdEndpoints
		}
	}
	if o.EtcdCompactionInterval <= 0 {
		o.EtcdCompactionInterval = DefaultEtcdCompactionInterval
	}
	if o.MetricsAddr == "" {
		o.MetricsAddr = DefaultMetricsAddr
	}
	if o.HealthAddr == "" {
		o.HealthAddr = DefaultHealthAddr
	}
	if o.AgentCertLifetime == 0 {
		o.AgentCertLifetime = signer.DefaultLifetime
	}
	if o.AgentCertLifetime < 0 || o.AgentCertLifetime > signer.MaxLifetime {
		return fmt.Errorf("hub: agent certificate lifetime %s is not in (0, %s]", o.AgentCertLifetime, signer.MaxLifetime)
	}
	if o.EtcdCertLifetime == 0 {
		o.EtcdCertLifetime = DefaultEtcdCertLifetime
	}
	return nil
}

// Run runs the hub until ctx is done.
func Run(ctx context.Context, opts Options) error {
	if err := opts.setDefaults(); err != nil {
		return err
	}
	log := opts.Logger
	ctx = logr.NewContext(ctx, log)

	conn, err := connectEtcd(ctx, &opts)
	if err != nil {
		return err
	}
	defer conn.close()
	if err := etcdsec.EnableAuth(ctx, conn.client); err != nil {
		return err
	}

	v := view.New(view.Options{Logger: log.WithName("admission")})
	reader, err := kvstore.NewReader(kvstore.ReaderOptions[model.Record]{
		Client: conn.client, Prefix: keyspace.ClustersPrefix(), Decode: v.Decode, Observer: v,
		Logger: log.WithName("reader"),
	})
	if err != nil {
		return err
	}

	v.SetResync(reader.Resync)
	registerMetrics.Do(func() { RegisterMetrics(ctrlmetrics.Registry) })
	mgrOpts := ctrl.Options{
		Scheme:                 hubinfo.Scheme(),
		Logger:                 log,
		Metrics:                metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress: opts.HealthAddr,
	}
	if err := leaderElection(ctx, &opts, &mgrOpts); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(opts.KubeConfig, mgrOpts)
	if err != nil {
		return fmt.Errorf("hub manager: %w", err)
	}
	// Every replica reads, the leader and standbys alike, so that a standby takes over
	// with a view that is already synced: the reader only reads etcd.
	if err := mgr.Add(&viewReader{run: reader.Run}); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("view-synced", viewSynced(v)); err != nil {
		return err
	}
	if err := controllers.Setup(mgr, controllers.Options{KV: conn.client, Auth: conn.client, View: v}); err != nil {
		return err
	}
	if err := (&signer.Reconciler{Client: mgr.GetClient(), CA: conn.clientCA, Lifetime: opts.AgentCertLifetime}).Setup(mgr); err != nil {
		return err
	}
	renewals := &signer.EtcdRenewals{KV: conn.client, View: v, CA: conn.clientCA, Lifetime: opts.AgentCertLifetime}
	if err := mgr.Add(renewals); err != nil {
		return err
	}
	if conn.certs != nil {
		if err := mgr.Add(conn.certs); err != nil {
			return err
		}
	}
	if opts.MeshCA {
		td := opts.TrustDomain
		if td == "" {
			td = v1.DefaultTrustDomain
		}
		if err := mgr.Add(&controllers.MeshCA{Config: opts.KubeConfig, KV: conn.client, View: v, TrustDomain: td}); err != nil {
			return err
		}
	}
	if err := addEtcdMaintenance(mgr, conn, &opts); err != nil {
		return err
	}
	if err := addConsole(mgr, conn, v, &opts); err != nil {
		return err
	}
	advertise := &hubConfig{client: mgr.GetClient(), endpoints: opts.EtcdAdvertiseURLs, ca: conn.serverCA}
	if err := mgr.Add(advertise); err != nil {
		return err
	}
	log.Info("hub starting", "etcd", opts.EtcdAdvertiseURLs, "embedded", len(opts.EtcdEndpoints) == 0,
		"leaderElection", opts.LeaderElection, "identity", opts.LeaderElectionIdentity)
	return mgr.Start(ctx)
}

// addEtcdMaintenance adds the loop that compacts (external etcd only: the
// embedded one compacts itself), defragments and recovers the hub's etcd from
// NOSPACE, on the leading replica. Its Events are about the hub's ConfigMap.
func addEtcdMaintenance(mgr manager.Manager, conn *etcdConn, opts *Options) error {
	o := etcdmaint.Options{
		Client:             conn.client,
		Endpoints:          conn.endpoints,
		CheckInterval:      opts.EtcdCheckInterval,
		DefragMinFreeBytes: opts.EtcdDefragMinFreeBytes,
		DefragMinRatio:     opts.EtcdDefragMinRatio,
		Recorder:           mgr.GetEventRecorder("meshfed-hub"),
		Regarding: &corev1.ObjectReference{
			APIVersion: "v1", Kind: "ConfigMap", Namespace: hubinfo.Namespace, Name: hubinfo.ConfigMapName,
		},
		Logger: opts.Logger.WithName("etcd-maintenance"),
	}
	if conn.server == nil {
		o.CompactInterval = opts.EtcdCompactionInterval
	}
	m, err := etcdmaint.New(o)
	if err != nil {
		return err
	}
	return mgr.Add(m)
}

// addConsole adds the web console, if Options.ConsoleAddr turns it on. The hub's
// view holds the clusters only; the console also reads the global services as the
// agents do, from the hub's etcd, into a view of its own. It listens now, so that a
// wrong address fails the start rather than a runnable later.
func addConsole(mgr manager.Manager, conn *etcdConn, v *view.View, opts *Options) error {
	if opts.ConsoleAddr == "" || opts.ConsoleAddr == "0" {
		return nil
	}
	globals := view.New(view.Options{Logger: opts.Logger.WithName("console-view")})
	reader, err := kvstore.NewReader(kvstore.ReaderOptions[model.Record]{
		Client: conn.client, Prefix: keyspace.GlobalServicesPrefix(), Decode: globals.Decode, Observer: globals,
		Logger: opts.Logger.WithName("console-reader"),
	})
	if err != nil {
		return err
	}
	globals.SetResync(reader.Resync)
	if err := mgr.Add(&viewReader{run: reader.Run}); err != nil {
		return err
	}
	c, err := console.New(console.Options{View: consoleView{View: v, globals: globals}, Agents: opts.ConsoleAgents,
		Logger: opts.Logger.WithName("console")})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", opts.ConsoleAddr)
	if err != nil {
		return fmt.Errorf("hub console: %w", err)
	}
	opts.Logger.Info("serving the web console, read-only and unauthenticated", "addr", l.Addr().String(), "explainAgents", len(opts.ConsoleAgents))
	return mgr.Add(&consoleRunnable{serve: func(ctx context.Context) error { return c.Serve(ctx, l) }})
}

// consoleView is the hub's view of the clusters with the console's of the global
// services.
type consoleView struct {
	*view.View
	globals *view.View
}

func (c consoleView) GlobalServices() []model.GlobalService { return c.globals.GlobalServices() }
func (c consoleView) HasSynced() bool                       { return c.View.HasSynced() && c.globals.HasSynced() }

// consoleRunnable serves the console on every replica: standbys hold the same view.
type consoleRunnable struct{ serve func(context.Context) error }

func (r *consoleRunnable) Start(ctx context.Context) error { return r.serve(ctx) }
func (r *consoleRunnable) NeedLeaderElection() bool        { return false }

// etcdConn is the hub's root connection to its etcd.
type etcdConn struct {
	client    *clientv3.Client
	endpoints []string // every member's client URL
	serverCA  []byte   // PEM CA that etcd's serving certificate chains to
	clientCA  *pki.CA  // the CA etcd trusts for client certificates
	server    *embedetcd.Server
	certs     *hubCerts // renews the embedded etcd's certificates; nil with external etcd
	stopGuard func()    // stops the embedded etcd's Guard; nil with external etcd
}

func (c *etcdConn) close() {
	c.client.Close()
	if c.stopGuard != nil {
		c.stopGuard()
	}
	if c.server != nil {
		c.server.Close()
	}
}

func connectEtcd(ctx context.Context, opts *Options) (*etcdConn, error) {
	conn := &etcdConn{}
	var rootCert, rootKey []byte
	endpoints := opts.EtcdEndpoints
	if len(endpoints) == 0 {
		ca, err := loadOrCreateCA(filepath.Join(opts.DataDir, "pki"), "meshfed-hub-etcd-ca")
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(opts.DataDir, "pki")
		hosts := append([]string{"localhost", "127.0.0.1", "::1"}, opts.EtcdServerNames...)
		for _, u := range append([]string{opts.EtcdListenURL}, opts.EtcdAdvertiseURLs...) {
			if h := hostOf(u); h != "" {
				hosts = append(hosts, h)
			}
		}
		conn.certs = &hubCerts{ca: ca, dir: dir, hosts: hosts, lifetime: opts.EtcdCertLifetime, clock: clock.RealClock{}}
		if _, err := conn.certs.issueServer(); err != nil {
			return nil, err
		}
		guard := etcdsec.NewGuard(opts.Logger.WithName("etcd-guard"))
		server, err := embedetcd.Start(ctx, embedetcd.Options{
			DataDir:   filepath.Join(opts.DataDir, "etcd"),
			Name:      "meshfed-hub",
			ClientURL: opts.EtcdListenURL,
			ClientTLS: &embedetcd.TLS{
				CertFile: filepath.Join(dir, etcdServerCertFile), KeyFile: filepath.Join(dir, etcdServerKeyFile),
				TrustedCAFile: filepath.Join(dir, "ca.crt"), ClientCertAuth: true,
			},
			QuotaBackendBytes:       opts.EtcdQuotaBytes,
			MaxRequestBytes:         opts.EtcdMaxRequestBytes,
			AutoCompactionRetention: opts.EtcdCompactionInterval,
			Logger:                  opts.Logger.WithName("etcd"),
			// etcd logs every auth request at warn: keep its errors only.
			ZapLogger: errorLogger(),
			// Ends the open streams of revoked clusters' certificates (etcdsec.Guard).
			GRPCServerOptions: []grpc.ServerOption{guard.ServerOption()},
		})
		if err != nil {
			return nil, fmt.Errorf("hub etcd: %w", err)
		}
		conn.server, conn.stopGuard = server, runGuard(guard, server)
		endpoints = server.Endpoints()
		if rootCert, rootKey, err = conn.certs.issueClient(); err != nil {
			server.Close()
			return nil, err
		}
		conn.serverCA, conn.clientCA = ca.CertPEM, ca
	} else {
		var err error
		files := map[string]*[]byte{opts.EtcdCAFile: &conn.serverCA, opts.EtcdCertFile: &rootCert, opts.EtcdKeyFile: &rootKey}
		for name, dst := range files {
			if *dst, err = os.ReadFile(name); err != nil {
				return nil, fmt.Errorf("external etcd credentials: %w", err)
			}
		}
		caCert, err := os.ReadFile(opts.EtcdClientCACertFile)
		if err != nil {
			return nil, fmt.Errorf("external etcd client CA: %w", err)
		}
		caKey, err := os.ReadFile(opts.EtcdClientCAKeyFile)
		if err != nil {
			return nil, fmt.Errorf("external etcd client CA: %w", err)
		}
		if conn.clientCA, err = pki.LoadCA(caCert, caKey); err != nil {
			return nil, err
		}
	}
	pair, err := etcdconn.NewKeyPair(rootCert, rootKey)
	if err == nil && conn.certs != nil {
		conn.certs.client = pair
	}
	var client *clientv3.Client
	if err == nil {
		client, err = etcdconn.Dial(ctx, endpoints, conn.serverCA, pair)
	}
	if err != nil {
		if conn.server != nil {
			conn.server.Close()
		}
		return nil, fmt.Errorf("connect to hub etcd: %w", err)
	}
	conn.client, conn.endpoints = client, endpoints
	return conn, nil
}

func loadOrCreateCA(dir, cn string) (*pki.CA, error) {
	certPEM, cerr := os.ReadFile(filepath.Join(dir, "ca.crt"))
	keyPEM, kerr := os.ReadFile(filepath.Join(dir, "ca.key"))
	if cerr == nil && kerr == nil {
		return pki.LoadCA(certPEM, keyPEM)
	}
	ca, err := pki.NewCA(cn, caLifetime)
	if err != nil {
		return nil, err
	}
	keyPEM, err = ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	return ca, writeFiles(dir, map[string][]byte{"ca.crt": ca.CertPEM, "ca.key": keyPEM})
}

func writeFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// hostOf is the host (name or IP, without brackets or port) of an https URL the
// embedded etcd serves on, for its certificate; "" for anything else.
func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" {
		return ""
	}
	return u.Hostname()
}

// hubConfig publishes the hub ConfigMap (package hubinfo) once the manager runs.
type hubConfig struct {
	client    client.Client
	endpoints []string
	ca        []byte
}

func (h *hubConfig) NeedLeaderElection() bool { return true }

func (h *hubConfig) Start(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hubinfo.Namespace}}
	if err := h.client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("publish hub config: %w", err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: hubinfo.Namespace, Name: hubinfo.ConfigMapName}}
	_, err := ctrl.CreateOrUpdate(ctx, h.client, cm, func() error {
		cm.Data = map[string]string{hubinfo.KeyEtcdEndpoints: strings.Join(h.endpoints, ","), hubinfo.KeyEtcdCA: string(h.ca),
			hubinfo.KeyVersion: version.String()}
		return nil
	})
	if err != nil {
		return fmt.Errorf("publish hub config: %w", err)
	}
	<-ctx.Done()
	return nil
}

// errorLogger is a JSON zap logger to stderr that logs errors only.
func errorLogger() *zap.Logger {
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	cfg.Sampling = nil
	log, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return log
}

// registerMetrics registers the hub's metrics once per process: controller-runtime's
// manager serves its own registry, which is process-wide.
var registerMetrics sync.Once

// RegisterMetrics registers the hub's metrics with reg: its etcd store's, its
// reconcilers', its CSR signer's, its mesh CA's and its etcd maintenance's, and no
// other component's. Run registers them with controller-runtime's registry, which
// the manager serves next to its own reconcile and work-queue metrics.
func RegisterMetrics(reg prometheus.Registerer) {
	kvstore.RegisterMetrics(reg)
	view.RegisterMetrics(reg)
	controllers.RegisterMetrics(reg)
	signer.RegisterMetrics(reg)
	meshca.RegisterMetrics(reg)
	etcdmaint.RegisterMetrics(reg)
	etcdsec.RegisterMetrics(reg)
	reg.MustRegister(hubEtcdCertExpiry)
}
