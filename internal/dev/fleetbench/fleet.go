package fleetbench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// Names of the simulated federation.
const (
	// selfCluster is the agent's own cluster; it publishes nothing.
	selfCluster = "local"
	selfRegion  = "region-0"
	namespace   = "bench"
	portName    = "http"
	port        = 8080
)

func simCluster(c int) string { return fmt.Sprintf("sim-%03d", c+1) }
func service(s int) string    { return fmt.Sprintf("svc-%03d", s) }
func hostname(s int) string   { return service(s) + "." + namespace + ".global" }
func simRegion(c int) string  { return fmt.Sprintf("region-%d", c%3) }
func selfZone(z int) string   { return fmt.Sprintf("%s-local-%c", selfRegion, 'a'+z) }

// claName is the load assignment of service s: the agent's name for a global service
// port (clusteragent/internal/xds.ClusterName, Istio's convention).
func claName(s int) string { return fmt.Sprintf("outbound|%d||%s", port, hostname(s)) }

// address is endpoint e of service s in cluster c: 10.<c+1>.0.0/16 is the cluster's
// address range.
func (f *fleet) address(c, s, e int) string {
	i := s*f.o.Endpoints + e + 1
	return netip.AddrFrom4([4]byte{10, byte(c + 1), byte(i >> 8), byte(i)}).String()
}

// fleet is the simulated clusters: what they published, and their writers.
type fleet struct {
	o    Options
	etcd *clientv3.Client
	tr   *tracker
	// recs[c][s] is what cluster c publishes of service s; locks[c][s] serializes its
	// writes, so that the store never goes back to an older record.
	recs  [][]*model.ServiceEndpoints
	locks [][]sync.Mutex
	// heartbeats counts heartbeat writes, heartbeatErrors the failed ones.
	heartbeats, heartbeatErrors atomic.Int64
}

func newFleet(o Options, etcd *clientv3.Client, tr *tracker) *fleet {
	f := &fleet{o: o, etcd: etcd, tr: tr}
	f.recs = make([][]*model.ServiceEndpoints, o.Clusters)
	f.locks = make([][]sync.Mutex, o.Clusters)
	for c := range o.Clusters {
		f.recs[c] = make([]*model.ServiceEndpoints, o.Services)
		f.locks[c] = make([]sync.Mutex, o.Services)
		for s := range o.Services {
			rec := &model.ServiceEndpoints{Namespace: namespace, Name: service(s), ExportedBy: []string{model.ExportedByGlobalService},
				Ports: []model.ServicePort{{Name: portName, Port: port, Protocol: "TCP"}}}
			zones := simZones(c)
			for e := range o.Endpoints {
				rec.Endpoints = append(rec.Endpoints, model.Endpoint{Address: f.address(c, s, e), Zone: zones[e%len(zones)],
					TargetRef: fmt.Sprintf("Pod/%s-%d", service(s), e), Ready: true, Serving: true,
					Ports: []model.EndpointPort{{Name: portName, Port: port}}})
			}
			f.recs[c][s] = rec
		}
	}
	return f
}

func simZones(c int) []string {
	r := simRegion(c)
	return []string{fmt.Sprintf("%s-%s-a", r, simCluster(c)), fmt.Sprintf("%s-%s-b", r, simCluster(c))}
}

// writeAll writes what the hub and the clusters' agents would have written before the
// benchmark's agent starts: registrations, global services, every record, synced
// markers and the hub's ready marker. Heartbeats are started by heartbeat.
func (f *fleet) writeAll(ctx context.Context) error {
	var ops []clientv3.Op
	size := 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := f.etcd.Txn(ctx).Then(ops...).Commit()
		ops, size = nil, 0
		return err
	}
	put := func(key string, rec model.Record) error {
		v, err := model.Encode(rec)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		// etcd's default limits: 128 operations and 1.5 MiB per request.
		if len(ops) == 100 || size+len(v) > 1<<20 {
			if err := flush(); err != nil {
				return err
			}
		}
		ops, size = append(ops, clientv3.OpPut(key, string(v))), size+len(v)
		return nil
	}
	zones := make([]string, f.o.Zones)
	for z := range zones {
		zones[z] = selfZone(z)
	}
	if err := put(keyspace.ClusterInfo(selfCluster), &model.ClusterInfo{Name: selfCluster, Region: selfRegion, Zones: zones,
		Network: "default", AddressRanges: []string{"10.0.0.0/16"}}); err != nil {
		return err
	}
	for s := range f.o.Services {
		if err := put(keyspace.GlobalService(namespace, service(s)), &model.GlobalService{Namespace: namespace, Name: service(s),
			Hostname: hostname(s), Service: &model.ServiceRef{Namespace: namespace, Name: service(s)},
			Ports: []model.GlobalPort{{Name: portName, Port: port, Protocol: "TCP"}}}); err != nil {
			return err
		}
	}
	for c := range f.o.Clusters {
		info := &model.ClusterInfo{Name: simCluster(c), Region: simRegion(c), Zones: simZones(c), Network: "default",
			AddressRanges: []string{fmt.Sprintf("10.%d.0.0/16", c+1)}}
		if err := put(keyspace.ClusterInfo(simCluster(c)), info); err != nil {
			return err
		}
		for s := range f.o.Services {
			if err := put(keyspace.ServiceEndpoints(simCluster(c), namespace, service(s)), f.recs[c][s]); err != nil {
				return err
			}
		}
		if err := put(keyspace.ClusterSynced(simCluster(c)), &model.Synced{SyncedAt: time.Now().UTC()}); err != nil {
			return err
		}
	}
	if err := put(keyspace.HubReady(), &model.HubReady{Since: time.Now().UTC()}); err != nil {
		return err
	}
	return flush()
}

// heartbeat keeps every simulated cluster's heartbeat: bound to a lease of
// HeartbeatTTL kept alive, rewritten every third of it as agents do, the clusters
// spread evenly over that interval. It returns once every heartbeat is written the
// first time; the heartbeats go on until ctx is done.
func (f *fleet) heartbeat(ctx context.Context) error {
	ttl := int64(f.o.HeartbeatTTL / time.Second)
	interval := f.o.HeartbeatTTL / 3
	var first sync.WaitGroup
	errs := make(chan error, f.o.Clusters)
	for c := range f.o.Clusters {
		lease, err := f.etcd.Grant(ctx, ttl)
		if err != nil {
			return err
		}
		alive, err := f.etcd.KeepAlive(ctx, lease.ID)
		if err != nil {
			return err
		}
		go func() {
			for range alive {
			}
		}()
		first.Add(1)
		go func() {
			key := keyspace.ClusterHeartbeat(simCluster(c))
			offset := interval * time.Duration(c) / time.Duration(f.o.Clusters)
			for i := 0; ; i++ {
				v, _ := model.Encode(&model.Heartbeat{Time: time.Now().UTC(), TTL: ttl, Agent: simCluster(c) + "-agent"})
				if _, err := f.etcd.Put(ctx, key, string(v), clientv3.WithLease(lease.ID)); err != nil && ctx.Err() == nil {
					f.heartbeatErrors.Add(1)
					select {
					case errs <- fmt.Errorf("heartbeat of %s: %w", simCluster(c), err):
					default:
					}
				} else {
					f.heartbeats.Add(1)
				}
				wait := interval
				if i == 0 {
					first.Done()
					wait += offset
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}()
	}
	first.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// pick chooses an endpoint at random: its cluster and its index in a record.
func (f *fleet) pick(rnd *rand.Rand) (c, e int) {
	return rnd.IntN(f.o.Clusters), rnd.IntN(f.o.Endpoints)
}

// flip flips the readiness of endpoint e of service s in cluster c, writes the
// cluster's record and returns the change the tracker waits for.
func (f *fleet) flip(ctx context.Context, c, s, e int) (*change, error) {
	f.locks[c][s].Lock()
	defer f.locks[c][s].Unlock()
	rec := *f.recs[c][s]
	rec.Endpoints = append([]model.Endpoint(nil), rec.Endpoints...)
	rec.Endpoints[e].Ready = !rec.Endpoints[e].Ready
	rec.Endpoints[e].Serving = rec.Endpoints[e].Ready
	// Stamped as an agent's publisher does, so that the agent's per-cluster
	// propagation metric covers the simulated clusters.
	rec.ChangedAt = time.Now().UTC()
	v, err := model.Encode(&rec)
	if err != nil {
		return nil, err
	}
	ch := f.tr.expect(s, f.address(c, s, e), rec.Endpoints[e].Ready, time.Now())
	if _, err := f.etcd.Put(ctx, keyspace.ServiceEndpoints(simCluster(c), namespace, service(s)), string(v)); err != nil {
		f.tr.drop(ch)
		return nil, err
	}
	f.recs[c][s] = &rec
	return ch, nil
}
