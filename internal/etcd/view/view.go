package view

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
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
	Services      map[NamespacedName]*model.ServiceEndpoints
	// IntermediateCSR and Intermediate are the cluster's request for its
	// intermediate CA and the hub's signed answer.
	IntermediateCSR *model.IntermediateCSR
	Intermediate    *model.Intermediate
	// EtcdCSR and EtcdCert are the agent's request to renew its etcd client
	// certificate and the hub's signed answer.
	EtcdCSR  *model.EtcdCSR
	EtcdCert *model.EtcdCert
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
	// Clock stamps heartbeats as seen. Default: the real clock.
	Clock clock.PassiveClock
}

// View is the in-memory federation. Create it with New.
type View struct {
	clock clock.PassiveClock

	mu       sync.RWMutex
	clusters map[string]*Cluster
	globals  map[NamespacedName]*model.GlobalService
	policies map[NamespacedName]*model.Policy
	bundle   *model.TrustBundle
	synced   chan struct{} // closed after the first complete list
	subs     map[int]func(keyspace.Key)
	nextSub  int
}

// New returns an empty View.
func New(opts Options) *View {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &View{
		clock:    opts.Clock,
		clusters: map[string]*Cluster{},
		globals:  map[NamespacedName]*model.GlobalService{},
		policies: map[NamespacedName]*model.Policy{},
		synced:   make(chan struct{}),
		subs:     map[int]func(keyspace.Key){},
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
	v.apply(k, rec)
}

// OnDelete implements kvstore.Observer.
func (v *View) OnDelete(key string) {
	k, err := keyspace.Parse(key)
	if err != nil {
		return
	}
	v.apply(k, nil)
}

// OnSynced implements kvstore.Observer.
func (v *View) OnSynced() {
	v.mu.Lock()
	select {
	case <-v.synced:
	default:
		close(v.synced)
	}
	v.mu.Unlock()
}

// WaitSynced blocks until the View holds a complete list of the store, or ctx is done.
func (v *View) WaitSynced(ctx context.Context) error {
	select {
	case <-v.synced:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// HasSynced reports whether the first complete list has arrived.
func (v *View) HasSynced() bool {
	select {
	case <-v.synced:
		return true
	default:
		return false
	}
}

// apply stores rec at k, or deletes k when rec is nil.
func (v *View) apply(k keyspace.Key, rec model.Record) {
	v.mu.Lock()
	nn := NamespacedName{k.Namespace, k.Name}
	switch k.Kind {
	case keyspace.KindGlobalService:
		if rec == nil {
			delete(v.globals, nn)
		} else {
			v.globals[nn] = rec.(*model.GlobalService)
		}
	case keyspace.KindPolicy:
		if rec == nil {
			delete(v.policies, nn)
		} else {
			v.policies[nn] = rec.(*model.Policy)
		}
	case keyspace.KindClusterInfo, keyspace.KindClusterHeartbeat, keyspace.KindClusterSynced, keyspace.KindServiceEndpoints,
		keyspace.KindIntermediateCSR, keyspace.KindIntermediate, keyspace.KindEtcdCSR, keyspace.KindEtcdCert:
		v.applyCluster(k, nn, rec)
	case keyspace.KindTrustBundle:
		v.bundle, _ = rec.(*model.TrustBundle)
	}
	subs := make([]func(keyspace.Key), 0, len(v.subs))
	for _, fn := range v.subs {
		subs = append(subs, fn)
	}
	v.mu.Unlock()
	for _, fn := range subs {
		fn(k)
	}
}

func (v *View) applyCluster(k keyspace.Key, nn NamespacedName, rec model.Record) {
	c := v.clusters[k.Cluster]
	if c == nil {
		if rec == nil {
			return
		}
		c = &Cluster{Name: k.Cluster, Services: map[NamespacedName]*model.ServiceEndpoints{}}
		v.clusters[k.Cluster] = c
	}
	switch k.Kind {
	case keyspace.KindClusterInfo:
		c.Info, _ = rec.(*model.ClusterInfo)
	case keyspace.KindClusterHeartbeat:
		c.Heartbeat, _ = rec.(*model.Heartbeat)
		if rec != nil {
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
	case keyspace.KindServiceEndpoints:
		if rec == nil {
			delete(c.Services, nn)
		} else {
			c.Services[nn] = rec.(*model.ServiceEndpoints)
		}
	}
	if c.Info == nil && c.Heartbeat == nil && c.Synced == nil && len(c.Services) == 0 &&
		c.IntermediateCSR == nil && c.Intermediate == nil && c.EtcdCSR == nil && c.EtcdCert == nil {
		delete(v.clusters, k.Cluster)
	}
}

// Cluster returns a copy of what the View knows of a cluster.
func (v *View) Cluster(name string) (Cluster, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	c, ok := v.clusters[name]
	if !ok {
		return Cluster{}, false
	}
	return c.copy(), true
}

// Clusters returns copies of every cluster, sorted by name.
func (v *View) Clusters() []Cluster {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]Cluster, 0, len(v.clusters))
	for _, c := range v.clusters {
		out = append(out, c.copy())
	}
	slices.SortFunc(out, func(a, b Cluster) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// GlobalServices returns every global service, sorted by namespace/name.
func (v *View) GlobalServices() []model.GlobalService {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]model.GlobalService, 0, len(v.globals))
	for _, g := range v.globals {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b model.GlobalService) int { return strings.Compare(a.String(), b.String()) })
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

// PublishedServices returns the etcd keys of a cluster's published services.
func (v *View) PublishedServices(cluster string) []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	c := v.clusters[cluster]
	if c == nil {
		return nil
	}
	out := make([]string, 0, len(c.Services))
	for nn := range c.Services {
		out = append(out, keyspace.ServiceEndpoints(cluster, nn.Namespace, nn.Name))
	}
	slices.Sort(out)
	return out
}

func (c *Cluster) copy() Cluster {
	out := *c
	out.Services = make(map[NamespacedName]*model.ServiceEndpoints, len(c.Services))
	for k, s := range c.Services {
		out.Services[k] = s
	}
	return out
}
