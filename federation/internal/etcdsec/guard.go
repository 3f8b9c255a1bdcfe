package etcdsec

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/meshfed/meshfed/internal/creds/hubinfo"
)

var (
	usersDeleted = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "hub", Name: "etcd_users_deleted_total",
		Help: "Clusters' etcd users deleted: revoked, unregistered, or of an earlier registration.",
	})
	streamsEnded = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "hub", Name: "etcd_revoked_streams_ended_total",
		Help: "Open etcd streams (watches, lease keep-alives) of deleted cluster users ended by the embedded etcd's guard, and new ones refused.",
	})
	guardedStreams = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "hub", Name: "etcd_guarded_streams",
		Help: "Open etcd streams of clusters' users the embedded etcd's guard watches.",
	})
)

// RegisterMetrics registers the package's collectors with reg.
func RegisterMetrics(reg prometheus.Registerer) {
	reg.MustRegister(usersDeleted, streamsEnded, guardedStreams)
}

// AuthState is what the Guard asks the etcd server it runs in, without a request:
// the revision of its users, roles and permissions (it grows with every change), and
// whether a user exists.
type AuthState interface {
	AuthRevision() uint64
	UserExists(name string) bool
}

// guardPoll is how often the Guard looks at the auth revision: an atomic load, so
// that a deleted user's streams end within this long.
const guardPoll = 100 * time.Millisecond

// Guard ends the open streams of clusters' etcd users that no longer exist. etcd
// checks a watch's permission only when the watch is created, and reads a client
// certificate's user only at each request: without the Guard, a watch a revoked
// certificate opened before its user was deleted keeps receiving every change. The
// Guard runs inside the embedded etcd as a gRPC stream interceptor (ServerOption):
// it tracks every stream of a cluster's user (never root's), refuses new ones of a
// user that does not exist, and, whenever the auth revision changes, cancels the open
// ones whose user is gone. etcd then ends the stream; the client's attempt to open it
// again is refused. An external etcd has no Guard: see docs/operations.md.
type Guard struct {
	log logr.Logger

	mu      sync.Mutex
	state   AuthState // nil until Run
	streams map[*guardedStream]struct{}
}

// NewGuard returns a Guard; pass ServerOption to the etcd server and then Run.
func NewGuard(log logr.Logger) *Guard {
	return &Guard{log: log, streams: map[*guardedStream]struct{}{}}
}

// ServerOption is the stream interceptor to install in the etcd server.
func (g *Guard) ServerOption() grpc.ServerOption { return grpc.ChainStreamInterceptor(g.intercept) }

type guardedStream struct {
	grpc.ServerStream
	ctx    context.Context
	cancel context.CancelFunc
	user   string
	state  AuthState // nil before Run
	rev    uint64    // the auth revision at which user last existed; SendMsg's own
}

func (s *guardedStream) Context() context.Context { return s.ctx }

// SendMsg sends nothing once the user is gone: etcd applies the deletion, and bumps
// the auth revision, before it answers the request that deleted the user, so not one
// message reaches a deleted user after that answer, even before the sweep.
func (s *guardedStream) SendMsg(m any) error {
	if s.state != nil {
		if rev := s.state.AuthRevision(); rev != s.rev {
			if !s.state.UserExists(s.user) {
				s.cancel()
				return rpctypes.ErrGRPCPermissionDenied
			}
			s.rev = rev
		}
	}
	return s.ServerStream.SendMsg(m)
}

func (g *Guard) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	user := commonName(ss.Context())
	if _, _, ok := hubinfo.ParseEtcdUser(user); !ok {
		return handler(srv, ss) // root, or no cluster's user: etcd decides alone
	}
	g.mu.Lock()
	state := g.state
	if state != nil && !state.UserExists(user) {
		g.mu.Unlock()
		streamsEnded.Inc()
		g.log.Info("refused an etcd stream of a deleted user", "user", user, "method", info.FullMethod)
		return rpctypes.ErrGRPCPermissionDenied // as etcd refuses, so that clients see rpctypes.ErrPermissionDenied
	}
	ctx, cancel := context.WithCancel(ss.Context())
	s := &guardedStream{ServerStream: ss, ctx: ctx, cancel: cancel, user: user, state: state}
	if state != nil {
		s.rev = state.AuthRevision()
	}
	g.streams[s] = struct{}{}
	guardedStreams.Set(float64(len(g.streams)))
	g.mu.Unlock()
	defer func() {
		cancel()
		g.mu.Lock()
		delete(g.streams, s)
		guardedStreams.Set(float64(len(g.streams)))
		g.mu.Unlock()
	}()
	return handler(srv, s)
}

// Run watches state until ctx is done.
func (g *Guard) Run(ctx context.Context, state AuthState) {
	g.mu.Lock()
	g.state = state
	g.mu.Unlock()
	seen := uint64(0)
	tick := time.NewTicker(guardPoll)
	defer tick.Stop()
	for {
		if rev := state.AuthRevision(); rev != seen {
			seen = rev
			g.sweep(state)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sweep cancels every stream whose user is gone.
func (g *Guard) sweep(state AuthState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	exists := map[string]bool{}
	for s := range g.streams {
		ok, known := exists[s.user]
		if !known {
			ok = state.UserExists(s.user)
			exists[s.user] = ok
		}
		if !ok {
			s.cancel()
			delete(g.streams, s)
			streamsEnded.Inc()
			g.log.Info("ended an etcd stream of a deleted user", "user", s.user)
		}
	}
	guardedStreams.Set(float64(len(g.streams)))
}

// commonName is the common name of the verified client certificate of the stream,
// as etcd reads the user from it.
func commonName(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return ""
	}
	for _, chain := range info.State.VerifiedChains {
		if len(chain) > 0 {
			return chain[0].Subject.CommonName
		}
	}
	return ""
}
