package locality

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// Locality preferences, the values of model.Policy.LocalityPreference.
const (
	PreferZone   = string(v1.PreferZone)
	PreferRegion = string(v1.PreferRegion)
	PreferNone   = string(v1.PreferNone)
)

// Client is the locality of the client a Table is computed for.
type Client struct {
	// Cluster is the client's member cluster; "" when unknown, which leaves out the
	// own-cluster tiers.
	Cluster string
	// Region is the client's region; "" leaves out the region tiers.
	Region string
	// Zone is the client's zone; "" leaves out the zone tiers.
	Zone string
}

// Locality is where some endpoints of a service run: one zone of one cluster.
type Locality struct {
	Cluster string
	Region  string
	// Zone is "" for endpoints whose zone is unknown; they never match a zone.
	Zone string
	// Network is carried through for the caller (same network: direct endpoints,
	// else the cluster's east-west gateway); it does not affect priorities.
	Network string
}

// State is the freshness of a candidate's cluster, as the caller judged it from the
// cluster's heartbeat and the policy's demoteAfter and dropAfter.
type State uint8

const (
	// Fresh: the cluster's heartbeat is live.
	Fresh State = iota
	// Stale: the heartbeat lapsed longer than demoteAfter ago. The cluster's
	// localities are demoted to the lowest priority.
	Stale
	// Dropped: the heartbeat lapsed longer than dropAfter ago. The caller normally
	// leaves such localities out; they are excluded. Any other value counts as Dropped.
	Dropped
)

// String returns "Fresh", "Stale" or "Dropped".
func (s State) String() string {
	switch s {
	case Fresh:
		return "Fresh"
	case Stale:
		return "Stale"
	case Dropped:
		return "Dropped"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// rank orders states from best to worst; merged duplicates keep the worst.
func (s State) rank() int {
	switch s {
	case Fresh:
		return 0
	case Stale:
		return 1
	}
	return 2
}

// Candidate is one locality of the service with its endpoint counts, after the
// caller's health, readiness and failback-hold filtering.
type Candidate struct {
	Locality
	State State
	// Healthy is the number of endpoints that may receive traffic.
	Healthy uint32
	// Total counts every endpoint of the locality, healthy or not; it measures the
	// capacity a tier has lost (see spill-over). A Total below Healthy counts as
	// Healthy.
	Total uint32
}

// Entry is a candidate placed in a priority (or, in Table.Excluded, left out).
type Entry struct {
	Candidate
	// Weight is the locality's load-balancing weight within its priority, never 0;
	// 0 only in Table.Excluded.
	Weight uint32
	// Reason says why the locality is where it is, for humans.
	Reason string
}

// Table is the priority table one client gets for one service.
type Table struct {
	Client Client
	// Policy is the policy the table was computed with; nil for the defaults.
	Policy *model.Policy
	// Preference, FallbackToAny and MinHealthyPercent are the settings in effect:
	// the policy's, or the defaults for a nil policy.
	Preference        string
	FallbackToAny     bool
	MinHealthyPercent int32
	// Failover is the policy's failover rule that applies to the client, if any.
	Failover *model.FailoverRule
	// Distribute is the policy's distribute rule that applies to the client, if any;
	// when set, Failover is nil.
	Distribute *model.DistributeRule
	// Priorities are the priorities in order, highest (0) first; none is empty.
	Priorities [][]Entry
	// Excluded are the input localities that are in no priority, with Weight 0 and
	// the reason, ordered by locality.
	Excluded []Entry
}

// Scales of computed weights. A priority whose weights are not plain healthy-endpoint
// counts (spill-over, distribute) has weights summing to about spillScale: fine
// enough that rounding moves any share by less than 0.01%, far below uint32's limit.
const (
	spillScale      = 1_000_000
	distributeScale = spillScale / 100 // per percentage point of a distribute rule
)

// Reasons. Failover, distribute and spill-over reasons are built from their rule.
const (
	reasonSameZone      = "same zone"
	reasonSameZoneOther = "same zone, other cluster"
	reasonSameCluster   = "same cluster"
	reasonSameRegion    = "same region"
	reasonFallback      = "fallback"
	reasonStale         = "demoted: stale cluster"
)

// Why an item is excluded.
type exclusion uint8

const (
	included exclusion = iota
	excludedDropped
	excludedNoHealthy
	excludedNotTarget
	excludedNotDestination
)

var exclusionReasons = [...]string{
	excludedDropped:        "dropped cluster",
	excludedNoHealthy:      "no healthy endpoints",
	excludedNotTarget:      "not a preferred locality or failover target, and fallbackToAny is false",
	excludedNotDestination: "not a distribute destination, and fallbackToAny is false",
}

type tierKind uint8

const (
	kindSameZone tierKind = iota
	kindSameZoneOther
	kindSameCluster
	kindSameRegion
	kindTarget
	kindDistribute
	kindFallback
	kindStale
)

// tier is a group of localities that are equally preferred. Tiers become priorities
// in order; an empty one disappears, and spill-over merges one with the next.
type tier struct {
	kind   tierKind
	target int // kindTarget: index into the failover rule's To
	// healthy and total count the endpoints of every locality in the tier,
	// including those without healthy endpoints (they are not entries).
	healthy, total uint64
	n              int // entries: localities with healthy endpoints
	off            int // the tier's first entry in the entries array
	fill           int // entries laid out so far
	reason         string
}

// item is a merged candidate on its way to an Entry. It refers to the candidate's
// strings by index instead of copying them: items are sorted and scanned several
// times, and small pointer-free values keep that cheap.
type item struct {
	src            int32 // index into the candidates of (the first of) its locality
	tier           int32 // index into tiers; -1: in none
	pattern        int32 // distribute: index into the rule's To; -1: none
	healthy, total uint32
	base           uint32 // weight before a priority's rescaling
	state          State
	why            exclusion
}

// target is a parsed distribute destination with its running sums.
type target struct {
	model.Pattern
	weight  uint64 // percentage × distributeScale
	healthy uint64 // healthy endpoints of the fresh localities it takes
	cum     uint64 // of healthy, handed out so far
	prev    uint64 // weight handed out so far
	reason  string
}

// Prioritize returns the priority table client gets for a service with the given
// candidate localities under policy (nil: the defaults). See the package
// documentation for what every result satisfies and docs/failover.md for the rules.
func Prioritize(client Client, candidates []Candidate, policy *model.Policy) Table {
	t := Table{
		Client:            client,
		Policy:            policy,
		Preference:        string(v1.DefaultLocalityPreference),
		FallbackToAny:     v1.DefaultFallbackToAny,
		MinHealthyPercent: v1.DefaultMinHealthyPercent,
	}
	if policy != nil {
		switch policy.LocalityPreference {
		case PreferRegion, PreferNone:
			t.Preference = policy.LocalityPreference
		default: // Validate admits only Zone besides; anything else is read as the default.
			t.Preference = PreferZone
		}
		t.FallbackToAny = policy.FallbackToAny
		t.MinHealthyPercent = min(max(policy.MinHealthyPercent, 0), 100)
		// API validation forbids both kinds of rule in one policy; were both there,
		// a distribute rule that matches the client would win.
		t.Distribute = matchDistribute(client, policy.Distribute)
		if t.Distribute == nil {
			t.Failover = matchFailover(client, policy.Failover)
		}
	}

	// Sort by locality (through the index) and merge duplicates; merging is
	// commutative, so the unstable sort cannot make the result depend on input order.
	items := make([]item, len(candidates))
	for i, c := range candidates {
		items[i] = item{src: int32(i), healthy: c.Healthy, total: c.Total, state: c.State}
	}
	slices.SortFunc(items, func(a, b item) int {
		return compareLocality(candidates[a.src].Locality, candidates[b.src].Locality)
	})
	items = merge(items, candidates)

	var targets []target
	if t.Distribute != nil {
		targets = make([]target, len(t.Distribute.To))
		for i, to := range t.Distribute.To {
			targets[i].Pattern = model.ParsePattern(to.Locality)
			if to.Weight > 0 {
				targets[i].weight = uint64(to.Weight) * distributeScale
			} else {
				targets[i].Spec = -1 // a weightless destination takes nothing
			}
		}
	}
	var tierBuf [8]tier
	tiers := appendTiers(tierBuf[:0], &t)
	stale := int32(len(tiers) - 1)

	// Place every item in the first tier that takes it; stale ones go last.
	nExcluded := 0
	for i := range items {
		it := &items[i]
		l := &candidates[it.src].Locality
		it.tier, it.pattern = -1, -1
		it.total = max(it.total, it.healthy)
		if it.state != Fresh && it.state != Stale {
			it.why = excludedDropped
			nExcluded++
			continue
		}
		if targets != nil {
			it.pattern = bestTarget(targets, l)
		}
		it.tier = place(tiers, &t, client, l, it.pattern)
		if it.tier < 0 {
			it.why = excludedNotTarget
			if t.Distribute != nil {
				it.why = excludedNotDestination
			}
			nExcluded++
			continue
		}
		if it.state == Stale {
			it.tier = stale
		}
		tr := &tiers[it.tier]
		tr.healthy += uint64(it.healthy)
		tr.total += uint64(it.total)
		if it.healthy == 0 {
			it.why = excludedNoHealthy
			nExcluded++
			continue
		}
		tr.n++
		it.base = it.healthy
		if tr.kind == kindDistribute {
			targets[it.pattern].healthy += uint64(it.healthy)
		}
	}

	// A distribute destination's weight is split among its localities in proportion
	// to their healthy endpoints, rounding so that the parts sum to the whole.
	if targets != nil {
		for i := range items {
			it := &items[i]
			if it.why != included || tiers[it.tier].kind != kindDistribute {
				continue
			}
			tg := &targets[it.pattern]
			tg.cum += uint64(it.healthy)
			next := mulDivRound(tg.weight, tg.cum, tg.healthy)
			it.base = uint32(max(next-tg.prev, 1))
			tg.prev = next
		}
	}

	// Lay the entries out tier by tier, in locality order within a tier.
	n := 0
	for i := range tiers {
		tiers[i].off = n
		n += tiers[i].n
	}
	entries := make([]Entry, n)
	if nExcluded > 0 {
		t.Excluded = make([]Entry, 0, nExcluded)
	}
	for i := range items {
		it := &items[i]
		c := candidates[it.src]
		c.Healthy, c.Total, c.State = it.healthy, it.total, it.state
		if it.why != included {
			t.Excluded = append(t.Excluded, Entry{Candidate: c, Reason: exclusionReasons[it.why]})
			continue
		}
		tr := &tiers[it.tier]
		entries[tr.off+tr.fill] = Entry{Candidate: c, Weight: it.base, Reason: tierReason(tr, t.Failover, targets, it.pattern)}
		tr.fill++
	}

	// Tiers become priorities; a tier below MinHealthyPercent shares its priority
	// with the next one (spill-over), which then starts no spill-over of its own.
	var nonEmpty [16]int
	full := nonEmpty[:0]
	for i := range tiers {
		if tiers[i].n > 0 {
			full = append(full, i)
		}
	}
	t.Priorities = make([][]Entry, 0, len(full))
	m := uint64(t.MinHealthyPercent)
	for k := 0; k < len(full); k++ {
		a := &tiers[full[k]]
		if m > 0 && a.kind != kindStale && a.healthy*100 < m*a.total &&
			k+1 < len(full) && tiers[full[k+1]].kind != kindStale {
			b := &tiers[full[k+1]]
			spill(entries[a.off:a.off+a.n], entries[b.off:b.off+b.n], a, m, len(t.Priorities))
			t.Priorities = append(t.Priorities, entries[a.off:b.off+b.n])
			k++
			continue
		}
		es := entries[a.off : a.off+a.n]
		if sum(es) > math.MaxUint32 {
			apportion(es, spillScale)
		}
		t.Priorities = append(t.Priorities, es)
	}
	return t
}

// appendTiers appends the tiers of t's rules and settings, stale last.
func appendTiers(tiers []tier, t *Table) []tier {
	switch {
	case t.Distribute != nil:
		tiers = append(tiers, tier{kind: kindDistribute})
	default:
		// A rule for the client's own cluster names where that cluster's traffic goes
		// when the cluster itself has nothing healthy: its targets come before the
		// rest of the region. A rule for the client's region applies after the region.
		clusterRule := t.Failover != nil && t.Failover.From.Cluster != ""
		targets := func(tiers []tier) []tier {
			if t.Failover != nil {
				for i := range t.Failover.To {
					tiers = append(tiers, tier{kind: kindTarget, target: i})
				}
			}
			return tiers
		}
		switch {
		case t.Preference == PreferZone && clusterRule:
			tiers = append(tiers,
				tier{kind: kindSameZone, reason: reasonSameZone},
				tier{kind: kindSameCluster, reason: reasonSameCluster})
			tiers = targets(tiers)
			tiers = append(tiers,
				tier{kind: kindSameZoneOther, reason: reasonSameZoneOther},
				tier{kind: kindSameRegion, reason: reasonSameRegion})
		case t.Preference == PreferZone:
			tiers = append(tiers,
				tier{kind: kindSameZone, reason: reasonSameZone},
				tier{kind: kindSameZoneOther, reason: reasonSameZoneOther},
				tier{kind: kindSameCluster, reason: reasonSameCluster},
				tier{kind: kindSameRegion, reason: reasonSameRegion})
			tiers = targets(tiers)
		case t.Preference == PreferRegion && clusterRule:
			tiers = append(tiers, tier{kind: kindSameCluster, reason: reasonSameCluster})
			tiers = targets(tiers)
			tiers = append(tiers, tier{kind: kindSameRegion, reason: reasonSameRegion})
		case t.Preference == PreferRegion:
			tiers = append(tiers,
				tier{kind: kindSameCluster, reason: reasonSameCluster},
				tier{kind: kindSameRegion, reason: reasonSameRegion})
			tiers = targets(tiers)
		default:
			tiers = targets(tiers)
		}
	}
	if t.FallbackToAny {
		tiers = append(tiers, tier{kind: kindFallback, reason: reasonFallback})
	}
	return append(tiers, tier{kind: kindStale, reason: reasonStale})
}

// place returns the index of the first tier that takes it, or -1. The tiers are in
// preference order, so "not already placed" needs no bookkeeping.
func place(tiers []tier, t *Table, c Client, l *Locality, pattern int32) int32 {
	own := c.Cluster != "" && l.Cluster == c.Cluster
	region := c.Region != "" && l.Region == c.Region
	zone := c.Zone != "" && l.Zone == c.Zone && (own || region)
	for i := range tiers {
		var ok bool
		switch tiers[i].kind {
		case kindSameZone:
			ok = own && zone
		case kindSameZoneOther:
			ok = zone
		case kindSameCluster:
			ok = own
		case kindSameRegion:
			ok = region
		case kindTarget:
			ok = isTarget(t.Failover.To[tiers[i].target], l)
		case kindDistribute:
			ok = pattern >= 0
		case kindFallback:
			ok = true
		}
		if ok {
			return int32(i)
		}
	}
	return -1
}

// isTarget reports whether the failover target to names l's region or cluster.
func isTarget(to model.Locality, l *Locality) bool {
	switch {
	case to.Cluster != "":
		return l.Cluster == to.Cluster
	case to.Region != "":
		return l.Region == to.Region
	}
	return false
}

// tierReason is the reason of an entry in tier tr taking distribute destination
// pattern, built once per tier or destination.
func tierReason(tr *tier, fo *model.FailoverRule, targets []target, pattern int32) string {
	switch tr.kind {
	case kindTarget:
		if tr.reason == "" {
			to := fo.To[tr.target]
			if to.Cluster != "" {
				tr.reason = fmt.Sprintf("failover target %d: cluster %s", tr.target+1, to.Cluster)
			} else {
				tr.reason = fmt.Sprintf("failover target %d: region %s", tr.target+1, to.Region)
			}
		}
	case kindDistribute:
		tg := &targets[pattern]
		if tg.reason == "" {
			tg.reason = fmt.Sprintf("distribute %d%% to %s", tg.weight/distributeScale, tg.Raw)
		}
		return tg.reason
	}
	return tr.reason
}

// spill shares one priority between tier a (entries as) and the next tier (bs): a
// keeps h/m of the traffic, where h is its healthy fraction, and bs get the rest.
// Within each tier the weights keep their proportions.
func spill(as, bs []Entry, a *tier, m uint64, priority int) {
	keep := mulDivRound(spillScale, a.healthy*100, a.total*m)
	keep = min(max(keep, 1), spillScale-1)
	apportion(as, keep)
	apportion(bs, spillScale-keep)
	healthy := pct(a.healthy, a.total)
	suffix := fmt.Sprintf(" (%s healthy < %d%%: keeps %s)", healthy, m, pct(keep, spillScale))
	annotate(as, func(r string) string { return r + suffix })
	prefix := fmt.Sprintf("spill-over from priority %d (%s healthy < %d%%): ", priority, healthy, m)
	annotate(bs, func(r string) string { return prefix + r })
}

// annotate rewrites the reasons of es with f, once per run of equal reasons (a tier's
// entries share one, except a distribute tier's).
func annotate(es []Entry, f func(string) string) {
	var from, to string
	for i := range es {
		if i == 0 || es[i].Reason != from {
			from, to = es[i].Reason, f(es[i].Reason)
		}
		es[i].Reason = to
	}
}

// apportion rescales the weights of es to sum to total, keeping their proportions.
// Rounding the running sum keeps every weight within 1 of its exact value and the sum
// exact; a weight that rounds to 0 becomes 1.
func apportion(es []Entry, total uint64) {
	s := sum(es)
	var cum, prev uint64
	for i := range es {
		cum += uint64(es[i].Weight)
		next := mulDivRound(total, cum, s)
		es[i].Weight = uint32(max(next-prev, 1))
		prev = next
	}
}

func sum(es []Entry) uint64 {
	var s uint64
	for _, e := range es {
		s += uint64(e.Weight)
	}
	return s
}

// pct formats num/den as a percentage with at most one decimal, rounded down so that
// a fraction just below a threshold never prints as the threshold.
func pct(num, den uint64) string {
	tenths := mulDiv(num, 1000, den)
	if tenths%10 == 0 {
		return fmt.Sprintf("%d%%", tenths/10)
	}
	return fmt.Sprintf("%d.%d%%", tenths/10, tenths%10)
}

// matchFailover returns the rule for the client's cluster, else the one for its
// region, else nil.
func matchFailover(c Client, rules []model.FailoverRule) *model.FailoverRule {
	var byRegion *model.FailoverRule
	for i := range rules {
		r := &rules[i]
		switch {
		case r.From.Cluster != "":
			if r.From.Cluster == c.Cluster {
				return r
			}
		case r.From.Region != "":
			if byRegion == nil && r.From.Region == c.Region {
				byRegion = r
			}
		}
	}
	return byRegion
}

// matchDistribute returns the rule whose From matches the client most specifically,
// the first of equals, or nil.
func matchDistribute(c Client, rules []model.DistributeRule) *model.DistributeRule {
	var best *model.DistributeRule
	bestSpec := -1
	for i := range rules {
		p := model.ParsePattern(rules[i].From)
		if p.Spec > bestSpec && p.Matches(c.Region, c.Zone) {
			best, bestSpec = &rules[i], p.Spec
		}
	}
	return best
}

// bestTarget returns the index of the destination that matches l most specifically,
// the first of equals, or -1.
func bestTarget(targets []target, l *Locality) int32 {
	best, bestSpec := int32(-1), -1
	for i := range targets {
		if targets[i].Spec > bestSpec && targets[i].Matches(l.Region, l.Zone) {
			best, bestSpec = int32(i), targets[i].Spec
		}
	}
	return best
}

func compareLocality(a, b Locality) int { return a.Compare(b) }

// Compare orders localities by cluster, zone, region and network: the order of a
// Table's entries within a tier and of Table.Excluded.
func (a Locality) Compare(b Locality) int {
	return cmp.Or(
		cmp.Compare(a.Cluster, b.Cluster),
		cmp.Compare(a.Zone, b.Zone),
		cmp.Compare(a.Region, b.Region),
		cmp.Compare(a.Network, b.Network),
	)
}

// merge folds adjacent items of the same locality into one, summing counts
// (saturating) and keeping the worse state.
func merge(items []item, candidates []Candidate) []item {
	if len(items) < 2 {
		return items
	}
	out := items[:1]
	for _, it := range items[1:] {
		last := &out[len(out)-1]
		if candidates[it.src].Locality != candidates[last.src].Locality {
			out = append(out, it)
			continue
		}
		last.healthy = addSat(last.healthy, it.healthy)
		last.total = addSat(last.total, it.total)
		if it.state.rank() > last.state.rank() {
			last.state = it.state
		}
	}
	return out
}

func addSat(a, b uint32) uint32 {
	return uint32(min(uint64(a)+uint64(b), math.MaxUint32))
}
