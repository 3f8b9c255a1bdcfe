package xds

import (
	"slices"

	"github.com/meshfed/meshfed/clusteragent/internal/locality"
)

// Client is a proxy's locality; its cluster is always this agent's.
type Client = locality.Client

// Table is the priority table a client gets for a target (package locality), with
// every exclusion explained: a locality whose endpoints were withheld (unreachable
// gateways, failback hold) is excluded for that reason, and the target's member
// clusters that serve it nothing (Target.Excluded) are excluded too. The server builds
// load assignments from this table and explanations print it, so that what is
// explained is what is served.
func Table(c Client, t Target) locality.Table {
	candidates, withheld := candidatesOf(t)
	return table(c, t, candidates, withheld)
}

// candidatesOf are t's localities as the priority function takes them, and whether
// any was withheld: the same for every client of a target.
func candidatesOf(t Target) ([]locality.Candidate, bool) {
	candidates := make([]locality.Candidate, len(t.Localities))
	withheld := false
	for i, l := range t.Localities {
		candidates[i] = locality.Candidate{
			Locality: locality.Locality{Cluster: l.Cluster, Region: l.Region, Zone: l.Zone, Network: l.Network},
			State:    l.State,
			Healthy:  uint32(len(l.Healthy)),
			Total:    uint32(l.Total),
		}
		withheld = withheld || l.Withheld != ""
	}
	return candidates, withheld
}

// table is Table from t's candidates.
func table(c Client, t Target, candidates []locality.Candidate, withheld bool) locality.Table {
	table := locality.Prioritize(c, candidates, t.Policy)
	if !withheld && len(t.Excluded) == 0 {
		return table
	}
	// Localities are one per cluster and zone (localitiesOf), so the key is unique.
	type key struct{ cluster, zone string }
	why := make(map[key]string, len(t.Localities))
	for _, l := range t.Localities {
		if l.Withheld != "" {
			why[key{l.Cluster, l.Zone}] = l.Withheld
		}
	}
	excluded := slices.Clone(table.Excluded)
	for i, e := range excluded {
		if w := why[key{e.Cluster, e.Zone}]; w != "" && e.Healthy == 0 {
			excluded[i].Reason = w
		}
	}
	for _, x := range t.Excluded {
		excluded = append(excluded, locality.Entry{
			Candidate: locality.Candidate{Locality: locality.Locality{Cluster: x.Cluster, Region: x.Region, Zone: x.Zone}},
			Reason:    x.Reason,
		})
	}
	slices.SortStableFunc(excluded, func(a, b locality.Entry) int { return a.Locality.Compare(b.Locality) })
	table.Excluded = excluded
	return table
}

// Prioritize places a target's localities, with their endpoints, in the client's
// priority table.
func Prioritize(c Client, t Target) []LocalityEndpoints {
	return place(Table(c, t), t)
}

// place gives the entries of a target's table their endpoints.
//
// Every zone of a cluster on another network is reached through the same gateways,
// and a load assignment may hold an address only once (grpc-go refuses the whole
// resource otherwise). The gateways therefore stand once for their cluster: the
// cluster's later zones in the same priority add their weight to its first one, and
// those in lower priorities are left out, as the gateways are already reachable above.
// Behind the gateway the cluster's endpoints are balanced whatever their zone.
func place(table locality.Table, t Target) []LocalityEndpoints {
	return newPlacer(t).place(table)
}

// placer makes the tables of one target and places their entries: what it looks up
// is indexed once for every group's table.
type placer struct {
	endpoints  map[placeKey][]Endpoint
	remote     map[string]bool
	candidates []locality.Candidate
	withheld   bool
}

type placeKey struct{ cluster, zone string }

func newPlacer(t Target) *placer {
	p := &placer{endpoints: make(map[placeKey][]Endpoint, len(t.Localities))}
	p.candidates, p.withheld = candidatesOf(t)
	for _, l := range t.Localities {
		k := placeKey{l.Cluster, l.Zone}
		if l.Gateways != nil {
			p.endpoints[k] = l.Gateways // another network: through its gateways
			if p.remote == nil {
				p.remote = map[string]bool{}
			}
			p.remote[l.Cluster] = true
			continue
		}
		p.endpoints[k] = l.Healthy // one locality per cluster and zone (localitiesOf): shared, never modified
	}
	return p
}

// table is Table(c, t) for the target pl was made for.
func (pl *placer) table(c Client, t Target) locality.Table {
	return table(c, t, pl.candidates, pl.withheld)
}

func (pl *placer) place(table locality.Table) []LocalityEndpoints {
	n := 0
	for _, entries := range table.Priorities {
		n += len(entries)
	}
	out := make([]LocalityEndpoints, 0, n)
	var first map[string]int // remote cluster -> its entry in out
	for p, entries := range table.Priorities {
		for _, e := range entries {
			if pl.remote[e.Cluster] {
				if i, ok := first[e.Cluster]; ok {
					if out[i].Priority == uint32(p) {
						out[i].Weight += e.Weight
					}
					continue
				}
				if first == nil {
					first = map[string]int{}
				}
				first[e.Cluster] = len(out)
			}
			out = append(out, LocalityEndpoints{
				Region: e.Region, Zone: e.Zone, Cluster: e.Cluster,
				Priority: uint32(p), Weight: e.Weight,
				Endpoints: pl.endpoints[placeKey{e.Cluster, e.Zone}],
			})
		}
	}
	// Leaving a lower priority's zones out may have emptied it: number the priorities
	// left contiguously from 0, as proxies require.
	renumber := make([]int32, len(table.Priorities))
	for i := range renumber {
		renumber[i] = -1
	}
	next := int32(0)
	for i := range out {
		if renumber[out[i].Priority] < 0 {
			renumber[out[i].Priority] = next
			next++
		}
		out[i].Priority = uint32(renumber[out[i].Priority])
	}
	return out
}
