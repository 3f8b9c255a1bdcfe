package view

import (
	"maps"
	"slices"
	"time"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// An agent's View holds more than the store: its own cluster's services straight from
// its informers, a snapshot of an earlier run to serve before the hub answers, and
// the times the hub could not be read, so that a hub outage says nothing about other
// clusters.

// LocalUpsert sets a service of Self as its own informers see it. key is the
// service's key in the store (keyspace.ServiceEndpoints of Self).
func (v *View) LocalUpsert(key string, rec *model.ServiceEndpoints) { v.local1(key, rec) }

// LocalDelete removes a service of Self as its own informers see it.
func (v *View) LocalDelete(key string) { v.local1(key, nil) }

func (v *View) local1(key string, rec *model.ServiceEndpoints) {
	k, err := keyspace.Parse(key)
	if err != nil || k.Kind != keyspace.KindServiceEndpoints || k.Cluster != v.self {
		return // the publisher builds only Self's service keys; unreachable
	}
	nn := NamespacedName{k.Namespace, k.Name}
	v.mu.Lock()
	m := v.local
	if m == nil {
		m = v.localPending
	}
	if rec == nil {
		delete(m, nn)
	} else {
		m[nn] = rec
	}
	if v.local != nil {
		v.ownLocal()
		if rec == nil {
			delete(v.localServed, nn)
		} else {
			v.localServed[nn] = v.admitLocal(rec)
		}
	}
	if v.local == nil {
		v.mu.Unlock()
		return // not served before LocalSynced: a partial set would drop services
	}
	v.notify(k)
}

// LocalSynced says the informers' first complete pass is in: from now on, Self's
// services are the informers', whatever the store holds.
func (v *View) LocalSynced() {
	v.mu.Lock()
	if v.local != nil {
		v.mu.Unlock()
		return
	}
	v.local = v.localPending
	v.localPending = nil
	v.readmitLocal()
	v.notify(keyspace.Key{Kind: keyspace.KindServiceEndpoints, Cluster: v.self})
}

// Restored describes what a Restore loaded.
type Restored struct {
	// Revision is the store's revision the snapshot reflects, and SavedAt when it was
	// taken.
	Revision int64     `json:"revision"`
	SavedAt  time.Time `json:"savedAt"`
	// Keys is how many records it held.
	Keys int `json:"keys"`
}

// Restore loads records (by store key) saved by an earlier run, when the View holds
// no complete list of the store yet, and reports whether it did. The View is then
// synced (HasSynced) but not live (HasLive): the first complete list of the store
// replaces what Restore loaded. Heartbeats loaded count as never seen: freshness
// starts from now.
func (v *View) Restore(info Restored, records map[string]model.Record) bool {
	v.mu.Lock()
	if closed(v.live) || closed(v.synced) {
		v.mu.Unlock()
		return false
	}
	v.mu.Unlock()
	for _, key := range slices.Sorted(maps.Keys(records)) {
		k, err := keyspace.Parse(key)
		if err != nil {
			continue
		}
		v.mu.Lock()
		if closed(v.live) {
			v.mu.Unlock()
			return false // the store answered meanwhile: it wins
		}
		v.unconfirmed[key] = struct{}{}
		v.apply(k, records[key], false)
	}
	v.mu.Lock()
	info.Keys = len(records)
	v.restore = info
	closeOnce(v.synced)
	v.mu.Unlock()
	return true
}

// RestoredFrom returns what Restore loaded, and whether the View still serves some
// of it (no complete list of the store has replaced it yet).
func (v *View) RestoredFrom() (Restored, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.restore, v.restore.Keys > 0 && !closed(v.live)
}

// Records returns every record the View holds from the store, by key: what an agent
// saves to restore from. Self's informers' services are not among them.
func (v *View) Records() map[string]model.Record {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := map[string]model.Record{}
	v.eachRecord(func(key string, rec model.Record) { out[key] = rec })
	return out
}

// eachRecord calls fn with every record the View holds from the store and its key.
// The caller holds v.mu.
func (v *View) eachRecord(fn func(key string, rec model.Record)) {
	for nn, g := range v.globals {
		fn(keyspace.GlobalService(nn.Namespace, nn.Name), g)
	}
	for nn, p := range v.policies {
		fn(keyspace.Policy(nn.Namespace, nn.Name), p)
	}
	for nn, p := range v.traffic {
		fn(keyspace.TrafficPolicy(nn.Namespace, nn.Name), p)
	}
	for nn, p := range v.authz {
		fn(keyspace.AuthorizationPolicy(nn.Namespace, nn.Name), p)
	}
	if v.bundle != nil {
		fn(keyspace.TrustBundle(), v.bundle)
	}
	if v.hubReady != nil {
		fn(keyspace.HubReady(), v.hubReady)
	}
	for name, c := range v.clusters {
		if c.Info != nil {
			fn(keyspace.ClusterInfo(name), c.Info)
		}
		if c.Heartbeat != nil {
			fn(keyspace.ClusterHeartbeat(name), c.Heartbeat)
		}
		if c.Synced != nil {
			fn(keyspace.ClusterSynced(name), c.Synced)
		}
		if c.IntermediateCSR != nil {
			fn(keyspace.ClusterIntermediateCSR(name), c.IntermediateCSR)
		}
		if c.Intermediate != nil {
			fn(keyspace.ClusterIntermediate(name), c.Intermediate)
		}
		if c.EtcdCSR != nil {
			fn(keyspace.ClusterEtcdCSR(name), c.EtcdCSR)
		}
		if c.EtcdCert != nil {
			fn(keyspace.ClusterEtcdCert(name), c.EtcdCert)
		}
		if c.Programmed != nil {
			fn(keyspace.ClusterProgrammed(name), c.Programmed)
		}
	}
	for name, p := range v.published {
		for nn, e := range p.raw {
			fn(keyspace.ServiceEndpoints(name, nn.Namespace, nn.Name), e.rec)
		}
	}
}

// contact is the record of the hub's outages as this process saw them.
type contact struct {
	outages []outage  // oldest first; the last has a zero end while it lasts
	lastOK  time.Time // when the hub was last read
}

type outage struct{ start, end time.Time }

// maxOutages bounds the record: older outages are forgotten, which can only make a
// long-silent cluster look staler than it is.
const maxOutages = 64

// SetHubReachable records whether the hub's store can be read now. An outage is
// taken to have started when the hub was last read, not when a probe gave up on it:
// what lapsed between the two says nothing about other clusters either.
func (v *View) SetHubReachable(ok bool) {
	now := v.clock.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	o := v.contact.outages
	ongoing := len(o) > 0 && o[len(o)-1].end.IsZero()
	if ok {
		v.contact.lastOK = now
	}
	switch {
	case ok && ongoing:
		o[len(o)-1].end = now
	case !ok && !ongoing:
		start := now
		if !v.contact.lastOK.IsZero() {
			start = v.contact.lastOK
		}
		o = append(o, outage{start: start})
		if len(o) > maxOutages {
			o = slices.Delete(o, 0, len(o)-maxOutages)
		}
		v.contact.outages = o
	}
}

// HubReachable reports whether the last word on the hub was that it can be read.
func (v *View) HubReachable() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	o := v.contact.outages
	return len(o) == 0 || !o[len(o)-1].end.IsZero()
}

// Offline returns how much of [from, to] the hub could not be read. A cluster's
// heartbeat lapses only while the hub can be read: that this process cannot read
// the hub says nothing about other clusters.
func (v *View) Offline(from, to time.Time) time.Duration {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var d time.Duration
	for _, o := range v.contact.outages {
		end := o.end
		if end.IsZero() {
			end = to
		}
		s, e := o.start, end
		if s.Before(from) {
			s = from
		}
		if e.After(to) {
			e = to
		}
		if e.After(s) {
			d += e.Sub(s)
		}
	}
	return d
}

// initialContact: until an agent first reads the hub, the hub counts as unreachable
// since the View was made, so that a process that starts during an outage judges no
// one. The hub's own View (no Self) keeps no record.
func initialContact(opts Options) contact {
	if opts.Self == "" {
		return contact{}
	}
	return contact{outages: []outage{{start: opts.Clock.Now()}}}
}
