package xds

import (
	"context"
	"fmt"
	"sync"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
)

// Served returns the load assignment named cluster that the server serves group g:
// what every proxy of g gets.
func (s *Server) Served(g Group, cluster string) (*endpointv3.ClusterLoadAssignment, error) {
	m, err := s.cache.decode(g.key(), resourcev3.EndpointType, cluster)
	if err != nil {
		return nil, err
	}
	return m.(*endpointv3.ClusterLoadAssignment), nil
}

// Rebuild registers groups as their proxies' streams would and runs one rebuild at
// now, as Run's loop does on a change: of what changed in the view since the last
// (the first call subscribes to the view as Run does, and builds everything). Call
// it only while Run is not running: the loop owns what rebuild writes.
func (s *Server) Rebuild(ctx context.Context, now time.Time, groups ...Group) error {
	if _, loaded := watched.LoadOrStore(s, true); !loaded {
		s.opts.View.Subscribe(func(k keyspace.Key) {
			if k.Kind != keyspace.KindClusterHeartbeat {
				s.mu.Lock()
				s.dirty.add(k, s.opts.Cluster)
				s.mu.Unlock()
			}
		})
	}
	s.mu.Lock()
	for _, g := range groups {
		if _, ok := s.groups[g.key()]; !ok {
			s.addGroup(g)
		}
	}
	s.mu.Unlock()
	return s.rebuild(ctx, now)
}

// decoded is r decoded, the same message for the same resource: a resource built
// once is one pointer in every snapshot that holds it.
func decoded(r *resource) (proto.Message, error) {
	if m, ok := decodedResources.Load(r); ok {
		return m.(proto.Message), nil
	}
	m, err := r.any.UnmarshalNew()
	if err != nil {
		return nil, err
	}
	m2, _ := decodedResources.LoadOrStore(r, m)
	return m2.(proto.Message), nil
}

var decodedResources sync.Map

// watched holds the servers Rebuild subscribed to their view.
var watched sync.Map

// Costs are how many global services had their targets recomputed and how many load
// assignments were built since the server started.
func (s *Server) Costs() (recomputed, assignments int64) {
	return s.recomputed.Load(), s.assignments.Load()
}

// Snapshot is what the server serves group g, decoded: the shared listeners, routes
// and clusters and the group's load assignments.
func (s *Server) Snapshot(g Group) (*cachev3.Snapshot, error) {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	if s.cache.eds[g.key()] == nil {
		return nil, fmt.Errorf("group %s has no load assignments", g.key())
	}
	snap := &cachev3.Snapshot{}
	for typ, rt := range map[string]types.ResponseType{resourcev3.ListenerType: types.Listener, resourcev3.RouteType: types.Route,
		resourcev3.ClusterType: types.Cluster, resourcev3.EndpointType: types.Endpoint} {
		rs := s.cache.typeOf(g.key(), typ)
		if rs == nil {
			return nil, fmt.Errorf("no %s resources", typ)
		}
		var items []types.Resource
		var err error
		rs.all(func(_ string, r *resource) {
			m, e := decoded(r)
			if e != nil {
				err = e
			}
			items = append(items, m)
		})
		if err != nil {
			return nil, err
		}
		snap.Resources[rt] = cachev3.NewResources(versionString(rs.version), items)
	}
	return snap, nil
}

// AuthorizationShapedBy returns the policies ("namespace/name") that shaped the
// server route configuration name as last built. Call it only while Run is not
// running.
func (s *Server) AuthorizationShapedBy(name string) []string { return s.shared.authzPolicies(name) }
