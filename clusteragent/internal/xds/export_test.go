package xds

import (
	"fmt"

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
