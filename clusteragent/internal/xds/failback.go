package xds

import (
	"time"
)

// holdKey is one locality of a target.
type holdKey struct {
	cluster, zone string
}

// failback keeps traffic away from a recovering locality until it has stayed healthy
// for its policy's failbackHold, so that a locality that flaps does not pull every
// client back and forth at once. Its state is per target, by listener name, so that a
// target is judged alone when it changes and forgotten when it goes away.
type failback struct {
	byTarget map[string]*holds
}

// holds are one target's localities that have healthy endpoints, with when they
// recovered (the zero time means "healthy since before we looked": no hold), and
// those seen without healthy endpoints (or gone) since.
type holds struct {
	healthy map[holdKey]time.Time
	down    map[holdKey]bool
}

func newFailback() *failback {
	return &failback{byTarget: map[string]*holds{}}
}

// forget drops the state of a target that went away.
func (f *failback) forget(listener string) { delete(f.byTarget, listener) }

// apply returns t with its recovering localities' healthy endpoints held back, and
// the earliest time a hold ends (zero if none is pending). A target whose every
// healthy locality is recovering keeps them all: held-back traffic beats none.
func (f *failback) apply(t Target, now time.Time) (Target, time.Time) {
	listener := ListenerName(t.Hostname, t.Port)
	h := f.byTarget[listener]
	if h == nil {
		h = &holds{healthy: map[holdKey]time.Time{}, down: map[holdKey]bool{}}
		f.byTarget[listener] = h
	}
	var hold time.Duration
	if t.Policy != nil {
		hold = t.Policy.FailbackHold.Duration
	}
	present := make(map[holdKey]bool, len(t.Localities))
	var held []int
	var heldUntil time.Time
	anyReady := false
	for j, l := range t.Localities {
		k := holdKey{l.Cluster, l.Zone}
		if len(l.Healthy) == 0 {
			delete(h.healthy, k)
			h.down[k] = true
			continue
		}
		present[k] = true
		since, ok := h.healthy[k]
		if !ok {
			if h.down[k] {
				since = now // a recovery
			}
			h.healthy[k] = since
			delete(h.down, k)
		}
		if hold > 0 && !since.IsZero() && now.Sub(since) < hold {
			held = append(held, j)
			if end := since.Add(hold); heldUntil.IsZero() || end.Before(heldUntil) {
				heldUntil = end
			}
			continue
		}
		anyReady = true
	}
	// A healthy locality that vanished (its cluster dropped, its records gone) will be
	// a recovery when it comes back.
	for k := range h.healthy {
		if !present[k] {
			delete(h.healthy, k)
			h.down[k] = true
		}
	}
	if len(held) == 0 || !anyReady {
		return t, time.Time{}
	}
	locs := append([]Locality(nil), t.Localities...)
	for _, j := range held {
		locs[j].Healthy = nil
		locs[j].Withheld = "failback hold until " + h.healthy[holdKey{locs[j].Cluster, locs[j].Zone}].Add(hold).UTC().Format(time.RFC3339)
	}
	t.Localities = locs
	return t, heldUntil
}
