package fleetbench

import (
	"slices"
	"sync"
	"time"
)

// change is one endpoint readiness flip the tracker waits for: every stream that
// watches its service must see its address present (or absent) as the flip says.
type change struct {
	svc     int
	addr    string
	present bool
	at      time.Time
	seen    map[int]bool // by stream
	// last is when the last stream saw it; done is closed then (or when dropped).
	last time.Time
	done chan struct{}
}

// tracker matches the load assignments streams receive with the changes written,
// recording each stream's latency of each change.
type tracker struct {
	mu         sync.Mutex
	pending    map[int]map[string]*change // by service and address
	watchers   map[int]map[int]bool       // streams by service
	latencies  []time.Duration
	superseded int
}

func newTracker() *tracker {
	return &tracker{pending: map[int]map[string]*change{}, watchers: map[int]map[int]bool{}}
}

// watch registers stream id as a watcher of services, or unregisters it.
func (t *tracker) watch(id int, services []int, on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range services {
		if t.watchers[s] == nil {
			t.watchers[s] = map[int]bool{}
		}
		if on {
			t.watchers[s][id] = true
		} else {
			delete(t.watchers[s], id)
			for _, ch := range t.pending[s] {
				t.complete(ch)
			}
		}
	}
}

// expect registers a change written at at. An unseen change of the same address is
// superseded: the two could not be told apart.
func (t *tracker) expect(svc int, addr string, present bool, at time.Time) *change {
	ch := &change{svc: svc, addr: addr, present: present, at: at, seen: map[int]bool{}, done: make(chan struct{})}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending[svc] == nil {
		t.pending[svc] = map[string]*change{}
	}
	if old := t.pending[svc][addr]; old != nil {
		t.superseded++
		delete(t.pending[svc], addr)
		close(old.done)
	}
	t.pending[svc][addr] = ch
	return ch
}

// drop forgets a change whose write failed.
func (t *tracker) drop(ch *change) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending[ch.svc][ch.addr] == ch {
		delete(t.pending[ch.svc], ch.addr)
		close(ch.done)
	}
}

// observe is stream id's receipt at at of service svc's load assignment, which
// lists the addresses present says.
func (t *tracker) observe(id, svc int, present func(addr string) bool, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ch := range t.pending[svc] {
		if ch.seen[id] || present(ch.addr) != ch.present {
			continue
		}
		ch.seen[id] = true
		t.latencies = append(t.latencies, at.Sub(ch.at))
		ch.last = at
		t.complete(ch)
	}
}

// complete ends ch if every watcher of its service has seen it. t.mu is held.
func (t *tracker) complete(ch *change) {
	if len(ch.seen) < len(t.watchers[ch.svc]) {
		return // some watcher has not: no need to look which
	}
	for id := range t.watchers[ch.svc] {
		if !ch.seen[id] {
			return
		}
	}
	if t.pending[ch.svc][ch.addr] == ch {
		delete(t.pending[ch.svc], ch.addr)
		close(ch.done)
	}
}

// take returns the latencies recorded since the last take, sorted, and how many
// changes are still unseen by some stream.
func (t *tracker) take() (lat []time.Duration, unseen int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lat, t.latencies = t.latencies, nil
	slices.Sort(lat)
	for _, m := range t.pending {
		unseen += len(m)
	}
	return lat, unseen
}

// quantile of sorted durations; 0 when there are none.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// peek is take without taking: how many latencies and unseen changes there are.
func (t *tracker) peek() (recorded, unseen int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range t.pending {
		unseen += len(m)
	}
	return len(t.latencies), unseen
}
