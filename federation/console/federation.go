package console

import (
	"cmp"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// Federation is the JSON of /api/federation: the federation as the hub's view holds
// it at Time.
type Federation struct {
	Time time.Time `json:"time"`
	// Synced: the hub's view has completed its first list of etcd; before that the
	// picture is partial.
	Synced   bool      `json:"synced"`
	Regions  []Region  `json:"regions"`
	Networks []Network `json:"networks"`
	Clusters []Cluster `json:"clusters"`
	Services []Service `json:"services"`
}

// Region is one region and the clusters in it, by name.
type Region struct {
	Name     string   `json:"name"`
	Clusters []string `json:"clusters"`
}

// Network is one network, its clusters and the gateways ("<cluster> <address>")
// that reach them from other networks.
type Network struct {
	Name     string   `json:"name"`
	Clusters []string `json:"clusters"`
	Gateways []string `json:"gateways"`
}

// Cluster is one cluster: its registration (empty until the hub's record arrives)
// and its agent's liveness.
type Cluster struct {
	Name     string   `json:"name"`
	Region   string   `json:"region"`
	Zones    []Zone   `json:"zones"`
	Network  string   `json:"network"`
	Gateways []string `json:"gateways"`
	// Connected: the agent's heartbeat lease is alive. It ends when the agent stops
	// (at once) or dies (when the lease expires, within HeartbeatTTLSeconds).
	Connected bool `json:"connected"`
	// HeartbeatAgeSeconds is how long ago the hub last saw the heartbeat written;
	// negative if never.
	HeartbeatAgeSeconds float64 `json:"heartbeatAgeSeconds"`
	HeartbeatTTLSeconds int64   `json:"heartbeatTTLSeconds,omitempty"`
	Agent               string  `json:"agent,omitempty"`
	// Synced: the agent has published its first complete set of services.
	Synced    bool `json:"synced"`
	Services  int  `json:"services"`
	Endpoints int  `json:"endpoints"`
	Ready     int  `json:"ready"`
	// Explain: the console knows where this cluster's agent answers explain.
	Explain bool `json:"explain"`
}

// Zone is one zone of a cluster, with the endpoints the cluster publishes there.
type Zone struct {
	Name      string `json:"name"`
	Endpoints int    `json:"endpoints"`
	Ready     int    `json:"ready"`
}

// Service is one global service and its member Services' endpoints.
type Service struct {
	Namespace string           `json:"namespace"`
	Name      string           `json:"name"`
	Hostname  string           `json:"hostname"`
	Ports     []string         `json:"ports"`
	Policy    string           `json:"policy,omitempty"`
	Clusters  []ServiceCluster `json:"clusters"`
	Endpoints int              `json:"endpoints"`
	Ready     int              `json:"ready"`
}

// ServiceCluster is a global service's endpoints in one cluster, by zone. Zone ""
// holds endpoints that name none.
type ServiceCluster struct {
	Cluster   string `json:"cluster"`
	Connected bool   `json:"connected"`
	Zones     []Zone `json:"zones"`
	Endpoints int    `json:"endpoints"`
	Ready     int    `json:"ready"`
}

// Snapshot draws the federation from the view's clusters and global services at now.
// explain says which clusters have an explain view. Membership is model.Selects, the
// one definition every reader of published services uses. Everything is sorted by
// name, so that the same view gives the same JSON.
func Snapshot(clusters []view.Cluster, globals []model.GlobalService, explain func(cluster string) bool, synced bool, now time.Time) Federation {
	out := Federation{Time: now.UTC(), Synced: synced, Regions: []Region{}, Networks: []Network{}, Clusters: []Cluster{}, Services: []Service{}}
	slices.SortFunc(clusters, func(a, b view.Cluster) int { return cmp.Compare(a.Name, b.Name) })
	regions, networks := map[string]*Region{}, map[string]*Network{}
	for _, c := range clusters {
		oc := cluster(c, now)
		oc.Explain = explain(c.Name)
		out.Clusters = append(out.Clusters, oc)
		r := regions[oc.Region]
		if r == nil {
			r = &Region{Name: oc.Region}
			regions[oc.Region] = r
		}
		r.Clusters = append(r.Clusters, c.Name)
		n := networks[oc.Network]
		if n == nil {
			n = &Network{Name: oc.Network, Gateways: []string{}}
			networks[oc.Network] = n
		}
		n.Clusters = append(n.Clusters, c.Name)
		for _, g := range oc.Gateways {
			n.Gateways = append(n.Gateways, c.Name+" "+g)
		}
	}
	for _, r := range regions {
		out.Regions = append(out.Regions, *r)
	}
	slices.SortFunc(out.Regions, func(a, b Region) int { return cmp.Compare(a.Name, b.Name) })
	for _, n := range networks {
		out.Networks = append(out.Networks, *n)
	}
	slices.SortFunc(out.Networks, func(a, b Network) int { return cmp.Compare(a.Name, b.Name) })
	for i := range globals {
		out.Services = append(out.Services, service(&globals[i], clusters))
	}
	return out
}

func cluster(c view.Cluster, now time.Time) Cluster {
	oc := Cluster{Name: c.Name, Zones: []Zone{}, Gateways: []string{}, Connected: c.Connected(), Synced: c.Synced != nil,
		Services: len(c.Services), HeartbeatAgeSeconds: -1}
	if !c.LastHeartbeat.IsZero() {
		oc.HeartbeatAgeSeconds = now.Sub(c.LastHeartbeat).Seconds()
	}
	if hb := c.Heartbeat; hb != nil {
		oc.HeartbeatTTLSeconds, oc.Agent = hb.TTL, hb.Agent
	}
	var declared []string
	if info := c.Info; info != nil {
		oc.Region, oc.Network, declared = info.Region, info.Network, info.Zones
		for _, g := range info.Gateways {
			oc.Gateways = append(oc.Gateways, net.JoinHostPort(g.Address, strconv.Itoa(int(g.Port))))
		}
	}
	zones := map[string]*Zone{}
	for _, z := range declared {
		zones[z] = &Zone{Name: z}
	}
	for _, s := range c.Services {
		for _, e := range s.Endpoints {
			z := zones[e.Zone]
			if z == nil {
				z = &Zone{Name: e.Zone}
				zones[e.Zone] = z
			}
			count(&z.Endpoints, &z.Ready, e)
			count(&oc.Endpoints, &oc.Ready, e)
		}
	}
	oc.Zones = sortedZones(zones)
	return oc
}

func service(g *model.GlobalService, clusters []view.Cluster) Service {
	s := Service{Namespace: g.Namespace, Name: g.Name, Hostname: g.Hostname, Policy: g.Policy, Ports: []string{}, Clusters: []ServiceCluster{}}
	for _, p := range g.Ports {
		port := strconv.Itoa(int(p.Port)) + "/" + p.Protocol
		if p.Name != "" {
			port = p.Name + " " + port
		}
		s.Ports = append(s.Ports, port)
	}
	for _, c := range clusters {
		var sc *ServiceCluster
		zones := map[string]*Zone{}
		for nn, m := range c.Services {
			if !model.Selects(g, c.Name, nn.Namespace, nn.Name, m.Labels) {
				continue
			}
			if sc == nil {
				sc = &ServiceCluster{Cluster: c.Name, Connected: c.Connected()}
			}
			for _, e := range m.Endpoints {
				z := zones[e.Zone]
				if z == nil {
					z = &Zone{Name: e.Zone}
					zones[e.Zone] = z
				}
				count(&z.Endpoints, &z.Ready, e)
				count(&sc.Endpoints, &sc.Ready, e)
				count(&s.Endpoints, &s.Ready, e)
			}
		}
		if sc != nil {
			sc.Zones = sortedZones(zones)
			s.Clusters = append(s.Clusters, *sc)
		}
	}
	return s
}

func count(total, ready *int, e model.Endpoint) {
	*total++
	if e.Ready {
		*ready++
	}
}

func sortedZones(m map[string]*Zone) []Zone {
	out := make([]Zone, 0, len(m))
	for _, z := range m {
		out = append(out, *z)
	}
	slices.SortFunc(out, func(a, b Zone) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
