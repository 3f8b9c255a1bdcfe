package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"k8s.io/utils/clock"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/clusteragent/internal/locality"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/trust"
)

// Options configure a Server. Cluster and View are required.
type Options struct {
	// Cluster is this agent's cluster: the clients' cluster.
	Cluster string
	// View is the agent's imported view.
	View *view.View
	// MTLS turns on mTLS to every endpoint (UpstreamTlsContext with the service
	// port's SNI, the proxy's certificate provider CertificateProvider, and a SAN
	// matcher on TrustDomain). Proxies then need that provider in their bootstrap;
	// clusters on other networks are reachable only with it (their gateways route on
	// the SNI).
	MTLS bool
	// TrustDomain is the SPIFFE trust domain servers' identities must belong to.
	// Default v1alpha1.DefaultTrustDomain.
	TrustDomain string
	// Addr is the gRPC listen address. Required.
	Addr string
	// TLS, when set, is the server side of the xDS port's TLS: the agent's serving
	// certificate and the client certificates it requires (see the agent's xDS
	// authentication). nil serves plaintext: the caller decides where that is allowed.
	TLS *tls.Config
	// Refresh re-evaluates cluster freshness (stale, dropped) this often, rebuilding
	// only when a state changed, and ends failback holds at this resolution. Default 1s.
	Refresh time.Duration
	// ProbeInterval and ProbeTimeout pace the probes of remote clusters' east-west
	// gateways. Defaults 2s and 1s.
	ProbeInterval, ProbeTimeout time.Duration
	// Clock judges freshness and failback holds; it must be the View's. Default: the
	// real clock.
	Clock  clock.PassiveClock
	Logger logr.Logger
}

// Server serves xDS from the view. Create it with New, start it with Run.
//
// Who owns what. Three kinds of goroutines touch a Server: Run's loop (which alone
// calls rebuild), go-control-plane's stream goroutines (the callbacks, and the cache
// calling groupHash), and callers of Addr and Explain (the agent's debug handlers).
//   - opts, log, cache, since, wake and probe are set by New and only read after.
//     The cache has its own lock.
//   - Run's loop owns build, perGlobal, targets, gateway, built, servers, shared,
//     hold, holdEnd and fresh: no other goroutine reads or writes them, so they need
//     no lock.
//   - mu guards groups, streams, freed, dirty, changed, pending, served and lis. The
//     stream callbacks write groups and streams (a stream joins its group on its
//     first request and leaves it when it closes) and delete from pending; Run's loop
//     reads groups, takes dirty and changed, writes pending and served; the view's
//     subscription (mark) and poke write dirty and changed; Explain and Addr only read.
//   - served is the targets of the last rebuild, set whole and never mutated after:
//     Explain computes from it what the proxies were sent.
//
// A group leaves groups when its last stream closes and its key goes to freed; the
// loop then drops its load assignments (built, the cache's, pending)
// unless a stream joined it again in between, under mu, so that a stream joining the
// group cannot slip between the check and the clearing.
//
// Which group a proxy joins is the agent's decision, not the proxy's: the cluster's
// own region, and the zone the proxy claims only if the cluster declares it
// (honoredGroup). The decision is made once, on the stream's first request, and
// written into the node of every request of the stream before the cache hashes it,
// so the cache's group and the counted group are always the same.
type Server struct {
	opts  Options
	log   logr.Logger
	cache *cache
	since time.Time
	wake  chan struct{} // a change or a new group; buffered 1
	beat  chan struct{} // a heartbeat seen: rebuild only if a freshness state changed; buffered 1
	// rebuilds counts rebuilds (Rebuilds), as rebuildDuration's count does for the
	// process.
	rebuilds atomic.Int64
	probe    *prober
	prop     propagation // per source cluster, for the pair metric; its own lock
	fb       *feedback   // policy generations ACKed and NACKed (feedback.go); its own lock

	// Owned by Run's loop.
	build     builder
	perGlobal map[string]globalEntry   // by GlobalService key (namespace/name)
	implicit  []model.GlobalService    // of MCS ServiceExports; nil: compute
	targets   map[string]*servedTarget // by listener name
	gateway   *resources               // the gateway's load assignments, by SNI
	built     map[string]*groupBuilt   // by group key
	servers   []serverAddr             // this cluster's server addresses
	inbound   map[serverAddr]inbound   // what authorizes the calls to each of servers
	shared    *sharedResources         // listeners, routes, clusters
	hold      *failback
	holdEnd   time.Time         // when the earliest failback hold ends; zero if none
	fresh     map[string]string // FreshnessStates of the last rebuild

	// recomputed and assignments count global services whose targets were
	// recomputed and load assignments built, for tests of what a change costs.
	recomputed, assignments atomic.Int64

	mu      sync.Mutex
	groups  map[string]*groupState // groups with proxies, by key
	streams map[int64]*stream      // open streams, by stream ID
	freed   map[string]bool        // groups whose last stream closed, to be dropped by the loop
	dirty   dirty                  // what changed since the last rebuild
	changed time.Time              // earliest change not yet in a snapshot
	pending map[string]pendingAck  // by group key
	served  []Target               // what the last rebuild built snapshots from
	lis     net.Listener
}

// stream is an open stream's group, and the node its requests carry once the group
// is written into it.
type stream struct {
	key string
	// claimed is the node the proxy sent (go-control-plane passes it again with
	// every request that has none), served the same node with the group's locality.
	claimed, served *corev3.Node
}

// groupState is a group and how many open streams its proxies hold.
type groupState struct {
	Group
	streams int
}

// Group is the proxies of one locality of this cluster. The group of proxies whose
// zone is not one the cluster declares (or who claim none) has Zone "": the cluster's
// default group, which gets the region's priorities.
type Group struct {
	Region, Zone string
}

func (g Group) key() string { return g.Region + "/" + g.Zone }

// groupOf is the group a node's locality names. Only nodes whose locality the server
// wrote (join) reach the cache, so this is the group the server chose.
func groupOf(node *corev3.Node) Group {
	return Group{Region: node.GetLocality().GetRegion(), Zone: node.GetLocality().GetZone()}
}

// honoredGroup is the group a proxy claiming locality belongs to: this cluster's
// region whatever the proxy claims, and the claimed zone only if the cluster declares
// it (its ClusterInfo, written by the hub); any other claim puts it in the default
// group. A proxy cannot make the agent build a snapshot for a locality the cluster
// does not have, nor rank endpoints as if it sat in another cluster's zone. The
// second result says why a claim was not honored ("" if it was).
func honoredGroup(info *model.ClusterInfo, claimed *corev3.Locality) (Group, string) {
	var g Group
	var zones []string
	if info != nil {
		g.Region, zones = info.Region, info.Zones
	}
	zone := claimed.GetZone()
	switch {
	case claimed.GetRegion() != "" && claimed.GetRegion() != g.Region:
		return g, claimForeignRegion
	case zone != "" && !slices.Contains(zones, zone):
		return g, claimUndeclaredZone
	}
	g.Zone = zone
	return g, ""
}

// Reasons a proxy's locality claim was not honored.
const (
	claimForeignRegion  = "ForeignRegion"
	claimUndeclaredZone = "UndeclaredZone"
)

// pendingAck is a pushed version whose ACK is awaited, and when the change it carries
// was seen.
type pendingAck struct {
	version string
	changed time.Time
}

// New returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Cluster == "" || opts.View == nil || opts.Addr == "" {
		return nil, errors.New("xds: Options.Cluster, Options.View and Options.Addr are required")
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = v1.DefaultTrustDomain
	}
	if opts.Refresh == 0 {
		opts.Refresh = time.Second
	}
	if opts.ProbeInterval == 0 {
		opts.ProbeInterval = 2 * time.Second
	}
	if opts.ProbeTimeout == 0 {
		opts.ProbeTimeout = time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	s := &Server{opts: opts, log: opts.Logger, since: opts.Clock.Now(), wake: make(chan struct{}, 1), beat: make(chan struct{}, 1),
		groups: map[string]*groupState{}, streams: map[int64]*stream{}, freed: map[string]bool{}, dirty: newDirty(),
		perGlobal: map[string]globalEntry{}, targets: map[string]*servedTarget{}, gateway: &resources{byName: map[string]*resource{}},
		built: map[string]*groupBuilt{}, pending: map[string]pendingAck{}, hold: newFailback(), cache: newCache(), fb: newFeedback()}
	if s.log.GetSink() == nil {
		s.log = logr.Discard()
	}
	s.probe = newProber(opts.ProbeInterval, opts.ProbeTimeout, func() { s.pokeAll(time.Now()) })
	return s, nil
}

// join puts the group the server chose for stream id into req's node, registering the
// stream with that group on its first request and scheduling a rebuild when the group
// is new so that its first snapshot is set. go-control-plane calls OnStreamRequest
// before it asks the cache for the request's snapshot.
func (s *Server) join(id int64, req *discoverygrpc.DiscoveryRequest) {
	s.mu.Lock()
	st, ok := s.streams[id]
	if ok {
		if req.GetNode() != st.claimed && req.GetNode() != nil {
			// A proxy that sends its node with every request (Envoy does): keep the group
			// of the first one.
			st.claimed, st.served = req.GetNode(), withLocality(req.GetNode(), st.key)
		}
		req.Node = st.served
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()

	var info *model.ClusterInfo
	if c, ok := s.opts.View.Cluster(s.opts.Cluster); ok {
		info = c.Info
	}
	g, refused := honoredGroup(info, req.GetNode().GetLocality())
	st = &stream{key: g.key(), claimed: req.GetNode(), served: withLocality(req.GetNode(), g.key())}
	req.Node = st.served

	s.mu.Lock()
	s.streams[id] = st
	isNew := s.addGroup(g)
	s.mu.Unlock()
	if refused != "" {
		claimsIgnored.WithLabelValues(refused).Inc()
		s.log.V(1).Info("proxy's locality claim not honored: it joins the cluster's default group", "node", req.GetNode().GetId(),
			"claimedRegion", req.GetNode().GetLocality().GetRegion(), "claimedZone", req.GetNode().GetLocality().GetZone(),
			"reason", refused, "group", g.key())
	}
	if isNew {
		if g.Zone == "" {
			s.log.Info("first proxy of the default group: it gets its region's, else the default, priorities", "node", req.GetNode().GetId(), "region", g.Region)
		}
		s.poke(time.Now())
	}
}

// withLocality is a copy of node with the locality of group key.
func withLocality(node *corev3.Node, key string) *corev3.Node {
	out := &corev3.Node{}
	if node != nil {
		out = proto.Clone(node).(*corev3.Node)
	}
	region, zone, _ := strings.Cut(key, "/")
	out.Locality = &corev3.Locality{Region: region, Zone: zone}
	return out
}

// addGroup counts one more stream of g and reports whether g is new. s.mu is held.
func (s *Server) addGroup(g Group) bool {
	gs, ok := s.groups[g.key()]
	if !ok {
		gs = &groupState{Group: g}
		s.groups[g.key()] = gs
		delete(s.freed, g.key()) // joined again before the loop dropped it: keep it
		groupsGauge.Set(float64(len(s.groups)))
	}
	gs.streams++
	return !ok
}

// leave forgets stream id; the last stream of a group hands the group to the loop to
// drop.
func (s *Server) leave(id int64) {
	s.mu.Lock()
	st, ok := s.streams[id]
	if !ok {
		s.mu.Unlock()
		return // closed before its first request
	}
	delete(s.streams, id)
	freed := false
	if gs := s.groups[st.key]; gs != nil {
		if gs.streams--; gs.streams <= 0 {
			delete(s.groups, st.key)
			s.freed[st.key] = true
			groupsGauge.Set(float64(len(s.groups)))
			freed = true
		}
	}
	s.mu.Unlock()
	if freed {
		s.wakeLoop()
	}
}

// dropFreed drops the load assignments of the groups whose last stream closed and
// that no stream joined since. It holds mu while clearing: a stream joining such a
// group waits in join, and its watch is made after the clearing, on a fresh cache
// entry that the rebuild its join schedules fills.
func (s *Server) dropFreed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key := range s.freed {
		delete(s.freed, key)
		if _, back := s.groups[key]; back {
			continue
		}
		s.cache.clear(key)
		delete(s.built, key)
		delete(s.pending, key)
	}
}

// poke schedules a rebuild for a change seen at t.
func (s *Server) poke(t time.Time) {
	s.mu.Lock()
	if s.changed.IsZero() {
		s.changed = t
	}
	s.mu.Unlock()
	s.wakeLoop()
}

// wakeLoop wakes Run's loop: it drops freed groups and rebuilds.
func (s *Server) wakeLoop() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Rebuilds is how many times the server rebuilt its snapshots.
func (s *Server) Rebuilds() int64 { return s.rebuilds.Load() }

// Groups is how many groups of proxies have open streams, each with its snapshot.
func (s *Server) Groups() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.groups)
}

// Addr is the address the server listens on, once Run has started listening.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lis == nil {
		return ""
	}
	return s.lis.Addr().String()
}

// Run serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	lis, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("xds: listen: %w", err)
	}
	s.mu.Lock()
	s.lis = lis
	s.mu.Unlock()
	sopts := []grpc.ServerOption{}
	if s.opts.TLS != nil {
		sopts = append(sopts, grpc.Creds(&handshakeCounter{TransportCredentials: credentials.NewTLS(s.opts.TLS), log: s.log}))
	}
	grpcServer := grpc.NewServer(append(sopts,
		grpc.MaxConcurrentStreams(1<<20),
		// Thousands of proxies, each its own connection, mostly idle between pushes:
		// a connection holds a write buffer only while it writes, and a small read
		// buffer (requests are acknowledgements).
		grpc.SharedWriteBuffer(true),
		// Responses' resources go out without a copy per stream (codec.go).
		grpc.ForceServerCodecV2(newResponseCodec()),
		grpc.ReadBufferSize(8<<10),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)...)
	xdsServer := serverv3.NewServer(ctx, s.cache, s.callbacks())
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(grpcServer, xdsServer)
	listenerservice.RegisterListenerDiscoveryServiceServer(grpcServer, xdsServer)
	routeservice.RegisterRouteDiscoveryServiceServer(grpcServer, xdsServer)
	clusterservice.RegisterClusterDiscoveryServiceServer(grpcServer, xdsServer)
	endpointservice.RegisterEndpointDiscoveryServiceServer(grpcServer, xdsServer)

	// A heartbeat changes nothing a proxy sees unless it changes a cluster's freshness
	// state (a stale cluster heard again): the loop checks that, and rebuilds only then.
	// Any other change is marked for the next rebuild to recompute what it affects.
	unsubscribe := s.opts.View.Subscribe(func(k keyspace.Key) {
		if k.Kind == keyspace.KindClusterHeartbeat {
			select {
			case s.beat <- struct{}{}:
			default:
			}
			return
		}
		s.mark(k, time.Now())
	})
	defer unsubscribe()
	go func() {
		<-ctx.Done()
		grpcServer.Stop()
	}()
	errc := make(chan error, 1)
	go func() { errc <- grpcServer.Serve(lis) }()
	s.log.Info("xDS server listening", "addr", lis.Addr().String(), "tls", s.opts.TLS != nil)

	if err := s.opts.View.WaitSynced(ctx); err != nil {
		return nil
	}
	go s.probe.run(ctx, s.opts.View, s.opts.Cluster)
	s.poke(time.Now())
	refresh := time.NewTicker(s.opts.Refresh)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			<-errc
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil // stopped with ctx: both were ready
			}
			return fmt.Errorf("xds: serve: %w", err)
		case <-refresh.C:
			now := s.opts.Clock.Now()
			if s.freshnessChanged(now) || (!s.holdEnd.IsZero() && !now.Before(s.holdEnd)) {
				s.poke(time.Now())
			}
		case <-s.beat:
			if s.freshnessChanged(s.opts.Clock.Now()) {
				s.poke(time.Now())
			}
		case <-s.wake:
			// No debounce: the first change goes out at once, and what arrives while a
			// rebuild runs is merged into the next one.
			s.dropFreed()
			if err := s.rebuild(ctx, time.Now()); err != nil {
				s.log.Error(err, "rebuild xDS snapshots")
			}
		}
	}
}

// freshnessChanged reports whether some cluster's freshness differs from what the
// last rebuild used: a heartbeat that changes no freshness state costs no rebuild.
func (s *Server) freshnessChanged(now time.Time) bool {
	in := Input{Self: s.opts.Cluster, Since: s.since, Now: now, Offline: s.opts.View.Offline}
	return !maps.Equal(FreshnessStates(in, s.opts.View.Heartbeats(), s.opts.View.Policies()), s.fresh)
}

// input reads the view.
func (s *Server) input(now time.Time) Input {
	v := s.opts.View
	return Input{
		Self: s.opts.Cluster, Clusters: v.ReadOnlyClusters(), Globals: v.GlobalServices(),
		Policy: func(ns, name string) *model.Policy {
			p, _ := v.Policy(ns, name)
			return p
		},
		TrafficPolicy: v.TrafficPolicy,
		Since:         s.since, Now: now, GatewayUp: s.probe.up, Offline: v.Offline,
	}
}

// serverAddrs are the addresses of this cluster's endpoints, where proxyless gRPC
// servers listen.
func (s *Server) serverAddrs() []serverAddr {
	c, ok := s.opts.View.Cluster(s.opts.Cluster)
	if !ok {
		return nil
	}
	return serverAddrsOf(c)
}

// reportIdentities sets the identity gauges from targets and logs the ports whose
// allowed servers changed.
func (s *Server) reportIdentities(targets, changed []Target) {
	td := s.trustDomain()
	if td == "" {
		return
	}
	n, none := 0, 0
	for _, t := range targets {
		n += len(t.Accounts)
		if len(t.Accounts) == 0 {
			none++
		}
	}
	allowedIdentities.Set(float64(n))
	unservable.Set(float64(none))
	for _, t := range changed {
		ids := make([]string, 0, len(t.Accounts))
		for _, a := range t.Accounts {
			ids = append(ids, trust.ServiceAccountID(td, a.Cluster, a.Namespace, a.Name))
		}
		s.log.Info("Identities allowed to serve a global service changed", "service", t.Namespace+"/"+t.Name,
			"hostname", t.Hostname, "port", t.Port, "identities", len(ids))
		s.log.V(1).Info("Identities allowed to serve", "service", t.Namespace+"/"+t.Name, "port", t.Port, "ids", ids)
	}
}

// trustDomain is the trust domain of mTLS, "" when mTLS is off.
func (s *Server) trustDomain() string {
	if s.opts.MTLS {
		return s.opts.TrustDomain
	}
	return ""
}

// sameServed reports whether two versions of a target give every client the same
// load assignment: they differ at most in what only explanations read (Excluded,
// Withheld), so a change of reason alone pushes nothing.
func sameServed(a, b Target) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name && a.Hostname == b.Hostname && a.Port == b.Port &&
		reflect.DeepEqual(a.Policy, b.Policy) && reflect.DeepEqual(a.Traffic, b.Traffic) &&
		slices.EqualFunc(a.Localities, b.Localities, func(x, y Locality) bool {
			return x.Cluster == y.Cluster && x.Region == y.Region && x.Zone == y.Zone && x.Network == y.Network &&
				x.State == y.State && x.Total == y.Total && maps.Equal(x.Totals, y.Totals) &&
				slices.Equal(x.Healthy, y.Healthy) && slices.Equal(x.Gateways, y.Gateways)
		})
}

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		// Delta xDS and unary fetches are not served: both would ask the cache for a
		// node's snapshot without the stream callbacks, whose join decides the group.
		DeltaStreamOpenFunc: func(context.Context, int64, string) error {
			return errors.New("meshfed's xDS server serves state-of-the-world ADS only")
		},
		FetchRequestFunc: func(context.Context, *discoverygrpc.DiscoveryRequest) error {
			return errors.New("meshfed's xDS server serves state-of-the-world ADS only")
		},
		StreamRequestFunc: func(id int64, req *discoverygrpc.DiscoveryRequest) error {
			s.join(id, req)
			s.fb.request(id, req)
			// An ACK of load assignments closes the change-to-proxy measurement.
			if req.GetTypeUrl() != resourcev3.EndpointType || req.GetResponseNonce() == "" || req.GetErrorDetail() != nil {
				if req.GetErrorDetail() != nil {
					nacks.WithLabelValues(req.GetTypeUrl()).Inc()
					// The cache answers a NACK only with another version: it sent this one.
					s.log.Info("proxy rejected a resource", "node", req.GetNode().GetId(), "type", req.GetTypeUrl(), "error", req.GetErrorDetail().GetMessage())
				}
				return nil
			}
			key := groupOf(req.GetNode()).key()
			s.mu.Lock()
			p, ok := s.pending[key]
			if ok && p.version == req.GetVersionInfo() {
				delete(s.pending, key) // the first proxy of the group to ACK is measured
			}
			s.mu.Unlock()
			if ok && p.version == req.GetVersionInfo() {
				ackLatency.Observe(time.Since(p.changed).Seconds())
			}
			return nil
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) { s.leave(id); s.fb.closed(id) },
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
			s.fb.response(id, resp)
			pushBytes.WithLabelValues(resp.GetTypeUrl()).Observe(float64(proto.Size(resp)))
		},
	}
}

// Explanation is the priority table of one port of a global service, as served.
type Explanation struct {
	Hostname string         `json:"hostname"`
	Port     uint32         `json:"port"`
	Table    locality.Table `json:"-"`
	// Excluded is every cluster, or zone of one, that has a member Service of the
	// global service and gets none of this port's traffic, with the reason: Table's
	// Excluded entries.
	Excluded []Excluded `json:"excluded"`
	// Text is Table rendered for humans.
	Text string `json:"text"`
	// Subsets are the TrafficPolicy subsets the port's routes split to, each with
	// its own table (SubsetTarget); none without a split.
	Subsets []SubsetExplanation `json:"subsets,omitempty"`
}

// SubsetExplanation is the table of one subset of a split: what its cluster's load
// assignment holds for the client.
type SubsetExplanation struct {
	// Subset is the subset's name, "" for the endpoints in no subset.
	Subset string `json:"subset"`
	// Cluster is its cluster's name (SubsetClusterName).
	Cluster string `json:"cluster"`
	// Live is false when it has no healthy endpoint anywhere: the splits leave it
	// out, the others sharing its weight.
	Live bool   `json:"live"`
	Text string `json:"text"`
}

// Excluded is one exclusion of an Explanation. Zone is "" when the whole cluster is.
type Excluded struct {
	Cluster string `json:"cluster"`
	Region  string `json:"region,omitempty"`
	Zone    string `json:"zone,omitempty"`
	Reason  string `json:"reason"`
}

// Explain returns, for every port of the global service namespace/name, the priority
// table a proxy of this cluster in zone was last sent, and why. It is computed as the
// proxies' load assignments are (Table, from the targets of the last rebuild, after
// failback holds and gateway probes), whether or not a proxy of that zone is
// connected.
func (s *Server) Explain(namespace, name, zone string) ([]Explanation, error) {
	var info *model.ClusterInfo
	if c, ok := s.opts.View.Cluster(s.opts.Cluster); ok {
		info = c.Info
	}
	// The zone a proxy there would be served: an undeclared one gets the default group's.
	g, _ := honoredGroup(info, &corev3.Locality{Zone: zone})
	s.mu.Lock()
	served := s.served
	s.mu.Unlock()
	client := Client{Cluster: s.opts.Cluster, Region: g.Region, Zone: g.Zone}
	var out []Explanation
	for _, t := range served {
		if t.Namespace != namespace || t.Name != name {
			continue
		}
		table := Table(client, t)
		e := Explanation{Hostname: t.Hostname, Port: t.Port, Table: table, Text: table.String(), Excluded: []Excluded{}}
		for _, x := range table.Excluded {
			e.Excluded = append(e.Excluded, Excluded{Cluster: x.Cluster, Region: x.Region, Zone: x.Zone, Reason: x.Reason})
		}
		e.Subsets = explainSubsets(client, t)
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no global service %s/%s in what this agent's xDS server serves", namespace, name)
	}
	return out, nil
}

// handshakeCounter counts (and logs, verbosely: anyone who can reach the port can
// cause them) the TLS handshakes the xDS port refuses: a client without a
// certificate, with one from outside the mesh or from another cluster.
type handshakeCounter struct {
	credentials.TransportCredentials
	log logr.Logger
}

func (h *handshakeCounter) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := h.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		handshakeFailures.Inc()
		h.log.V(1).Info("xDS client refused", "remote", raw.RemoteAddr().String(), "error", err.Error())
	}
	return conn, info, err
}

func (h *handshakeCounter) Clone() credentials.TransportCredentials {
	return &handshakeCounter{TransportCredentials: h.TransportCredentials.Clone(), log: h.log}
}
