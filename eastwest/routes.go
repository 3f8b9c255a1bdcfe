package eastwest

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/meshfed/meshfed/internal/xdsnames"

	"github.com/prometheus/client_golang/prometheus"
)

// Routes maps TLS server names (SNI) to the ready local endpoints that serve them.
// A name with no endpoints is known but unroutable: its connections are closed with
// result "no_endpoint" instead of "unknown_sni".
//
// Names match exactly, ignoring ASCII case. meshfed's names have the form SNI builds;
// others work too, but only names of that form get a readable service label.
type Routes map[string][]netip.AddrPort

// serviceLabel names a route in metrics and logs: hostname:port for meshfed's names,
// the name itself otherwise. Only configured names become labels, never what a client
// sent, so the label's cardinality is the route table's.
func serviceLabel(sni string) string {
	if host, port, ok := xdsnames.ParseSNI(sni); ok {
		return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
	}
	return sni
}

// table is the immutable routing state the accept path reads without locks.
type table struct {
	routes map[string]*route
}

// route is one server name's endpoints and the metrics handles of its service.
type route struct {
	sni, service string
	endpoints    []*endpoint
	// next rotates where the least-connections scan starts, so that endpoints with
	// equal counts take turns.
	next atomic.Uint32

	// Metric handles, looked up once per route rather than once per connection.
	connsOK                       prometheus.Counter
	active                        prometheus.Gauge
	bytesToBackend, bytesToClient prometheus.Counter
}

// endpoint is one backend address and the tunnels open to it. An endpoint keeps its
// identity across route updates (see buildTable), so least-connections counts survive
// them.
type endpoint struct {
	addr   netip.AddrPort
	active atomic.Int64
}

// buildTable validates r and builds the table that replaces prev, reusing prev's
// endpoints (and so their connection counts) for addresses still present.
func buildTable(r Routes, prev *table) (*table, error) {
	known := map[netip.AddrPort]*endpoint{}
	if prev != nil {
		for _, rt := range prev.routes {
			for _, e := range rt.endpoints {
				known[e.addr] = e
			}
		}
	}
	t := &table{routes: make(map[string]*route, len(r))}
	for _, name := range slices.Sorted(maps.Keys(r)) {
		key := strings.ToLower(name)
		if err := validServerName(key); err != nil {
			return nil, err
		}
		if _, dup := t.routes[key]; dup {
			return nil, fmt.Errorf("eastwest: server name %q given twice (names ignore case)", key)
		}
		rt := newRoute(key)
		seen := map[netip.AddrPort]bool{}
		for _, a := range r[name] {
			if !a.IsValid() || a.Port() == 0 || a.Addr().IsUnspecified() {
				return nil, fmt.Errorf("eastwest: server name %q: endpoint %q is not a dialable address", key, a)
			}
			a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
			if seen[a] {
				continue
			}
			seen[a] = true
			e := known[a]
			if e == nil {
				e = &endpoint{addr: a}
				known[a] = e
			}
			rt.endpoints = append(rt.endpoints, e)
		}
		t.routes[key] = rt
	}
	return t, nil
}

func validServerName(s string) error {
	if s == "" || len(s) > 255 {
		return fmt.Errorf("eastwest: server name %q: length must be 1-255", s)
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			// A client's name with such a byte is refused as malformed, so a route
			// with one could never match.
			return fmt.Errorf("eastwest: server name %q: byte %q is not allowed", s, c)
		}
	}
	return nil
}

func newRoute(sni string) *route {
	svc := serviceLabel(sni)
	return &route{
		sni:            sni,
		service:        svc,
		connsOK:        connectionsTotal.WithLabelValues(svc, resultOK),
		active:         activeConnections.WithLabelValues(svc),
		bytesToBackend: bytesTotal.WithLabelValues(svc, directionToBackend),
		bytesToClient:  bytesTotal.WithLabelValues(svc, directionToClient),
	}
}

// pick reserves the endpoint with the fewest open tunnels among those not in tried,
// starting the scan at a rotating offset so that ties are broken round-robin. It
// returns nil when every endpoint has been tried. The caller must release the
// endpoint (active.Add(-1)) when its tunnel ends or its dial fails.
func (rt *route) pick(tried []*endpoint) *endpoint {
	n := len(rt.endpoints)
	if n == 0 {
		return nil
	}
	start := int(rt.next.Add(1) % uint32(n))
	var best *endpoint
	var bestActive int64
	for i := range n {
		e := rt.endpoints[(start+i)%n]
		if slices.Contains(tried, e) {
			continue
		}
		if a := e.active.Load(); best == nil || a < bestActive {
			best, bestActive = e, a
		}
	}
	if best != nil {
		best.active.Add(1)
	}
	return best
}

// snapshot returns the table as Routes, with lower-cased names.
func (t *table) snapshot() Routes {
	out := make(Routes, len(t.routes))
	for name, rt := range t.routes {
		eps := make([]netip.AddrPort, 0, len(rt.endpoints))
		for _, e := range rt.endpoints {
			eps = append(eps, e.addr)
		}
		out[name] = eps
	}
	return out
}
