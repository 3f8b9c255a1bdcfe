package xds

import (
	"context"
	"fmt"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// Served returns the load assignment named cluster in the snapshot the server set for
// group g: what every proxy of g gets.
func (s *Server) Served(g Group, cluster string) (*endpointv3.ClusterLoadAssignment, error) {
	snap, err := s.cache.GetSnapshot(g.key())
	if err != nil {
		return nil, err
	}
	r, ok := snap.(*cachev3.Snapshot).Resources[types.Endpoint].Items[cluster]
	if !ok {
		return nil, fmt.Errorf("group %s has no load assignment %s", g.key(), cluster)
	}
	return r.Resource.(*endpointv3.ClusterLoadAssignment), nil
}

// Rebuild registers groups as their proxies' streams would and runs one rebuild at
// now, as Run's loop does on a change. Call it only while Run is not running: the
// loop owns what rebuild writes.
func (s *Server) Rebuild(ctx context.Context, now time.Time, groups ...Group) error {
	s.mu.Lock()
	for _, g := range groups {
		if _, ok := s.groups[g.key()]; !ok {
			s.addGroup(g)
		}
	}
	s.mu.Unlock()
	return s.rebuild(ctx, now)
}

// Snapshot is the snapshot the server set for group g.
func (s *Server) Snapshot(g Group) (*cachev3.Snapshot, error) {
	snap, err := s.cache.GetSnapshot(g.key())
	if err != nil {
		return nil, err
	}
	return snap.(*cachev3.Snapshot), nil
}

// BuildSnapshot builds group g's whole snapshot from targets with the functions a
// rebuild uses for a group it has not built before, and checks it: for benchmarks.
func (s *Server) BuildSnapshot(g Group, targets []Target) (*cachev3.Snapshot, error) {
	shared, _ := buildShared(nil, targets, s.serverAddrs(), "1", s.trustDomain())
	next, _ := s.buildGroup(g, targets, shared, nil)
	snap := snapshot(shared, next)
	return snap, check(snap, targets)
}
