package xds

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/internal/xdsnames"
)

// What a rebuild recomputes. The view tells the server the key of every change
// (dirty); a rebuild recomputes the targets of the global services those keys can
// change (affects) and nothing else, and for every group the load assignments of the
// targets whose served form changed. A heartbeat changes nothing unless it changes a
// cluster's freshness state, and then it changes what that cluster serves.

// dirty is what changed in the view since the last rebuild.
type dirty struct {
	// all: recompute everything (a gateway's probe changed, a test asked).
	all bool
	// clusters changed whole: registration, freshness state, or every record at once.
	clusters map[string]bool
	// services are member Service records (of any cluster) that changed, and
	// records the same with their cluster.
	services map[view.NamespacedName]bool
	records  map[record]bool
	// self: this cluster's own records changed (its server listeners).
	self bool
	// globals and policies changed, by key.
	globals  map[string]bool
	policies map[view.NamespacedName]bool
	// authz are the namespaces whose AuthorizationPolicies changed.
	authz map[string]bool
	// namespaces of the changed global services, before and after, that name the
	// clusters allowed to provide them: such a change changes which records of its
	// namespaces the view admits (the view's reauthorization).
	namespaces map[string]bool
	// tags: a traffic or authorization policy changed, so the policy tags of what is
	// served (feedback.go) are computed again.
	tags bool
}

// record is one cluster's record of a Service.
type record struct {
	cluster string
	nn      view.NamespacedName
}

func newDirty() dirty {
	return dirty{clusters: map[string]bool{}, services: map[view.NamespacedName]bool{}, records: map[record]bool{}, globals: map[string]bool{},
		policies: map[view.NamespacedName]bool{}, namespaces: map[string]bool{}, authz: map[string]bool{}}
}

func (d *dirty) empty() bool {
	return !d.all && !d.self && !d.tags && len(d.clusters) == 0 && len(d.services) == 0 && len(d.globals) == 0 && len(d.policies) == 0 &&
		len(d.authz) == 0 && len(d.namespaces) == 0
}

// add records a change of key k; self is this agent's cluster. It reports whether k
// can change what proxies are served: trust, certificates and markers cannot.
func (d *dirty) add(k keyspace.Key, self string) bool {
	nn := view.NamespacedName{Namespace: k.Namespace, Name: k.Name}
	switch k.Kind {
	case keyspace.KindServiceEndpoints:
		d.self = d.self || k.Cluster == self
		if k.Namespace == "" && k.Name == "" {
			d.clusters[k.Cluster] = true // every record of the cluster (its informers' first pass)
		} else {
			d.services[nn] = true
			d.records[record{k.Cluster, nn}] = true
		}
	case keyspace.KindClusterInfo:
		d.clusters[k.Cluster] = true
		// This cluster's own registration decides its groups' region and zones, and
		// what of its own records is admitted.
		d.all = d.all || k.Cluster == self
	case keyspace.KindGlobalService:
		d.globals[nn.String()] = true
	case keyspace.KindPolicy:
		d.policies[nn] = true
	case keyspace.KindAuthorizationPolicy:
		// It may change any global service of its namespace (the one a deleted or
		// retargeted policy applied to too): their servers' route configurations.
		d.authz[k.Namespace] = true
		d.tags = true
	case keyspace.KindTrafficPolicy:
		// It may change any global service of its namespace (see view.TrafficPolicy).
		d.namespaces[k.Namespace] = true
		d.tags = true
	default:
		return false
	}
	return true
}

// affects reports whether g's targets may have changed.
func (d *dirty) affects(g *model.GlobalService) bool {
	switch {
	case d.all || len(d.clusters) > 0 || d.globals[g.String()] || d.namespaces[g.Namespace]:
		return true
	case g.Service != nil && d.namespaces[g.Service.Namespace]:
		return true
	case g.Policy != "" && d.policies[view.NamespacedName{Namespace: g.Namespace, Name: g.Policy}]:
		return true
	case g.Service != nil:
		return d.services[view.NamespacedName{Namespace: g.Service.Namespace, Name: g.Service.Name}]
	}
	for nn := range d.services { // a selector: any Service of its namespace
		if nn.Namespace == g.Namespace {
			return true
		}
	}
	return false
}

// onlyRecords are the clusters whose parts of g's targets must be recomputed when
// the changes are records only and g itself is unchanged: those whose records of its
// member Services changed. nil: recompute every cluster's part.
func (d *dirty) onlyRecords(g *model.GlobalService) map[string]bool {
	if d.all || len(d.clusters) > 0 || d.globals[g.String()] || d.namespaces[g.Namespace] ||
		(g.Service != nil && d.namespaces[g.Service.Namespace]) ||
		(g.Policy != "" && d.policies[view.NamespacedName{Namespace: g.Namespace, Name: g.Policy}]) {
		return nil
	}
	redo := map[string]bool{}
	for r := range d.records {
		if (g.Service != nil && r.nn.Namespace == g.Service.Namespace && r.nn.Name == g.Service.Name) ||
			(g.Service == nil && r.nn.Namespace == g.Namespace) {
			redo[r.cluster] = true
		}
	}
	return redo
}

// globalEntry is a global service and the targets last computed for it.
type globalEntry struct {
	global  model.GlobalService
	targets []Target
	parts   []map[string]part // by port, by cluster (globalTargetsFrom)
}

// servedTarget is a target as computed (raw) and as served (after failback holds),
// and when its earliest hold ends (zero: none).
type servedTarget struct {
	raw, served Target
	holdEnd     time.Time
	pieces      *pieces // its localities' endpoints, serialized
}

// groupBuilt is what a group was last served: its clients' load assignments by
// cluster name, and the set published (with the gateway's).
type groupBuilt struct {
	cla map[string]*resource
	// subsets are the names of the subsets' load assignments in cla, by target
	// listener name (setSubsets).
	subsets map[string][]string
}

// mark records a change of the view (Subscribe's callback) and wakes the loop if it
// can change what is served.
func (s *Server) mark(k keyspace.Key, t time.Time) {
	var rec *model.ServiceEndpoints
	if k.Kind == keyspace.KindServiceEndpoints && k.Name != "" {
		rec = s.opts.View.Service(k.Cluster, k.Namespace, k.Name)
	}
	// Under mu with the key, so that the rebuild that takes the key takes the change.
	s.mu.Lock()
	s.prop.written(k.Cluster, rec)
	ok := s.dirty.add(k, s.opts.Cluster)
	s.mu.Unlock()
	if ok {
		s.poke(t)
	}
}

// pokeAll schedules a rebuild of everything for a change seen at t.
func (s *Server) pokeAll(t time.Time) {
	s.mu.Lock()
	s.dirty.all = true
	s.mu.Unlock()
	s.poke(t)
}

// rebuild recomputes what changed since the last one and publishes it: the targets
// of the global services the changes affect, the shared resources if their
// hostnames, ports, accounts or this cluster's server addresses changed, and for
// every group the load assignments of the targets whose served form changed.
func (s *Server) rebuild(ctx context.Context, start time.Time) error {
	s.mu.Lock()
	changed := s.changed
	s.changed = time.Time{}
	d := s.dirty
	s.dirty = newDirty()
	taken := s.prop.take() // under mu with dirty: the changes this rebuild carries
	groups := make([]Group, 0, len(s.groups))
	newGroup := false
	for _, g := range s.groups {
		groups = append(groups, g.Group)
		newGroup = newGroup || s.built[g.key()] == nil
	}
	s.mu.Unlock()

	now := s.opts.Clock.Now()
	in := Input{Self: s.opts.Cluster, Since: s.since, Now: now, Offline: s.opts.View.Offline}
	fresh := FreshnessStates(in, s.opts.View.Heartbeats(), s.opts.View.Policies())
	for name, st := range fresh {
		if s.fresh[name] != st {
			d.clusters[name] = true
		}
	}
	for name := range s.fresh {
		if _, ok := fresh[name]; !ok {
			d.clusters[name] = true
		}
	}
	s.fresh = fresh
	holdsDue := !s.holdEnd.IsZero() && !now.Before(s.holdEnd)
	if d.empty() && !holdsDue && !newGroup && s.shared != nil {
		observePropagation(taken, time.Now()) // what changed, if anything, changes nothing served
		return nil                            // nothing a proxy sees can have changed
	}
	in = s.input(now)

	// The targets of the global services the changes affect.
	if s.implicit == nil || !d.exportsUnchanged(s.opts.View, s.implicit) {
		s.implicit = append([]model.GlobalService{}, implicitExports(in, in.Globals)...) // never nil once computed
	}
	globals := append(slices.Clone(in.Globals), s.implicit...)
	current := make(map[string]*model.GlobalService, len(globals))
	for i := range globals {
		current[globals[i].String()] = &globals[i]
	}
	for key := range d.globals {
		old, g := s.globalOf(key), current[key]
		if (old == nil || len(old.Clusters) == 0) && (g == nil || len(g.Clusters) == 0) {
			continue // the view admits the same records as before
		}
		for _, g := range []*model.GlobalService{old, g} {
			if g != nil {
				d.namespaces[g.Namespace] = true
				if g.Service != nil {
					d.namespaces[g.Service.Namespace] = true
				}
			}
		}
	}
	network := selfNetwork(in)
	per := make([][]Target, len(globals))
	recomputed := map[string]bool{}
	next := make(map[string]globalEntry, len(globals))
	for i := range globals {
		g := &globals[i]
		key := g.String()
		old, ok := s.perGlobal[key]
		if ok && !d.affects(g) {
			per[i], next[key] = old.targets, old
			continue
		}
		e := globalEntry{global: *g}
		var prev []map[string]part
		if ok && reflect.DeepEqual(old.global, *g) { // (an implicit one's ports follow its records)
			prev = old.parts
		}
		e.targets, e.parts = globalTargetsFrom(in, network, g, prev, d.onlyRecords(g))
		per[i], next[key] = e.targets, e
		recomputed[key] = true
	}
	s.perGlobal = next
	targets := merge(per)

	// Failback holds, and which targets are served differently.
	served := make([]Target, len(targets))
	var changedNames []string
	var removed []Target
	present := make(map[string]bool, len(targets))
	s.holdEnd = time.Time{}
	for i, t := range targets {
		name := ListenerName(t.Hostname, t.Port)
		present[name] = true
		st := s.targets[name]
		due := st != nil && !st.holdEnd.IsZero() && !now.Before(st.holdEnd)
		if st == nil || due || recomputed[t.Namespace+"/"+t.Name] || st.raw.Namespace != t.Namespace || st.raw.Name != t.Name {
			sv, end := s.hold.apply(t, now)
			next := &servedTarget{raw: t, served: sv, holdEnd: end, pieces: &pieces{byLocality: map[pieceKey]*piece{}}}
			if st != nil {
				next.pieces = st.pieces
				if !sameServed(st.served, sv) {
					next.pieces = st.pieces.next()
					changedNames = append(changedNames, name)
				}
			} else {
				changedNames = append(changedNames, name)
			}
			st = next
			s.targets[name] = st
		}
		served[i] = st.served
		if !st.holdEnd.IsZero() && (s.holdEnd.IsZero() || st.holdEnd.Before(s.holdEnd)) {
			s.holdEnd = st.holdEnd
		}
	}
	for name := range s.targets {
		if !present[name] {
			removed = append(removed, s.targets[name].served)
			delete(s.targets, name)
			s.hold.forget(name)
		}
	}
	s.mu.Lock()
	s.served = served
	s.mu.Unlock()

	var errs []error
	// The east-west gateway's load assignments, shared by every group: a new set when
	// they change, as sets once published are never modified.
	if len(changedNames) > 0 || len(removed) > 0 {
		s.gateway = &resources{version: s.build.next(), byName: maps.Clone(s.gateway.byName)}
	}
	for _, name := range changedNames {
		t := s.targets[name].served
		sni := xdsnames.SNI(t.Hostname, t.Port)
		r, err := s.build.make(gatewayAssignment(s.opts.Cluster, t))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.gateway.byName[sni] = r
	}
	for _, t := range removed {
		delete(s.gateway.byName, xdsnames.SNI(t.Hostname, t.Port))
	}

	// Every group's load assignments: those of changed targets, or all for a group
	// not built yet. They are published before the clusters that name them.
	pushed := 0
	placers := map[string]*placer{} // by listener name, for every group
	for _, g := range groups {
		key := g.key()
		prev := s.built[key]
		if prev != nil && len(changedNames) == 0 && len(removed) == 0 {
			continue
		}
		client := Client{Cluster: s.opts.Cluster, Region: g.Region, Zone: g.Zone}
		b := &groupBuilt{}
		var subsetNames []string // of subsets' load assignments set or removed
		build := changedNames
		if prev == nil {
			b.cla = make(map[string]*resource, len(served))
			build = make([]string, 0, len(served))
			for _, t := range served {
				build = append(build, ListenerName(t.Hostname, t.Port))
			}
		} else {
			b.cla, b.subsets = maps.Clone(prev.cla), maps.Clone(prev.subsets)
			for _, t := range removed {
				delete(b.cla, ClusterName(t.Hostname, t.Port))
				subsetNames = append(subsetNames, b.setSubsets(ListenerName(t.Hostname, t.Port), nil)...)
			}
		}
		for _, name := range build {
			st := s.targets[name]
			t := st.served
			pl := placers[name]
			if pl == nil {
				pl = newPlacer(t)
				placers[name] = pl
			}
			r, err := s.build.assemble(t.Hostname, t.Port, pl.place(pl.table(client, t)), st.pieces)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			b.cla[ClusterName(t.Hostname, t.Port)] = r
			subs, e := s.build.subsetAssignments(client, t)
			errs = append(errs, e...)
			subsetNames = append(subsetNames, b.setSubsets(name, subs)...)
		}
		s.assignments.Add(int64(len(build)))
		builtAssignments.Add(float64(len(build)))
		rs := &resources{version: s.build.next(), byName: b.cla, also: s.gateway}
		s.built[key] = b
		var names []string // of what changed; nil for a group built whole
		if prev != nil {
			names = make([]string, 0, 2*(len(build)+len(removed)))
			for _, name := range build {
				t := s.targets[name].served
				names = append(names, ClusterName(t.Hostname, t.Port), xdsnames.SNI(t.Hostname, t.Port))
			}
			for _, t := range removed {
				names = append(names, ClusterName(t.Hostname, t.Port), xdsnames.SNI(t.Hostname, t.Port))
			}
			names = append(names, subsetNames...)
		}
		s.cache.setEndpoints(key, rs, names)
		pushed++
		if !changed.IsZero() {
			s.mu.Lock()
			s.pending[key] = pendingAck{version: versionString(rs.version), changed: changed}
			s.mu.Unlock()
		}
	}

	for _, name := range changedNames {
		s.targets[name].pieces.forget()
	}

	// The shared resources, if their inputs changed.
	if d.self || d.all || s.shared == nil {
		s.servers = s.serverAddrs()
	}
	if d.self || d.all || s.shared == nil || len(d.globals) > 0 || len(d.authz) > 0 {
		s.inbound = s.inboundAuthz(globals, s.servers)
	}
	if !sameShared(s.shared, served, s.servers, s.opts.MTLS) || !s.shared.sameInbound(s.servers, s.inbound) {
		sh, accounts, e := s.build.buildShared(s.shared, served, s.servers, s.inbound, s.trustDomain())
		errs = append(errs, e...)
		s.reportIdentities(served, accounts)
		s.shared = sh
		sh.publish(s.cache)
		pushed++
	}

	s.fb.setTags(s.tagPolicies(served, s.servers), s.shared)

	if pushed > 0 && !changed.IsZero() {
		buildLatency.Observe(time.Since(changed).Seconds())
	}
	observePropagation(taken, time.Now())
	rebuildDuration.Observe(time.Since(start).Seconds())
	s.rebuilds.Add(1)
	s.recomputed.Add(int64(len(recomputed)))
	recomputedGlobals.Add(float64(len(recomputed)))
	return errors.Join(errs...)
}

// exportsUnchanged reports whether the changes leave the global services of MCS
// ServiceExports as they were (implicit): no cluster's registration, no
// GlobalService and no record that is, or was, exported by a ServiceExport changed.
// Computing them scans every record of the fleet.
func (d *dirty) exportsUnchanged(v *view.View, implicit []model.GlobalService) bool {
	if d.all || len(d.clusters) > 0 || len(d.globals) > 0 {
		return false
	}
	for r := range d.records {
		if rec := v.Service(r.cluster, r.nn.Namespace, r.nn.Name); rec != nil && slices.Contains(rec.ExportedBy, model.ExportedByServiceExport) {
			return false
		}
		for _, g := range implicit {
			if g.Namespace == r.nn.Namespace && g.Name == r.nn.Name {
				return false
			}
		}
	}
	return true
}

// globalOf is the global service key was last computed from, nil if none.
func (s *Server) globalOf(key string) *model.GlobalService {
	if e, ok := s.perGlobal[key]; ok {
		return &e.global
	}
	return nil
}
