package xds

import (
	"cmp"
	"iter"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/clusteragent/internal/locality"
	"github.com/meshfed/meshfed/internal/etcd/admit"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// Target is one port of one global service with every locality that serves it.
type Target struct {
	Namespace, Name string
	Hostname        string
	Port            uint32
	Policy          *model.Policy // nil: the default policy
	Localities      []Locality
	// Excluded are the member clusters (or zones of them) that serve this port
	// nothing before any priority is computed, each with its reason: they never
	// reach Localities. Only explanations read it (see Table); what is served
	// depends on Localities alone.
	Excluded []Exclusion
	// Accounts are the service accounts allowed to serve the global service, sorted:
	// with mTLS, a client accepts only a server holding one of their identities (see
	// AccountsOf). Every port of a global service shares one slice; never modify it.
	Accounts []Account
	// Traffic is the global service's TrafficPolicy, nil if none: its routes, load
	// balancing and subsets (SubsetTarget) shape the route and clusters served.
	Traffic *model.TrafficPolicy
}

// Account is a service account of a member cluster: with the mesh's trust domain it
// names one SPIFFE ID (trust.ServiceAccountID).
type Account struct {
	Cluster, Namespace, Name string
}

// DefaultServiceAccount is the account a member Service's endpoints are taken to run
// as when its record names none: a Kubernetes pod that names no service account runs
// as "default".
const DefaultServiceAccount = "default"

// AccountsOf returns the service accounts allowed to serve g, sorted and without
// duplicates: for every registered cluster authorized to provide g (g.Clusters, empty
// for all) and every member Service of g it publishes, the accounts its record names,
// or DefaultServiceAccount when it names none. An unregistered cluster's accounts are
// not included, whatever its records say; names that are not valid service account
// names are skipped (they could name no Kubernetes workload).
func AccountsOf(clusters []view.Cluster, g *model.GlobalService) []Account {
	per := make([][]Account, len(clusters))
	for i, c := range clusters {
		per[i] = clusterAccounts(c, g)
	}
	return mergeAccounts(per)
}

// clusterAccounts is cluster c's share of AccountsOf.
func clusterAccounts(c view.Cluster, g *model.GlobalService) []Account {
	if c.Info == nil {
		return nil
	}
	var out []Account
	for nn, s := range members(c, g) {
		if !model.Selects(g, c.Name, nn.Namespace, nn.Name, s.Labels) {
			continue
		}
		if len(s.ServiceAccounts) == 0 {
			out = append(out, Account{Cluster: c.Name, Namespace: nn.Namespace, Name: DefaultServiceAccount})
			continue
		}
		for _, sa := range s.ServiceAccounts {
			if len(validation.IsDNS1123Subdomain(sa)) == 0 {
				out = append(out, Account{Cluster: c.Name, Namespace: nn.Namespace, Name: sa})
			}
		}
	}
	return out
}

// mergeAccounts joins clusters' shares of AccountsOf, sorted and without duplicates.
func mergeAccounts(per [][]Account) []Account {
	var out []Account
	for _, a := range per {
		out = append(out, a...)
	}
	slices.SortFunc(out, func(a, b Account) int {
		return cmp.Or(strings.Compare(a.Cluster, b.Cluster), strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return slices.Compact(out)
}

// Exclusion is a cluster, or one zone of it (Zone set), whose member Service of a
// global service contributes nothing to one of its ports, and why.
type Exclusion struct {
	Cluster, Region, Zone string
	Reason                string
}

// Locality is one cluster's zone serving a Target.
type Locality struct {
	Cluster, Region, Zone, Network string
	State                          locality.State
	// Healthy are the endpoints traffic may go to; Total counts every endpoint.
	Healthy []Endpoint
	Total   int
	// Totals count every endpoint by subset (Endpoint.Subset), when the service's
	// TrafficPolicy has subsets; nil otherwise.
	Totals map[string]int
	// Gateways, for a cluster on another network, are its east-west gateways: the
	// addresses a client sends the locality's traffic to, weighted by Healthy.
	Gateways []Endpoint
	// Withheld, when set, is why Healthy was emptied although the locality has ready
	// endpoints (its gateways are unreachable, a failback hold): the reason an
	// explanation gives for its exclusion. It never changes what is served.
	Withheld string
}

// Input is what targets are computed from: a consistent read of the view.
type Input struct {
	// Self is this agent's cluster.
	Self     string
	Clusters []view.Cluster
	Globals  []model.GlobalService
	Policy   func(namespace, name string) *model.Policy
	// TrafficPolicy returns the TrafficPolicy of a global service, nil if none; nil:
	// none has one.
	TrafficPolicy func(namespace, globalService string) *model.TrafficPolicy
	// Since is when this process started watching: a cluster never seen alive is
	// treated as having lapsed then.
	Since time.Time
	Now   time.Time
	// Offline returns how much of [from, to] the hub could not be read; nil: none.
	// Heartbeats lapse only while the hub can be read.
	Offline func(from, to time.Time) time.Duration
	// GatewayUp says whether a remote cluster's gateway answers probes; nil: all do.
	GatewayUp func(addr netip.AddrPort) bool
}

// Targets computes every global service port's localities. It is pure: the same input
// gives the same targets, sorted by hostname and port.
func Targets(in Input) []Target {
	globals := Globals(in)
	per := make([][]Target, len(globals))
	network := selfNetwork(in)
	for i := range globals {
		per[i] = globalTargets(in, network, &globals[i])
	}
	return merge(per)
}

// Globals are the global services of in: its GlobalServices and the implicit ones of
// MCS ServiceExports, in the order merge gives precedence to.
func Globals(in Input) []model.GlobalService {
	globals := slices.Clone(in.Globals)
	return append(globals, implicitExports(in, globals)...)
}

// globalTargets are the targets of every port of g.
func globalTargets(in Input, network string, g *model.GlobalService) []Target {
	ts, _ := globalTargetsFrom(in, network, g, nil, nil)
	return ts
}

// part is one cluster's share of a target: its localities and exclusions, and (in
// the first port's) its accounts.
type part struct {
	locs     []Locality
	excluded []Exclusion
	accounts []Account
}

// globalTargetsFrom is globalTargets reusing, from prev (the parts of an earlier
// computation of the same global service, by port and cluster), the part of every
// cluster not in redo; prev nil or redo nil: nothing is reused. It returns the parts
// it computed with, for the next call.
func globalTargetsFrom(in Input, network string, g *model.GlobalService, prev []map[string]part, redo map[string]bool) ([]Target, []map[string]part) {
	var policy *model.Policy
	if g.Policy != "" && in.Policy != nil {
		policy = in.Policy(g.Namespace, g.Policy)
	}
	var tp *model.TrafficPolicy
	if in.TrafficPolicy != nil {
		tp = in.TrafficPolicy(g.Namespace, g.Name)
	}
	// Each cluster's accounts are kept with its part of the first port (a global
	// service's ports share their accounts).
	out := make([]Target, 0, len(g.Ports))
	parts := make([]map[string]part, len(g.Ports))
	var accounts []Account
	if len(g.Ports) == 0 {
		accounts = AccountsOf(in.Clusters, g)
	}
	for i, gp := range g.Ports {
		t := Target{Namespace: g.Namespace, Name: g.Name, Hostname: g.Hostname, Port: uint32(gp.Port), Policy: policy, Traffic: tp}
		parts[i] = make(map[string]part, len(in.Clusters))
		nl, nx := 0, 0
		for _, c := range in.Clusters {
			p, ok := part{}, false
			if redo != nil && !redo[c.Name] && i < len(prev) {
				p, ok = prev[i][c.Name]
			}
			if !ok {
				p.locs, p.excluded = localitiesOf(in, network, c, g, gp, policy, tp)
				if i == 0 {
					p.accounts = clusterAccounts(c, g)
				}
			}
			parts[i][c.Name] = p
			nl, nx = nl+len(p.locs), nx+len(p.excluded)
		}
		if i == 0 {
			per := make([][]Account, 0, len(in.Clusters))
			for _, c := range in.Clusters {
				per = append(per, parts[0][c.Name].accounts)
			}
			accounts = mergeAccounts(per)
		}
		t.Accounts = accounts
		t.Localities, t.Excluded = make([]Locality, 0, nl), make([]Exclusion, 0, nx)
		for _, c := range in.Clusters {
			p := parts[i][c.Name]
			t.Localities = append(t.Localities, p.locs...)
			t.Excluded = append(t.Excluded, p.excluded...)
		}
		out = append(out, t)
	}
	return out, parts
}

// merge joins the targets of each global service, given in Globals' order, sorted by
// hostname and port. Two global services claiming one hostname:port: the first wins.
func merge(per [][]Target) []Target {
	n := 0
	for _, ts := range per {
		n += len(ts)
	}
	out := make([]Target, 0, n)
	seen := make(map[string]bool, n)
	for _, ts := range per {
		for _, t := range ts {
			key := ListenerName(t.Hostname, t.Port)
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b Target) int {
		return cmp.Or(strings.Compare(a.Hostname, b.Hostname), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// implicitExports are the global services MCS ServiceExports make: a Service exported
// by ServiceExport in any cluster forms <name>.<namespace>.svc.clusterset.local with the
// Service's ports, unless a GlobalService of that namespace and name exists.
func implicitExports(in Input, globals []model.GlobalService) []model.GlobalService {
	explicit := map[string]bool{}
	for _, g := range globals {
		explicit[g.Namespace+"/"+g.Name] = true
	}
	implicit := map[string]*model.GlobalService{}
	for _, c := range in.Clusters {
		for nn, s := range c.Services {
			if !slices.Contains(s.ExportedBy, model.ExportedByServiceExport) {
				continue
			}
			key := nn.String()
			if explicit[key] {
				continue
			}
			g := implicit[key]
			if g == nil {
				g = &model.GlobalService{Namespace: nn.Namespace, Name: nn.Name,
					Hostname: model.ClusterSetHostname(nn.Namespace, nn.Name),
					Service:  &model.ServiceRef{Namespace: nn.Namespace, Name: nn.Name}}
				implicit[key] = g
			}
			for _, p := range s.Ports {
				if !slices.ContainsFunc(g.Ports, func(q model.GlobalPort) bool { return q.Port == p.Port }) {
					g.Ports = append(g.Ports, model.GlobalPort{Name: p.Name, Port: p.Port, Protocol: "TCP"})
				}
			}
		}
	}
	var out []model.GlobalService
	for _, g := range implicit {
		slices.SortFunc(g.Ports, func(a, b model.GlobalPort) int { return int(a.Port - b.Port) })
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b model.GlobalService) int { return model.Compare(&a, &b) })
	return out
}

// localitiesOf returns cluster c's localities serving global port gp of g, and the
// member Services of c that serve it nothing, with the reason.
func localitiesOf(in Input, network string, c view.Cluster, g *model.GlobalService, gp model.GlobalPort, policy *model.Policy, tp *model.TrafficPolicy) ([]Locality, []Exclusion) {
	var excluded []Exclusion
	exclude := func(zone, reason string) {
		region := ""
		if c.Info != nil {
			region = c.Info.Region
		}
		excluded = append(excluded, Exclusion{Cluster: c.Name, Region: region, Zone: zone, Reason: reason})
	}
	// A whole cluster that serves nothing is listed once, if it has a member at all.
	var whole string
	state := locality.Fresh
	switch {
	case c.Info == nil:
		whole = "cluster not registered" // (not yet, or not any more): nothing to route to
	default:
		if state = freshness(in, c, policy); state == locality.Dropped {
			whole = "dropped cluster: no heartbeat for longer than dropAfter"
		}
	}
	var gateways []Endpoint
	remote := false
	if whole == "" {
		gateways, remote = gatewaysOf(in, network, c)
	}
	zones := map[string]*Locality{}
	for nn, s := range members(c, g) {
		if !model.Selects(g, c.Name, nn.Namespace, nn.Name, s.Labels) {
			if whole == "" && unauthorized(g, c.Name, nn, s) {
				exclude("", c.Name+" is not authorized to provide "+g.String()+" (its clusters: "+strings.Join(g.Clusters, ", ")+")")
			}
			continue
		}
		if whole != "" {
			exclude("", whole)
			return nil, excluded
		}
		// What admission refused of the record (package admit) is not served: each
		// refused group of endpoints is an exclusion.
		for _, r := range c.Refused[nn] {
			exclude(r.Zone, refusal(r))
		}
		sp, ok := model.MemberPort(s, gp)
		if !ok {
			exclude("", "Service "+nn.String()+" has "+noPort(gp))
			continue
		}
		n := 0
		for _, e := range s.Endpoints {
			port, ok := model.PortOf(e, sp)
			if !ok {
				continue
			}
			n++
			l := zones[e.Zone]
			if l == nil {
				l = &Locality{Cluster: c.Name, Region: c.Info.Region, Zone: e.Zone, Network: c.Info.Network, State: state}
				zones[e.Zone] = l
			}
			l.Total++
			subset := subsetOf(tp, c.Name, e.Labels)
			if hasSubsets(tp) {
				if l.Totals == nil {
					l.Totals = map[string]int{}
				}
				l.Totals[subset]++
			}
			if e.Ready {
				l.Healthy = append(l.Healthy, Endpoint{Address: e.Address, Port: port, Subset: subset})
			}
		}
		if n == 0 {
			exclude("", "Service "+nn.String()+" has no endpoints on port "+strconv.Quote(sp.Name))
		}
	}
	if g.Service != nil && whole == "" && (len(g.Clusters) == 0 || slices.Contains(g.Clusters, c.Name)) {
		// A record refused whole (beyond the cluster's MaxServices) is not among
		// its services, but is shown.
		nn := view.NamespacedName{Namespace: g.Service.Namespace, Name: g.Service.Name}
		if _, ok := c.Services[nn]; !ok {
			for _, r := range c.Refused[nn] {
				exclude(r.Zone, refusal(r))
			}
		}
	}
	out := make([]Locality, 0, len(zones))
	for _, l := range zones {
		if remote {
			l.Gateways = gateways
			if len(gateways) == 0 && len(l.Healthy) > 0 {
				l.Healthy = nil // no way in: every endpoint behind it is unreachable
				l.Withheld = "no reachable east-west gateway"
				if len(c.Info.Gateways) > 0 {
					l.Withheld = "east-west gateway unreachable (probe failed)"
				}
			}
		}
		slices.SortFunc(l.Healthy, func(a, b Endpoint) int {
			if c := strings.Compare(a.Address, b.Address); c != 0 {
				return c
			}
			return int(a.Port) - int(b.Port)
		})
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b Locality) int { return strings.Compare(a.Zone, b.Zone) })
	return out, excluded
}

// unauthorized reports whether g would select cluster's Service nn but does not
// name the cluster among the clusters that may provide it.
func unauthorized(g *model.GlobalService, cluster string, nn view.NamespacedName, s *model.ServiceEndpoints) bool {
	if len(g.Clusters) == 0 || slices.Contains(g.Clusters, cluster) {
		return false
	}
	open := *g
	open.Clusters = nil
	return model.Selects(&open, cluster, nn.Namespace, nn.Name, s.Labels)
}

// refusal is the reason an explanation gives for what admission refused.
func refusal(r admit.Rejection) string {
	if r.Count > 1 && !admit.PerRecord(r.Reason) {
		return r.Detail + " (" + strconv.Itoa(r.Count) + " endpoints)"
	}
	return r.Detail
}

// noPort says which port a member Service lacks, by the rule of model.MemberPort.
func noPort(gp model.GlobalPort) string {
	if gp.Name != "" {
		return "no port named " + strconv.Quote(gp.Name)
	}
	return "no port " + strconv.Itoa(int(gp.Port))
}

// members yields the cluster's services that g may select: the one it names, or those
// in its namespace, so that a fleet of services costs a lookup per cluster, not a scan.
func members(c view.Cluster, g *model.GlobalService) iter.Seq2[view.NamespacedName, *model.ServiceEndpoints] {
	return func(yield func(view.NamespacedName, *model.ServiceEndpoints) bool) {
		if g.Service != nil {
			nn := view.NamespacedName{Namespace: g.Service.Namespace, Name: g.Service.Name}
			if s, ok := c.Services[nn]; ok {
				yield(nn, s)
			}
			return
		}
		for nn, s := range c.Services {
			if nn.Namespace == g.Namespace && !yield(nn, s) {
				return
			}
		}
	}
}

// gatewaysOf reports whether cluster c is on another network than this cluster and,
// if so, its gateways that answer probes. Only IP addresses are used: a proxy's
// endpoint must be an address.
func gatewaysOf(in Input, self string, c view.Cluster) ([]Endpoint, bool) {
	if c.Info == nil || self == "" || c.Info.Network == self {
		return nil, false
	}
	var out []Endpoint
	for _, g := range c.Info.Gateways {
		ap, err := netip.ParseAddrPort(net.JoinHostPort(g.Address, strconv.Itoa(int(g.Port))))
		if err != nil {
			continue
		}
		if in.GatewayUp == nil || in.GatewayUp(ap) {
			out = append(out, Endpoint{Address: g.Address, Port: uint32(g.Port)})
		}
	}
	return out, true
}

func selfNetwork(in Input) string {
	for _, c := range in.Clusters {
		if c.Name == in.Self && c.Info != nil {
			return c.Info.Network
		}
	}
	return ""
}

// freshness judges a cluster by how long its heartbeat has not been seen written,
// counting only the time the hub could be read, under the policy's demote and drop
// times. It does not ask whether the heartbeat key still exists: its lease outlives
// the last write by up to a TTL, longer than a short demoteAfter. Agents write their
// heartbeat often enough for every policy's demoteAfter (see the agent's
// heartbeat interval), so a live cluster is never judged stale.
func freshness(in Input, c view.Cluster, policy *model.Policy) locality.State {
	return freshnessOf(in, c.Name, c.LastHeartbeat, policy)
}

// freshnessOf is the freshness of cluster name, whose heartbeat was last seen
// written at last (zero: never).
func freshnessOf(in Input, name string, last time.Time, policy *model.Policy) locality.State {
	if name == in.Self {
		return locality.Fresh
	}
	demote, drop := staleTimes(policy)
	since := last
	if since.IsZero() || since.Before(in.Since) {
		since = in.Since
	}
	lapsed := in.Now.Sub(since)
	if in.Offline != nil {
		lapsed -= in.Offline(since, in.Now)
	}
	switch {
	case lapsed >= drop:
		return locality.Dropped
	case lapsed >= demote:
		return locality.Stale
	}
	return locality.Fresh
}

// staleTimes are the policy's demoteAfter and dropAfter, with the defaults for a nil
// policy or unset fields.
func staleTimes(policy *model.Policy) (demote, drop time.Duration) {
	if policy == nil {
		policy = model.DefaultPolicy()
	}
	demote, drop = policy.DemoteAfter.Duration, policy.DropAfter.Duration
	if demote == 0 {
		demote = v1.DefaultDemoteAfter
	}
	if drop == 0 {
		drop = v1.DefaultDropAfter
	}
	return demote, drop
}

// FreshnessStates is every other cluster's freshness under each distinct pair of
// stale times among policies and the default, by cluster, from when each cluster's
// heartbeat was last seen written (view.Heartbeats): the server recomputes what a
// cluster serves when its states change, a timer rather than a rebuild per heartbeat.
func FreshnessStates(in Input, beats map[string]time.Time, policies []*model.Policy) map[string]string {
	timings := []*model.Policy{nil}
	seen := map[[2]time.Duration]bool{}
	for _, p := range append([]*model.Policy{nil}, policies...) {
		demote, drop := staleTimes(p)
		if !seen[[2]time.Duration{demote, drop}] {
			seen[[2]time.Duration{demote, drop}] = true
			if p != nil {
				timings = append(timings, p)
			}
		}
	}
	out := make(map[string]string, len(beats))
	states := make([]byte, len(timings))
	for name, last := range beats {
		if name == in.Self {
			continue
		}
		for i, p := range timings {
			states[i] = byte('0' + freshnessOf(in, name, last, p))
		}
		out[name] = string(states)
	}
	return out
}
