package xds

// Client is a proxy's locality: its cluster is always this agent's.
type Client struct {
	Cluster, Region, Zone string
}

// Prioritize places a target's localities for a client. TEMPORARY: replaced by package
// locality.
func Prioritize(c Client, t Target) []LocalityEndpoints {
	var out []LocalityEndpoints
	for _, l := range t.Localities {
		if len(l.Healthy) == 0 {
			continue
		}
		p := uint32(3)
		switch {
		case l.State == Stale:
			p = 4
		case l.Region == c.Region && l.Zone == c.Zone && l.Cluster == c.Cluster:
			p = 0
		case l.Region == c.Region && l.Cluster == c.Cluster:
			p = 1
		case l.Region == c.Region:
			p = 2
		}
		out = append(out, LocalityEndpoints{Region: l.Region, Zone: l.Zone, Cluster: l.Cluster, Priority: p,
			Weight: uint32(len(l.Healthy)), Endpoints: l.Healthy})
	}
	// make contiguous
	used := map[uint32]bool{}
	for _, l := range out {
		used[l.Priority] = true
	}
	remap := map[uint32]uint32{}
	next := uint32(0)
	for p := uint32(0); p < 5; p++ {
		if used[p] {
			remap[p] = next
			next++
		}
	}
	for i := range out {
		out[i].Priority = remap[out[i].Priority]
	}
	return out
}
