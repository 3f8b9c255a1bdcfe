package xds

import (
	"time"
)

// holdKey is one locality of one target.
type holdKey struct {
	listener, cluster, zone string
}

// failback keeps traffic away from a recovering locality until it has stayed healthy
// for its policy's failbackHold, so that a locality that flaps does not pull every
// client back and forth at once.
type failback struct {
	// healthy holds the localities that have healthy endpoints, with when they
	// recovered; the zero time means "healthy since before we looked": no hold.
	healthy map[holdKey]time.Time
	// down holds the localities seen without healthy endpoints (or gone) since.
	down map[holdKey]bool
}

func newFailback() *failback {
	return &failback{healthy: map[holdKey]time.Time{}, down: map[holdKey]bool{}}
}

// apply returns the targets with recovering localities' healthy endpoints held back,
// and the earliest time a hold ends (zero if none is pending). A target whose every
// healthy locality is recovering keeps them all: held-back traffic beats none.
func (f *failback) apply(targets []Target, now time.Time) ([]Target, time.Time) {
	var next time.Time
	present := make(map[holdKey]bool, len(f.healthy))
	out := make([]Target, len(targets))
	for i, t := range targets {
		out[i] = t
		var hold time.Duration
		if t.Policy != nil {
			hold = t.Policy.FailbackHold.Duration
		}
		listener := ListenerName(t.Hostname, t.Port)
		var held []int
		var heldUntil time.Time
		anyReady := false
		for j, l := range t.Localities {
			k := holdKey{listener, l.Cluster, l.Zone}
			if len(l.Healthy) == 0 {
				delete(f.healthy, k)
				f.down[k] = true
				continue
			}
			present[k] = true
			since, ok := f.healthy[k]
			if !ok {
				if f.down[k] {
					since = now // a recovery
				}
				f.healthy[k] = since
				delete(f.down, k)
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
		if len(held) > 0 && anyReady {
			if next.IsZero() || heldUntil.Before(next) {
				next = heldUntil
			}
			locs := append([]Locality(nil), t.Localities...)
			for _, j := range held {
				locs[j].Healthy = nil
				locs[j].Withheld = "failback hold until " + f.healthy[holdKey{listener, locs[j].Cluster, locs[j].Zone}].Add(hold).UTC().Format(time.RFC3339)
			}
			out[i].Localities = locs
		}
	}
	// A healthy locality that vanished (its cluster dropped, its records gone) will be
	// a recovery when it comes back.
	for k := range f.healthy {
		if !present[k] {
			delete(f.healthy, k)
			f.down[k] = true
		}
	}
	return out, next
}
