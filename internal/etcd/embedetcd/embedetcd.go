package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	etcdserverpb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
)

// Defaults of the server's limits: etcd's own, written down so that the hub
// states what it runs with.
const (
	DefaultQuotaBytes      int64 = 2 << 30 // 2 GiB
	DefaultMaxRequestBytes uint  = 3 << 19 // 1.5 MiB
	maxQuotaBytes          int64 = 8 << 30 // etcd warns above this
)

// Options configures Start. The zero value of every field but DataDir is
// usable; setDefaults documents what it means.
type Options struct {
	// DataDir holds the member's WAL, snapshots and database. Required. A
	// directory that already holds a member is reopened with its data.
	DataDir string

	// Name is the member name. Default "meshfed".
	Name string

	// ClientURL is the URL clients connect to, e.g. "http://127.0.0.1:2379".
	// Port 0 picks a free port. Its scheme is "https" exactly when ClientTLS
	// is set. Default "http://127.0.0.1:0", or "https://127.0.0.1:0" with
	// ClientTLS.
	ClientURL string

	// ClientTLS, when set, serves clients over TLS. Default: plain HTTP/2 on
	// loopback.
	ClientTLS *TLS

	// PeerURL is the URL of the (unused, single-member) peer listener. Port 0
	// picks a free port. Default "http://127.0.0.1:0".
	PeerURL string

	// ReadyTimeout bounds how long Start waits for the server to be ready.
	// Default 60s: a first start on a slow disk can take several seconds.
	ReadyTimeout time.Duration

	// AutoCompactionRetention, when non-zero, has etcd compact history older
	// than it (etcd's "periodic" mode: every retention period it compacts to
	// the revision it had one period before). Readers must re-list after
	// compaction, which kvstore.Reader does. Default 0: no automatic
	// compaction, history grows forever — right for tests, never for a hub.
	AutoCompactionRetention time.Duration

	// QuotaBackendBytes is the size the database file may reach before etcd
	// raises the NOSPACE alarm and refuses every write but deletes until the
	// alarm is disarmed. The database file counts free pages too, so
	// fragmentation uses quota. Default DefaultQuotaBytes (etcd's own
	// default, made explicit).
	QuotaBackendBytes int64

	// MaxRequestBytes bounds one client request (a Put's key and value, a
	// Txn). Default DefaultMaxRequestBytes (etcd's own default).
	MaxRequestBytes uint

	// UnsafeNoFsync disables fsync. Only for tests: a crash loses data.
	UnsafeNoFsync bool

	// Logger receives this package's lifecycle logs. Default: discard.
	Logger logr.Logger

	// ZapLogger receives etcd's own logs. Default: JSON to stderr at warn
	// level, so a healthy server is silent.
	ZapLogger *zap.Logger

	// GRPCServerOptions are added to the server's own, e.g. the hub's stream
	// interceptor that ends the open streams of deleted users.
	GRPCServerOptions []grpc.ServerOption
}

// TLS is the server side of client TLS. Files are PEM.
type TLS struct {
	// CertFile and KeyFile are the server's certificate and key.
	CertFile, KeyFile string
	// TrustedCAFile holds the CAs that client certificates must chain to.
	TrustedCAFile string
	// ClientCertAuth requires every client to present such a certificate;
	// with etcd auth enabled, its common name is the etcd user.
	ClientCertAuth bool
}

// setDefaults fills unset fields and checks the rest: Name "meshfed",
// ClientURL "http://127.0.0.1:0" ("https" with ClientTLS), PeerURL
// "http://127.0.0.1:0", ReadyTimeout 60s, QuotaBackendBytes
// DefaultQuotaBytes, MaxRequestBytes DefaultMaxRequestBytes, ZapLogger at warn
// level to stderr.
func (o *Options) setDefaults() error {
	if o.DataDir == "" {
		return errors.New("embedetcd: Options.DataDir is required")
	}
	if o.QuotaBackendBytes == 0 {
		o.QuotaBackendBytes = DefaultQuotaBytes
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	// etcd itself only warns about these; a hub that cannot hold one request
	// in its quota, or a quota etcd's bbolt handles badly, is a configuration
	// error worth refusing at start.
	if o.QuotaBackendBytes < 0 || o.QuotaBackendBytes > maxQuotaBytes {
		return fmt.Errorf("embedetcd: QuotaBackendBytes %d out of range (0, %d]", o.QuotaBackendBytes, maxQuotaBytes)
	}
	if int64(o.MaxRequestBytes) >= o.QuotaBackendBytes {
		return fmt.Errorf("embedetcd: MaxRequestBytes %d must be below QuotaBackendBytes %d", o.MaxRequestBytes, o.QuotaBackendBytes)
	}
	if o.AutoCompactionRetention < 0 {
		return fmt.Errorf("embedetcd: AutoCompactionRetention %s is negative", o.AutoCompactionRetention)
	}
	if o.Name == "" {
		o.Name = "meshfed"
	}
	if o.ClientURL == "" {
		o.ClientURL = "http://127.0.0.1:0"
		if o.ClientTLS != nil {
			o.ClientURL = "https://127.0.0.1:0"
		}
	}
	if o.PeerURL == "" {
		o.PeerURL = "http://127.0.0.1:0"
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.ZapLogger == nil {
		zc := zap.NewProductionConfig()
		zc.Level = zap.NewAtomicLevelAt(zapcore.WarnLevel)
		zc.Sampling = nil
		lg, err := zc.Build()
		if err != nil {
			return fmt.Errorf("embedetcd: build zap logger: %w", err)
		}
		o.ZapLogger = lg
	}
	return nil
}

// Server is a running embedded etcd member.
type Server struct {
	etcd      *embed.Etcd
	endpoints []string
	tls       bool
	log       logr.Logger
	closeOnce sync.Once
}

// portAttempts bounds retries when a port picked as free was taken before etcd
// bound it.
const portAttempts = 5

// Start starts a member and waits until it is ready to serve, or until
// ctx is done or Options.ReadyTimeout passes.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	clientURL, err := url.Parse(opts.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: parse client URL %q: %w", opts.ClientURL, err)
	}
	switch {
	case opts.ClientTLS != nil && clientURL.Scheme != "https":
		return nil, fmt.Errorf("embedetcd: client URL %q: scheme must be https with ClientTLS", opts.ClientURL)
	case opts.ClientTLS == nil && clientURL.Scheme != "http":
		return nil, fmt.Errorf("embedetcd: client URL %q: scheme must be http without ClientTLS", opts.ClientURL)
	}
	peerURL, err := url.Parse(opts.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: parse peer URL %q: %w", opts.PeerURL, err)
	}

	// etcd advertises the URLs it is given, so "port 0" is resolved here to a
	// real port rather than left to the listener: a port picked this way can be
	// taken by someone else before etcd binds it, hence the retry.
	for attempt := 1; ; attempt++ {
		cu, err := resolvePort(*clientURL)
		if err != nil {
			return nil, err
		}
		pu, err := resolvePort(*peerURL)
		if err != nil {
			return nil, err
		}
		s, err := start(ctx, opts, cu, pu)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == portAttempts || (!isPortZero(*clientURL) && !isPortZero(*peerURL)) {
			return nil, err
		}
		opts.Logger.V(1).Info("port taken before etcd bound it, retrying", "attempt", attempt, "error", err.Error())
	}
}

func start(ctx context.Context, opts Options, clientURL, peerURL url.URL) (*Server, error) {
	cfg := embed.NewConfig()
	cfg.Name = opts.Name
	cfg.Dir = opts.DataDir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.InitialClusterToken = "meshfed-" + opts.Name
	if t := opts.ClientTLS; t != nil {
		cfg.ClientTLSInfo = transport.TLSInfo{
			CertFile:       t.CertFile,
			KeyFile:        t.KeyFile,
			TrustedCAFile:  t.TrustedCAFile,
			ClientCertAuth: t.ClientCertAuth,
		}
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(opts.ZapLogger)
	cfg.UnsafeNoFsync = opts.UnsafeNoFsync
	// The v3 HTTP/JSON gateway dials the server from inside; meshfed speaks gRPC only.
	cfg.EnableGRPCGateway = false
	cfg.QuotaBackendBytes = opts.QuotaBackendBytes
	cfg.MaxRequestBytes = opts.MaxRequestBytes
	cfg.GRPCAdditionalServerOptions = opts.GRPCServerOptions
	if opts.AutoCompactionRetention > 0 {
		cfg.AutoCompactionMode = embed.CompactorModePeriodic
		cfg.AutoCompactionRetention = opts.AutoCompactionRetention.String()
	}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: start etcd in %s: %w", opts.DataDir, err)
	}

	timer := time.NewTimer(opts.ReadyTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedetcd: etcd failed before ready: %w", err)
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("embedetcd: etcd not ready after %s", opts.ReadyTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("embedetcd: wait for etcd ready: %w", ctx.Err())
	}

	s := &Server{etcd: e, log: opts.Logger, tls: opts.ClientTLS != nil}
	for _, u := range e.Config().AdvertiseClientUrls {
		s.endpoints = append(s.endpoints, u.String())
	}
	s.log.Info("embedded etcd ready", "name", opts.Name, "dataDir", opts.DataDir, "endpoints", s.endpoints,
		"quotaBytes", opts.QuotaBackendBytes, "maxRequestBytes", opts.MaxRequestBytes,
		"autoCompactionRetention", opts.AutoCompactionRetention.String())
	return s, nil
}

func isPortZero(u url.URL) bool { return u.Port() == "0" }

// resolvePort replaces port 0 in u with a port that is free right now.
func resolvePort(u url.URL) (url.URL, error) {
	if !isPortZero(u) {
		return u, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(u.Hostname(), "0"))
	if err != nil {
		return url.URL{}, fmt.Errorf("embedetcd: find free port on %s: %w", u.Hostname(), err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return url.URL{}, fmt.Errorf("embedetcd: release probe listener: %w", err)
	}
	u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(port))
	return u, nil
}

// Endpoints returns the client URLs, for clientv3.Config.Endpoints.
func (s *Server) Endpoints() []string {
	return append([]string(nil), s.endpoints...)
}

// Client returns a new client of this server. The caller owns it and must
// Close it; closing the Server does not. It is only for servers without
// ClientTLS: a TLS client needs credentials this package does not hold.
func (s *Server) Client() (*clientv3.Client, error) {
	if s.tls {
		return nil, errors.New("embedetcd: Client is not available with ClientTLS; build a client with your own certificate")
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   s.Endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      s.etcd.GetLogger(),
	})
	if err != nil {
		return nil, fmt.Errorf("embedetcd: new client of %v: %w", s.endpoints, err)
	}
	return c, nil
}

// AuthRevision is the revision of the server's users, roles and permissions: it
// grows with every change to them.
func (s *Server) AuthRevision() uint64 { return s.etcd.Server.AuthStore().Revision() }

// UserExists reports whether the server has the etcd user name, from its local
// state, without a request.
func (s *Server) UserExists(name string) bool {
	_, err := s.etcd.Server.AuthStore().UserGet(&etcdserverpb.AuthUserGetRequest{Name: name})
	return err == nil
}

// Err reports a fatal error of the running server; it is closed when the
// server has stopped.
func (s *Server) Err() <-chan error {
	return s.etcd.Err()
}

// Close stops the server and waits until it has released its listeners and
// data directory. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.etcd.Close()
		s.log.Info("embedded etcd stopped", "endpoints", s.endpoints)
	})
}
