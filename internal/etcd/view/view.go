package view

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/meshfed/meshfed/internal/etcd/admit"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// NamespacedName identifies a namespaced object.
type NamespacedName struct{ Namespace, Name string }

func (n NamespacedName) String() string { return n.Namespace + "/" + n.Name }

// Cluster is what the View knows of one cluster. Any field may be unset: an agent may
// publish before the hub's registration record arrives, and vice versa.
type Cluster struct {
	Name string
	Info *model.ClusterInfo
	// Heartbeat is the live heartbeat record, nil while none exists.
	Heartbeat *model.Heartbeat
	// LastHeartbeat is when this process last saw the heartbeat written or found it in
	// a list; zero if never.
	LastHeartbeat time.Time
	Synced        *model.Synced
	// Services are the cluster's services as admitted (package admit): the first
	// MaxServices records in key order, each without the endpoints the cluster may
	// not claim. Before the cluster's ClusterInfo arrives, its records as written.
	Services map[NamespacedName]*model.ServiceEndpoints
	// Refused says what admission refused of a service record, by its name: the
	// endpoints dropped from it, or the whole record (TooManyServices). Only records
	// admission changed are in it.
	Refused map[NamespacedName][]admit.Rejection
	// IntermediateCSR and Intermediate are the cluster's request for its
	// intermediate CA and the hub's signed answer.
	IntermediateCSR *model.IntermediateCSR
	Intermediate    *model.Intermediate
	// EtcdCSR and EtcdCert are the agent's request to renew its etcd client
	// certificate and the hub's signed answer.
	EtcdCSR  *model.EtcdCSR
	EtcdCert *model.EtcdCert
	// Programmed is the agent's report on the policy generations its proxies took
	// or refused, as written; ProgrammedPolicies admits it.
	Programmed *model.Programmed
}

// Connected reports whether the cluster holds a live heartbeat.
func (c *Cluster) Connected() bool { return c.Heartbeat != nil }

// Endpoints counts the cluster's published endpoints and, of those, the ready ones.
func (c *Cluster) Endpoints() (total, ready int) {
	for _, s := range c.Services {
		for _, e := range s.Endpoints {
			total++
			if e.Ready {
				ready++
			}
		}
	}
	return total, ready
}

// Options configure a View.
type Options struct {
	// Clock stamps heartbeats as seen, and the hub's outages. Default: the real clock.
	Clock clock.PassiveClock
	// Self is the cluster of the agent that holds the View, whose services may come
	// from its own informers (LocalUpsert); "" for the hub's View.
	Self string
	// Logger receives the View's logs: a line when the reasons it refuses a
	// cluster's records for change. Default: discard.
	Logger logr.Logger
}

// View is the in-memory federation. Create it with New.
type View struct {
	clock clock.PassiveClock
	self  string
	log   logr.Logger

	mu       sync.RWMutex
	clusters map[string]*Cluster
	globals  map[NamespacedName]*model.GlobalService
	policies map[NamespacedName]*model.Policy
	traffic  map[NamespacedName]*model.TrafficPolicy
	authz    map[NamespacedName]*model.AuthorizationPolicy
	bundle   *model.TrustBundle
	hubReady *model.HubReady
	synced   chan struct{} // closed after the first complete list, or a restore
	live     chan struct{} // closed after the first complete list of the store itself
	subs     map[int]func(keyspace.Key)
	nextSub  int
	also     []keyspace.Key // see alsoChanged

	// unconfirmed holds the keys a Restore loaded, or a Resync found held, that no
	// list or event of the store has confirmed since; the next complete list removes
	// what is left.
	unconfirmed map[string]struct{}
	restore     Restored

	// local holds the services of Self from its own informers; nil until LocalSynced.
	local        map[NamespacedName]*model.ServiceEndpoints
	localPending map[NamespacedName]*model.ServiceEndpoints
	// localServed is local as admitted against Self's info.
	localServed map[NamespacedName]*model.ServiceEndpoints

	// published holds every cluster's records as the store holds them, for
	// admission (admission.go); resync is SetResync's function.
	published map[string]*published
	resync    func()

	contact contact

	// lends counts the copies of clusters handed out (copyOf), which share their
	// Services and Refused maps with the View instead of copying them: the View
	// clones a cluster's maps before its next write to them if any copy was handed
	// out since it last did (own): cloned holds the count of copies when it last
	// did, by cluster; localCloned is the same for localServed.
	lends       atomic.Uint64
	cloned      map[string]uint64
	localCloned uint64

	// versions, imported, rev and dirty: see digest.go.
	versions map[string]version
	imported kvstore.Digest
	rev      int64
	dirty    bool
}

// New returns an empty View.
func New(opts Options) *View {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &View{
		clock:        opts.Clock,
		self:         opts.Self,
		log:          opts.Logger,
		published:    map[string]*published{},
		clusters:     map[string]*Cluster{},
		cloned:       map[string]uint64{},
		globals:      map[NamespacedName]*model.GlobalService{},
		policies:     map[NamespacedName]*model.Policy{},
		traffic:      map[NamespacedName]*model.TrafficPolicy{},
		authz:        map[NamespacedName]*model.AuthorizationPolicy{},
		synced:       make(chan struct{}),
		live:         make(chan struct{}),
		subs:         map[int]func(keyspace.Key){},
		unconfirmed:  map[string]struct{}{},
		versions:     map[string]version{},
		localPending: map[NamespacedName]*model.ServiceEndpoints{},
		contact:      initialContact(opts),
	}
}

// Subscribe registers fn to be called with the key of every change, until the
// returned function is called.
func (v *View) Subscribe(fn func(keyspace.Key)) (unsubscribe func()) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.nextSub++
	id := v.nextSub
	v.subs[id] = fn
	return func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		delete(v.subs, id)
	}
}

// OnUpsert implements kvstore.Observer.
func (v *View) OnUpsert(key string, rec model.Record) {
	k, err := keyspace.Parse(key)
	if err != nil {
		return // model.Decode parsed it already; unreachable
	}
	v.mu.Lock()
	delete(v.unconfirmed, key)
	v.held(key, rec)
	v.apply(k, rec, true)
}

// OnDelete implements kvstore.Observer.
func (v *View) OnDelete(key string) {
	k, err := keyspace.Parse(key)
	if err != nil {
		return
	}
	v.mu.Lock()
	delete(v.unconfirmed, key)
	v.held(key, nil)
	v.apply(k, nil, true)
}

// OnSynced implements kvstore.Observer: the store has been listed completely. What a
// Restore loaded, or a Resync found held, and the list did not confirm is gone from
// the store, and goes.
func (v *View) OnSynced() {
	v.mu.Lock()
	stale := make([]string, 0, len(v.unconfirmed))
	for key := range v.unconfirmed {
		stale = append(stale, key)
	}
	slices.Sort(stale)
	v.mu.Unlock()
	for _, key := range stale {
		v.OnDelete(key)
		v.OnVersion(key, 0)
	}
	v.mu.Lock()
	closeOnce(v.synced)
	closeOnce(v.live)
	v.mu.Unlock()
}

func closeOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}

// WaitSynced blocks until the View holds a complete view of the federation, live from
// the store or restored from a snapshot (Restore), or ctx is done. It is what serving
// needs.
func (v *View) WaitSynced(ctx context.Context) error {
	return wait(ctx, v.synced)
}

// HasSynced reports whether the View holds a complete view, live or restored.
func (v *View) HasSynced() bool { return closed(v.synced) }

// WaitLive blocks until the View holds a complete list of the store itself, or ctx is
// done. It is what writing to the store needs (pruning what is published, say): a
// restored view may lack what was written after its snapshot.
func (v *View) WaitLive(ctx context.Context) error {
	return wait(ctx, v.live)
}

// HasLive reports whether a complete list of the store has arrived.
func (v *View) HasLive() bool { return closed(v.live) }

func wait(ctx context.Context, c chan struct{}) error {
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// apply stores rec at k, or deletes k when rec is nil, and tells the subscribers. The
// caller holds v.mu; apply releases it. seen says whether a heartbeat record was seen
// written now (not restored).
func (v *View) apply(k keyspace.Key, rec model.Record, seen bool) {
	nn := NamespacedName{k.Namespace, k.Name}
	switch k.Kind {
	case keyspace.KindGlobalService:
		old := v.globals[nn]
		g, _ := rec.(*model.GlobalService)
		if g == nil {
			delete(v.globals, nn)
		} else {
			v.globals[nn] = g
		}
		if (old != nil && len(old.Clusters) > 0) || (g != nil && len(g.Clusters) > 0) {
			v.reauthorize(append(globalNamespaces(old), globalNamespaces(g)...)...)
		}
	case keyspace.KindPolicy:
		if rec == nil {
			delete(v.policies, nn)
		} else {
			v.policies[nn] = rec.(*model.Policy)
		}
	case keyspace.KindTrafficPolicy:
		setOrDelete(v.traffic, nn, rec)
	case keyspace.KindAuthorizationPolicy:
		setOrDelete(v.authz, nn, rec)
	case keyspace.KindClusterInfo, keyspace.KindClusterHeartbeat, keyspace.KindClusterSynced, keyspace.KindServiceEndpoints,
		keyspace.KindIntermediateCSR, keyspace.KindIntermediate, keyspace.KindEtcdCSR, keyspace.KindEtcdCert, keyspace.KindProgrammed:
		v.applyCluster(k, nn, rec, seen)
	case keyspace.KindTrustBundle:
		v.bundle, _ = rec.(*model.TrustBundle)
	case keyspace.KindHubReady:
		v.hubReady, _ = rec.(*model.HubReady)
	}
	v.notify(k)
}

// notify releases v.mu and calls every subscriber with k, and with the keys whose
// records applying k served differently too (alsoChanged).
func (v *View) notify(k keyspace.Key) {
	subs := make([]func(keyspace.Key), 0, len(v.subs))
	for _, fn := range v.subs {
		subs = append(subs, fn)
	}
	keys := append([]keyspace.Key{k}, v.also...)
	v.also = nil
	v.mu.Unlock()
	for _, k := range keys {
		for _, fn := range subs {
			fn(k)
		}
	}
}

func (v *View) applyCluster(k keyspace.Key, nn NamespacedName, rec model.Record, seen bool) {
	c := v.clusters[k.Cluster]
	if c == nil {
		if rec == nil {
			return
		}
		c = &Cluster{Name: k.Cluster, Services: map[NamespacedName]*model.ServiceEndpoints{},
			Refused: map[NamespacedName][]admit.Rejection{}}
		v.clusters[k.Cluster] = c
	}
	switch k.Kind {
	case keyspace.KindClusterInfo:
		old := c.Info
		c.Info, _ = rec.(*model.ClusterInfo)
		if admissionChanged(old, c.Info) {
			v.readmit(c)
			if admit.LimitsOf(old).ValueBytes != admit.LimitsOf(c.Info).ValueBytes && v.resync != nil {
				v.resync() // values are judged by another size: the reader delivers them again
			}
		}
	case keyspace.KindClusterHeartbeat:
		c.Heartbeat, _ = rec.(*model.Heartbeat)
		if rec != nil && seen {
			c.LastHeartbeat = v.clock.Now()
		}
	case keyspace.KindClusterSynced:
		c.Synced, _ = rec.(*model.Synced)
	case keyspace.KindIntermediateCSR:
		c.IntermediateCSR, _ = rec.(*model.IntermediateCSR)
	case keyspace.KindIntermediate:
		c.Intermediate, _ = rec.(*model.Intermediate)
	case keyspace.KindEtcdCSR:
		c.EtcdCSR, _ = rec.(*model.EtcdCSR)
	case keyspace.KindEtcdCert:
		c.EtcdCert, _ = rec.(*model.EtcdCert)
	case keyspace.KindProgrammed:
		c.Programmed, _ = rec.(*model.Programmed)
	case keyspace.KindServiceEndpoints:
		s, _ := rec.(*model.ServiceEndpoints)
		v.upsertService(c, nn, s)
	}
	if p := v.published[k.Cluster]; p != nil && len(p.raw) > 0 {
		return
	}
	if c.Info == nil && c.Heartbeat == nil && c.Synced == nil && len(c.Services) == 0 &&
		c.IntermediateCSR == nil && c.Intermediate == nil && c.EtcdCSR == nil && c.EtcdCert == nil && c.Programmed == nil {
		delete(v.clusters, k.Cluster)
		delete(v.cloned, k.Cluster)
	}
}

// Cluster returns a copy of what the View knows of a cluster. The services of Self
// are those of its own informers once LocalSynced was called.
func (v *View) Cluster(name string) (Cluster, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	c, ok := v.clusters[name]
	if !ok {
		if name != v.self || v.local == nil {
			return Cluster{}, false
		}
		c = &Cluster{Name: name}
	}
	return v.copyOf(c), true
}

// Clusters returns copies of every cluster, sorted by name; Self's services as
// Cluster says.
func (v *View) Clusters() []Cluster { return v.clusterList(v.copyOf) }

// clusterList is every cluster, sorted by name, each as of returns it.
func (v *View) clusterList(of func(*Cluster) Cluster) []Cluster {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]Cluster, 0, len(v.clusters)+1)
	for _, c := range v.clusters {
		out = append(out, of(c))
	}
	if _, ok := v.clusters[v.self]; !ok && v.self != "" && v.local != nil {
		out = append(out, of(&Cluster{Name: v.self}))
	}
	slices.SortFunc(out, func(a, b Cluster) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Service is cluster's record of the Service namespace/name as served (admitted),
// nil if it has none: one record, without copying the cluster.
func (v *View) Service(cluster, namespace, name string) *model.ServiceEndpoints {
	v.mu.RLock()
	defer v.mu.RUnlock()
	nn := NamespacedName{Namespace: namespace, Name: name}
	if cluster == v.self && v.local != nil {
		return v.localServed[nn]
	}
	if c := v.clusters[cluster]; c != nil {
		return c.Services[nn]
	}
	return nil
}

// Heartbeats is when each cluster's heartbeat was last seen written (zero: never),
// by cluster: what freshness is judged from, without copying the clusters.
func (v *View) Heartbeats() map[string]time.Time {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make(map[string]time.Time, len(v.clusters))
	for name, c := range v.clusters {
		out[name] = c.LastHeartbeat
	}
	return out
}

// ReadOnlyClusters is Clusters without copying each cluster's maps of services and
// refusals: they are shared with the View, which never writes to them again, and
// must not be modified. For readers that read the whole fleet on every change (the
// xDS server).
func (v *View) ReadOnlyClusters() []Cluster { return v.clusterList(v.lend) }

// GlobalServices returns every global service, sorted by namespace/name.
func (v *View) GlobalServices() []model.GlobalService {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]model.GlobalService, 0, len(v.globals))
	for _, g := range v.globals {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b model.GlobalService) int { return model.Compare(&a, &b) })
	return out
}

// TrustBundle returns the mesh's trust bundle, nil until the hub publishes one.
func (v *View) TrustBundle() *model.TrustBundle {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.bundle
}

// Policy returns a policy by namespace and name.
func (v *View) Policy(namespace, name string) (*model.Policy, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	p, ok := v.policies[NamespacedName{namespace, name}]
	return p, ok
}

// Policies returns every policy, sorted by namespace/name.
func (v *View) Policies() []*model.Policy {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]*model.Policy, 0, len(v.policies))
	for _, p := range v.policies {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *model.Policy) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return out
}

// PublishedServices returns the etcd keys of a cluster's published services, as the
// store holds them (never Self's informers' view), admitted or not.
func (v *View) PublishedServices(cluster string) []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	p := v.published[cluster]
	if p == nil {
		return nil
	}
	out := make([]string, 0, len(p.raw))
	for nn := range p.raw {
		out = append(out, keyspace.ServiceEndpoints(cluster, nn.Namespace, nn.Name))
	}
	slices.Sort(out)
	return out
}

// copyOf copies c, with Self's services from the informers when they are synced,
// and copies of its maps of services and refusals. The caller holds v.mu, for
// reading at least.
func (v *View) copyOf(c *Cluster) Cluster {
	out := v.served(c)
	out.Services, out.Refused = maps.Clone(out.Services), maps.Clone(out.Refused)
	if out.Services == nil {
		out.Services = map[NamespacedName]*model.ServiceEndpoints{}
	}
	if out.Refused == nil {
		out.Refused = map[NamespacedName][]admit.Rejection{}
	}
	return out
}

// lend is copyOf sharing c's maps of services and refusals, which the View never
// writes again once lent: it writes to clones of them (own). The caller holds v.mu,
// for reading at least.
func (v *View) lend(c *Cluster) Cluster {
	v.lends.Add(1)
	return v.served(c)
}

// served is c with Self's services from the informers when they are synced,
// sharing its maps. The caller holds v.mu, for reading at least.
func (v *View) served(c *Cluster) Cluster {
	out := *c
	if c.Name == v.self && v.local != nil {
		out.Services, out.Refused = v.localServed, nil
	}
	return out
}

// own makes c's maps of services and refusals safe to write: clones of them if a
// copy of c may hold them. The caller holds v.mu for writing.
func (v *View) own(c *Cluster) {
	if n := v.lends.Load(); n != v.cloned[c.Name] {
		c.Services, c.Refused = maps.Clone(c.Services), maps.Clone(c.Refused)
		v.cloned[c.Name] = n
	}
}

// ownLocal is own for localServed.
func (v *View) ownLocal() {
	if n := v.lends.Load(); n != v.localCloned {
		v.localServed = maps.Clone(v.localServed)
		v.localCloned = n
	}
}
