package view

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/meshfed/meshfed/internal/etcd/admit"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// Admission: a member cluster's records are claims, checked against the hub-written
// ClusterInfo of the cluster that wrote them (package admit). The View keeps every
// service record the store holds as it was written (published.raw: what Digest,
// Records and snapshots cover) and serves what admission kept of it
// (Cluster.Services): the first MaxServices records in key order, each without the
// endpoints the cluster may not claim. A record that arrives before its cluster's
// info is served as written (no ClusterInfo: every reader excludes the cluster
// anyway) and admitted when the info arrives; an info whose zones, address ranges or
// limits change re-admits the cluster's records. A value larger than the cluster's
// MaxValueBytes is refused before it is decoded (Decode).

// published is what the store holds of one cluster's records, for admission.
type published struct {
	raw   map[NamespacedName]*entry
	order []NamespacedName // the keys of raw, sorted
	// tooLarge is the size of every member-written value refused for its size, by key.
	tooLarge map[string]int
	// tally counts what admission refuses of raw, by reason (TooManyServices and
	// RecordTooLarge aside: they follow from order and tooLarge).
	tally map[string]int
	// reported is the last count by reason the View reported (metrics, logs).
	reported map[string]int
}

// entry is one service record of a cluster as the store holds it, and what
// admission makes of it.
type entry struct {
	rec      *model.ServiceEndpoints
	admitted *model.ServiceEndpoints
	rejected []admit.Rejection
	// unauthorized, when set, says which global service the record may not serve.
	unauthorized string
}

func (p *published) empty() bool { return len(p.raw) == 0 && len(p.tooLarge) == 0 }

func (p *published) count(e *entry, sign int) {
	for _, r := range e.rejected {
		p.tally[r.Reason] += sign * r.Count
	}
	if e.unauthorized != "" {
		p.tally[admit.ServiceNotAuthorized] += sign
	}
}

func (v *View) publishedOf(cluster string) *published {
	p := v.published[cluster]
	if p == nil {
		p = &published{raw: map[NamespacedName]*entry{}, tooLarge: map[string]int{}, tally: map[string]int{}, reported: map[string]int{}}
		v.published[cluster] = p
	}
	return p
}

// decode is model.Decode; tests count its calls.
var decode = model.Decode

// Decode is the decoder of the View's kvstore.Reader: model.Decode, except that a
// value a member cluster wrote that is larger than the cluster's MaxValueBytes is
// never decoded. It fails with an error wrapping kvstore.ErrRefused, the View stops
// serving whatever it held for the key, and reports the value (RecordTooLarge) until
// a version within the limit replaces it or the key is deleted. When the limit
// changes the View asks for a resync (SetResync), so that every value is judged
// again.
func (v *View) Decode(key string, value []byte) (model.Record, error) {
	k, err := keyspace.Parse(key)
	if err == nil && admit.MemberWritten(k.Kind) {
		v.mu.Lock()
		var info *model.ClusterInfo
		if c := v.clusters[k.Cluster]; c != nil {
			info = c.Info
		}
		limit := admit.LimitsOf(info).ValueBytes
		if len(value) > limit {
			p := v.publishedOf(k.Cluster)
			p.tooLarge[key] = len(value)
			v.report(k.Cluster)
			err := fmt.Errorf("%w: %s: value of %d bytes exceeds cluster %s's limit of %d bytes",
				kvstore.ErrRefused, key, len(value), k.Cluster, limit)
			if ver, ok := v.versions[key]; ok && ver.rec != nil {
				v.held(key, nil)
				v.apply(k, nil, true)
				return nil, err
			}
			v.mu.Unlock()
			return nil, err
		}
		v.clearTooLarge(k, key)
		v.mu.Unlock()
	}
	return decode(key, value)
}

// clearTooLarge forgets that key's value was refused for its size. The caller holds
// v.mu.
func (v *View) clearTooLarge(k keyspace.Key, key string) {
	if p := v.published[k.Cluster]; p != nil {
		if _, ok := p.tooLarge[key]; ok {
			delete(p.tooLarge, key)
			v.report(k.Cluster)
			v.forget(k.Cluster)
		}
	}
}

// SetResync gives the View the function that makes its Reader deliver every key
// again (kvstore.Reader.Resync): called when a cluster's MaxValueBytes changes, so
// that values refused for their size, or held and now over the limit, are judged
// again. Call it before the Reader runs.
func (v *View) SetResync(fn func()) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.resync = fn
}

// upsertService stores a service record of cluster c as the store holds it (rec nil:
// deleted) and updates what c serves. The caller holds v.mu.
func (v *View) upsertService(c *Cluster, nn NamespacedName, rec *model.ServiceEndpoints) {
	p := v.publishedOf(c.Name)
	limit := admit.LimitsOf(c.Info).Services
	old := p.raw[nn]
	if old != nil {
		p.count(old, -1)
	}
	i, found := slices.BinarySearchFunc(p.order, nn, compareNN)
	if rec == nil {
		if !found {
			return
		}
		delete(p.raw, nn)
		p.order = slices.Delete(p.order, i, i+1)
		v.own(c)
		delete(c.Services, nn)
		delete(c.Refused, nn)
		if i < limit && len(p.order) >= limit {
			v.serve(c, p, p.order[limit-1]) // the first record beyond the limit moves in
			v.alsoChanged(c.Name, p.order[limit-1])
		}
		v.report(c.Name)
		v.forget(c.Name)
		return
	}
	e := v.admitEntry(c, nn, rec)
	p.raw[nn] = e
	p.count(e, +1)
	if !found {
		p.order = slices.Insert(p.order, i, nn)
		if i < limit && len(p.order) > limit {
			v.serve(c, p, p.order[limit]) // pushed beyond the limit
			v.alsoChanged(c.Name, p.order[limit])
		}
	}
	v.serve(c, p, nn)
	v.report(c.Name)
}

// alsoChanged tells the subscribers, with the key being applied, that cluster's
// record nn is served differently too (it crossed its cluster's service limit). The
// caller holds v.mu.
func (v *View) alsoChanged(cluster string, nn NamespacedName) {
	v.also = append(v.also, keyspace.Key{Kind: keyspace.KindServiceEndpoints, Cluster: cluster, Namespace: nn.Namespace, Name: nn.Name})
}

// forget drops the cluster's admission state once it holds nothing. The caller
// holds v.mu.
func (v *View) forget(cluster string) {
	if p := v.published[cluster]; p != nil && p.empty() {
		delete(v.published, cluster)
	}
}

func compareNN(a, b NamespacedName) int {
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}

// admitEntry admits one record of cluster c. The caller holds v.mu.
func (v *View) admitEntry(c *Cluster, nn NamespacedName, rec *model.ServiceEndpoints) *entry {
	e := &entry{rec: rec, admitted: rec}
	if c.Info != nil {
		e.admitted, e.rejected = admit.Record(c.Info, rec)
	}
	e.unauthorized = v.authorization(c.Name, nn, rec)
	return e
}

// serve sets what c serves for nn from its entry, by its place in key order. The
// caller holds v.mu.
func (v *View) serve(c *Cluster, p *published, nn NamespacedName) {
	e := p.raw[nn]
	limit := admit.LimitsOf(c.Info).Services
	i, _ := slices.BinarySearchFunc(p.order, nn, compareNN)
	v.own(c)
	if i >= limit {
		delete(c.Services, nn)
		c.Refused[nn] = []admit.Rejection{{Reason: admit.TooManyServices, Count: 1,
			Detail: fmt.Sprintf("%s publishes %d services, beyond its limit of %d", c.Name, len(p.order), limit)}}
		return
	}
	c.Services[nn] = e.admitted
	if len(e.rejected) > 0 {
		c.Refused[nn] = e.rejected
	} else {
		delete(c.Refused, nn)
	}
}

// readmit admits every record of c again, after its info changed. The caller holds
// v.mu.
func (v *View) readmit(c *Cluster) {
	p := v.published[c.Name]
	if p != nil {
		clear(p.tally)
		c.Services, c.Refused = map[NamespacedName]*model.ServiceEndpoints{}, map[NamespacedName][]admit.Rejection{}
		v.cloned[c.Name] = v.lends.Load()
		for _, nn := range p.order {
			e := v.admitEntry(c, nn, p.raw[nn].rec)
			p.raw[nn] = e
			p.count(e, +1)
			v.serve(c, p, nn)
		}
		v.report(c.Name)
	}
	if c.Name == v.self {
		v.readmitLocal()
	}
}

// admissionChanged reports whether a new info of a cluster changes what admission
// decides.
func admissionChanged(old, new *model.ClusterInfo) bool {
	if old == nil || new == nil {
		return old != new
	}
	return !slices.Equal(old.Zones, new.Zones) || !slices.Equal(old.AddressRanges, new.AddressRanges) ||
		old.Limits != new.Limits || old.Name != new.Name
}

// authorization returns, if a global service selects cluster's record nn but does
// not name the cluster among its clusters, why the record contributes nothing to
// it; "" otherwise. The caller holds v.mu.
func (v *View) authorization(cluster string, nn NamespacedName, rec *model.ServiceEndpoints) string {
	excludes := func(gn NamespacedName) bool {
		g := v.globals[gn]
		if len(g.Clusters) == 0 || slices.Contains(g.Clusters, cluster) {
			return false
		}
		open := *g
		open.Clusters = nil
		return model.Selects(&open, cluster, nn.Namespace, nn.Name, rec.Labels)
	}
	// Most records are refused by no global service: find out without sorting, on
	// every upsert; name the first in key order only when there is one.
	found := false
	for gn := range v.globals {
		if found = excludes(gn); found {
			break
		}
	}
	if !found {
		return ""
	}
	for _, gn := range slices.SortedFunc(maps.Keys(v.globals), compareNN) {
		if excludes(gn) {
			g := v.globals[gn]
			return fmt.Sprintf("%s is not among the clusters of global service %s (%s)", cluster, g, strings.Join(g.Clusters, ", "))
		}
	}
	return ""
}

// reauthorize judges again every record a global service may select, in namespaces
// (old and new versions of the global service). The caller holds v.mu.
func (v *View) reauthorize(namespaces ...string) {
	for cluster, p := range v.published {
		changed := false
		for nn, e := range p.raw {
			if !slices.Contains(namespaces, nn.Namespace) {
				continue
			}
			why := v.authorization(cluster, nn, e.rec)
			if why == e.unauthorized {
				continue
			}
			p.count(e, -1)
			ne := *e
			ne.unauthorized = why
			p.raw[nn] = &ne
			p.count(&ne, +1)
			changed = true
		}
		if changed {
			v.report(cluster)
		}
	}
}

// globalNamespaces are the namespaces whose records g may select.
func globalNamespaces(g *model.GlobalService) []string {
	if g == nil {
		return nil
	}
	out := []string{g.Namespace}
	if g.Service != nil {
		out = append(out, g.Service.Namespace)
	}
	return out
}

// counts is what the View refuses of a cluster now, by reason. The caller holds v.mu.
func (v *View) counts(cluster string) map[string]int {
	p := v.published[cluster]
	out := map[string]int{}
	if p == nil {
		return out
	}
	for reason, n := range p.tally {
		if n > 0 {
			out[reason] = n
		}
	}
	var info *model.ClusterInfo
	if c := v.clusters[cluster]; c != nil {
		info = c.Info
	}
	if n := len(p.order) - admit.LimitsOf(info).Services; n > 0 {
		out[admit.TooManyServices] = n
	}
	if len(p.tooLarge) > 0 {
		out[admit.RecordTooLarge] = len(p.tooLarge)
	}
	return out
}

// report updates the metrics of cluster's refusals and logs when the reasons it is
// refused for change (not each count: a resync or a flood of records logs nothing
// new). The caller holds v.mu.
func (v *View) report(cluster string) {
	p := v.published[cluster]
	if p == nil {
		return
	}
	now := v.counts(cluster)
	if maps.Equal(now, p.reported) {
		return
	}
	for reason := range p.reported {
		if _, ok := now[reason]; !ok {
			rejectedGauge(reason).DeleteLabelValues(cluster, reason)
		}
	}
	for reason, n := range now {
		rejectedGauge(reason).WithLabelValues(cluster, reason).Set(float64(n))
	}
	if !slices.Equal(slices.Sorted(maps.Keys(now)), slices.Sorted(maps.Keys(p.reported))) {
		if len(now) == 0 {
			v.log.Info("Admitting everything the cluster publishes again", "publisher", cluster)
		} else {
			var parts []string
			for _, r := range v.rejectionsOf(cluster, now) {
				parts = append(parts, fmt.Sprintf("%s %d (e.g. %s: %s)", r.Reason, r.Count, r.Key, r.Detail))
			}
			v.log.Info("Refusing part of what the cluster publishes", "publisher", cluster, "refused", strings.Join(parts, "; "))
		}
	}
	p.reported = now
}

// rejectionsOf turns cluster's counts by reason into Rejections with examples. The
// caller holds v.mu.
func (v *View) rejectionsOf(cluster string, counts map[string]int) []Rejection {
	p := v.published[cluster]
	var out []Rejection
	for _, reason := range slices.Sorted(maps.Keys(counts)) {
		r := Rejection{Cluster: cluster, Reason: reason, Count: counts[reason]}
		switch reason {
		case admit.RecordTooLarge:
			r.Key = slices.Min(slices.Collect(maps.Keys(p.tooLarge)))
			r.Detail = admit.TooLarge(p.tooLarge[r.Key], v.limitsOf(cluster).ValueBytes).Detail
		case admit.TooManyServices:
			nn := p.order[v.limitsOf(cluster).Services]
			r.Key = keyspace.ServiceEndpoints(cluster, nn.Namespace, nn.Name)
			r.Detail = fmt.Sprintf("%d services exceed the limit of %d", len(p.order), v.limitsOf(cluster).Services)
		default:
			for _, nn := range p.order {
				e := p.raw[nn]
				if reason == admit.ServiceNotAuthorized && e.unauthorized != "" {
					r.Key, r.Detail = keyspace.ServiceEndpoints(cluster, nn.Namespace, nn.Name), e.unauthorized
					break
				}
				if i := slices.IndexFunc(e.rejected, func(x admit.Rejection) bool { return x.Reason == reason }); i >= 0 {
					r.Key, r.Detail = keyspace.ServiceEndpoints(cluster, nn.Namespace, nn.Name), e.rejected[i].Detail
					break
				}
			}
		}
		out = append(out, r)
	}
	return out
}

func (v *View) limitsOf(cluster string) admit.Limits {
	if c := v.clusters[cluster]; c != nil {
		return admit.LimitsOf(c.Info)
	}
	return admit.LimitsOf(nil)
}

// readmitLocal admits Self's own services (from its informers) again. The caller
// holds v.mu.
func (v *View) readmitLocal() {
	if v.local == nil {
		return
	}
	v.localServed = make(map[NamespacedName]*model.ServiceEndpoints, len(v.local))
	v.localCloned = v.lends.Load()
	for nn, rec := range v.local {
		v.localServed[nn] = v.admitLocal(rec)
	}
}

// admitLocal admits one of Self's own services: as every reader does, so that its
// own clients get what other clusters' get. The caller holds v.mu.
func (v *View) admitLocal(rec *model.ServiceEndpoints) *model.ServiceEndpoints {
	c := v.clusters[v.self]
	if c == nil || c.Info == nil {
		return rec
	}
	out, _ := admit.Record(c.Info, rec)
	return out
}
