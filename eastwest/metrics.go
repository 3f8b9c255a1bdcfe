package eastwest

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Results of a client connection, the "result" label of connections_total; every
// one but resultOK is also a "reason" of errors_total. Exactly one result is counted
// per accepted connection.
const (
	resultOK = "ok" // a tunnel to an endpoint was established

	reasonOverLimit   = "over_limit"   // MaxConnections were open: closed at once
	reasonSourceLimit = "source_limit" // MaxConnectionsPerSource were open from the same source: closed at once
	reasonFDBudget    = "fd_budget"    // MaxFDs were in use: closed at once
	reasonNoData      = "no_data"      // closed by the client before sending a byte (e.g. TCP health checks)
	reasonTruncated   = "truncated"    // closed by the client inside its ClientHello
	reasonReadError   = "read_error"   // the client connection failed (reset) inside its ClientHello
	reasonPeekTimeout = "peek_timeout" // no whole ClientHello within PeekTimeout
	reasonNotTLS      = "not_tls"      // the first bytes are not a TLS handshake record
	reasonMalformed   = "malformed"    // TLS records that do not hold a well-formed ClientHello
	reasonTooLarge    = "too_large"    // ClientHello over MaxClientHelloBytes
	reasonNoSNI       = "no_sni"       // a ClientHello without a server name
	reasonUnknownSNI  = "unknown_sni"  // a server name with no route
	reasonNoEndpoint  = "no_endpoint"  // a route with no ready endpoint
	reasonDialFailed  = "dial_failed"  // every attempt to reach an endpoint failed
	reasonShutdown    = "shutdown"     // closed when Shutdown's context ended (also for tunnels)
	reasonInternal    = "internal"     // a bug: a panic in the connection's handler, recovered
)

// Reasons of errors_total that are not connection results: failed dial attempts
// (several per connection, see Options.DialAttempts), tunnels that ended abnormally,
// and accept errors.
const (
	reasonDialError   = "dial_error"   // an endpoint refused or reset the connection attempt
	reasonDialTimeout = "dial_timeout" // an endpoint did not answer within DialTimeout
	reasonIdleTimeout = "idle_timeout" // a tunnel idle for IdleTimeout was closed
	reasonStreamError = "stream_error" // a tunnel ended with an error (a reset) instead of both sides closing
	reasonAcceptError = "accept_error" // the listener's Accept failed (e.g. out of file descriptors)
)

// Types of xds_updates_total, and its results.
const (
	typeListener  = "listener"
	typeEndpoints = "endpoints"

	updateApplied = "applied" // every route in use; ACKed
	updatePartial = "partial" // the good routes in use, the others rejected; NACKed
	updateRefused = "refused" // nothing applied (unreadable); NACKed
)

// Directions of bytes_total.
const (
	directionToBackend = "to_backend" // from the remote client to the local endpoint, ClientHello included
	directionToClient  = "to_client"  // from the local endpoint back to the remote client
)

// Collectors are package-level, so several Gateways in one process share them, and
// registered nowhere until RegisterMetrics: the process that runs a gateway registers
// them in its own registry and serves that one (Handler), so no other component's
// metrics leak into the gateway's /metrics, nor the gateway's into theirs. The service
// label is hostname:port of a configured route (see SNI), or empty while a connection
// has not matched one: nothing a client sends becomes a label value.
var (
	connectionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "gateway", Name: "connections_total",
		Help: "Client connections accepted, by service and result (ok, or the reason the connection was closed before a tunnel was established).",
	}, []string{"service", "result"})

	activeConnections = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "gateway", Name: "active_connections",
		Help: "Established tunnels, by service.",
	}, []string{"service"})

	openConnections = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "gateway", Name: "open_connections",
		Help: "Client connections open, before and after routing; what MaxConnections bounds.",
	})

	bytesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "gateway", Name: "bytes_total",
		Help: "Bytes carried by tunnels, by service and direction (to_backend, to_client); updated every few seconds while a tunnel is open.",
	}, []string{"service", "direction"})

	errorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "gateway", Name: "errors_total",
		Help: "Failures, by reason: every connection result but ok, failed dial attempts, abnormal tunnel ends, accept errors.",
	}, []string{"reason"})

	peekDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "meshfed", Subsystem: "gateway", Name: "peek_duration_seconds",
		Help:    "Time from accepting a connection to having read its whole ClientHello.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9), // 100µs … 6.5s
	})

	routesConfigured = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "gateway", Name: "routes",
		Help: "Server names in the route table last set.",
	})

	sourcesOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "gateway", Name: "sources",
		Help: "Sources (IPv4 addresses, IPv6 /64s) with client connections open; each may have MaxConnectionsPerSource.",
	})

	fdsInUse = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "gateway", Name: "fds",
		Help: "File descriptors held by client connections (two each, for the connection and its endpoint) and splice pipes (two each); what MaxFDs bounds.",
	})

	fdBudgetGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "gateway", Name: "fd_budget",
		Help: "MaxFDs: the file descriptors connections and pipes may hold, below the process's limit.",
	})

	pipesOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "gateway", Name: "splice_pipes",
		Help: "Splice pipes open, by state: busy (moving a tunnel's bytes) or idle (pooled; closed after a few seconds unused).",
	}, []string{"state"})

	rejectedRoutes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "gateway", Name: "rejected_routes",
		Help: "Parts of the configuration in use that the gateway refused (a filter chain, a server name, a load assignment), by reason; the update that brought them was NACKed.",
	}, []string{"reason"})

	updatesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "gateway", Name: "xds_updates_total",
		Help: "xDS updates received, by type (listener, endpoints) and result: applied (ACKed), partial (good routes applied, the rest rejected; NACKed), refused (nothing applied; NACKed).",
	}, []string{"type", "result"})

	draining = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "gateway", Name: "draining",
		Help: "1 while a gateway in this process drains (readiness fails), else 0.",
	})
)

// RegisterMetrics registers the gateway's collectors in reg. Call it once per
// registry; it panics if they are already registered there.
func RegisterMetrics(reg prometheus.Registerer) {
	reg.MustRegister(connectionsTotal, activeConnections, openConnections, bytesTotal,
		errorsTotal, peekDuration, routesConfigured, rejectedRoutes, updatesTotal, draining,
		sourcesOpen, fdsInUse, fdBudgetGauge, pipesOpen)
}

// countFailure counts a connection that ended before its tunnel: its result (with
// the route's service, if it matched one) and its error reason.
func countFailure(service, reason string) {
	connectionsTotal.WithLabelValues(service, reason).Inc()
	errorsTotal.WithLabelValues(reason).Inc()
}

// setRejectedRoutes sets rejected_routes to what the configuration in use refused.
func setRejectedRoutes(rejected []RouteRejection) {
	counts := map[string]int{}
	for _, r := range rejected {
		counts[r.Reason]++
	}
	for _, reason := range []string{rejectDefaultChain, rejectFilterChain, rejectServerName, rejectDuplicateName, rejectEndpoints} {
		rejectedRoutes.WithLabelValues(reason).Set(float64(counts[reason]))
	}
}
