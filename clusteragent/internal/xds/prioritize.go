package xds

import (
	"github.com/meshfed/meshfed/clusteragent/internal/locality"
)

// Client is a proxy's locality; its cluster is always this agent's.
type Client = locality.Client

// Table is the priority table a client gets for a target (package locality).
func Table(c Client, t Target) locality.Table {
	candidates := make([]locality.Candidate, len(t.Localities))
	for i, l := range t.Localities {
		candidates[i] = locality.Candidate{
			Locality: locality.Locality{Cluster: l.Cluster, Region: l.Region, Zone: l.Zone, Network: l.Network},
			State:    l.State,
			Healthy:  uint32(len(l.Healthy)),
			Total:    uint32(l.Total),
		}
	}
	return locality.Prioritize(c, candidates, t.Policy)
}

// Prioritize places a target's localities, with their endpoints, in the client's
// priority table.
func Prioritize(c Client, t Target) []LocalityEndpoints {
	type key struct{ cluster, zone string }
	endpoints := make(map[key][]Endpoint, len(t.Localities))
	for _, l := range t.Localities {
		k := key{l.Cluster, l.Zone}
		if l.Gateways != nil {
			endpoints[k] = l.Gateways // another network: through its gateways
			continue
		}
		endpoints[k] = append(endpoints[k], l.Healthy...)
	}
	var out []LocalityEndpoints
	for p, entries := range Table(c, t).Priorities {
		for _, e := range entries {
			out = append(out, LocalityEndpoints{
				Region: e.Region, Zone: e.Zone, Cluster: e.Cluster,
				Priority: uint32(p), Weight: e.Weight,
				Endpoints: endpoints[key{e.Cluster, e.Zone}],
			})
		}
	}
	return out
}
