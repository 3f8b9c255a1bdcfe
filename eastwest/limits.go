package eastwest

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// sourceKey is what the per-source limit counts by: an IPv4 address, or the /64 of
// an IPv6 address (one host usually holds a whole /64, so counting its addresses one
// by one would limit nothing).
func sourceKey(addr net.Addr) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Prefix{}, false
	}
	ip := ap.Addr().Unmap().WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32), true
	}
	p, _ := ip.Prefix(64)
	return p, true
}

// sources counts open connections per source, for MaxConnectionsPerSource.
type sources struct {
	max int

	mu    sync.Mutex
	open  map[netip.Prefix]*sourceState
	total atomic.Int64 // distinct sources with connections open, for the gauge
}

type sourceState struct {
	open    int
	limited bool // a connection was refused since the source's first open one: logged once
}

func newSources(max int) *sources {
	return &sources{max: max, open: map[netip.Prefix]*sourceState{}}
}

// acquire counts a new connection of src, unless src has max open already. first
// reports a refusal that is the first since src had no connection open.
func (s *sources) acquire(src netip.Prefix) (ok, first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.open[src]
	if st == nil {
		st = &sourceState{}
		s.open[src] = st
		sourcesOpen.Inc()
	}
	if st.open >= s.max {
		first = !st.limited
		st.limited = true
		return false, first
	}
	st.open++
	return true, false
}

// release uncounts a connection of src.
func (s *sources) release(src netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.open[src]
	if st == nil {
		return
	}
	if st.open--; st.open <= 0 {
		delete(s.open, src)
		sourcesOpen.Dec()
	}
}

// fdBudget is how many file descriptors the gateway's connections and splice pipes
// may hold at once: below the process's limit, so that the rest of the process
// (the health and metrics server, the xDS stream, logs) always has some.
type fdBudget struct {
	max  int64
	used atomic.Int64
}

// take reserves n descriptors, unless that would go over the budget.
func (b *fdBudget) take(n int64) bool {
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	fdsInUse.Add(float64(n))
	return true
}

// give returns n descriptors taken before.
func (b *fdBudget) give(n int64) {
	b.used.Add(-n)
	fdsInUse.Sub(float64(n))
}

// fdsPerConnection is what a connection reserves when it is accepted: its own socket
// and the one to its endpoint. Splice pipes take theirs when they are made.
const fdsPerConnection = 2

// fdHeadroom is what the default MaxFDs leaves to the rest of the process: an eighth
// of the limit, at least minFDHeadroom and at most 1024.
func fdHeadroom(limit int) int { return min(max(limit/8, minFDHeadroom), 1024) }

// The splice pipe pool (Linux): how many idle pipes it keeps, how long an idle pipe
// stays open unused, and how long a tunnel keeps a pipe once bytes stopped coming.
// Variables for tests.
var (
	maxIdlePipes = 32
	pipeIdleTTL  = 5 * time.Second
	pipeHold     = time.Second
)
