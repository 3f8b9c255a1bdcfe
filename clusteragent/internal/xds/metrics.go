package xds

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The collectors are package-level because every Server of a process measures into
// the same series; they are registered by the component that runs the server
// (RegisterMetrics), never at init, so that a process exports only the metrics of
// the components it runs.

// latencyBuckets resolve change-to-proxy latencies from 0.5 ms to the tail of a slow
// fleet: 33 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 17)

var (
	buildLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "change_to_push_seconds",
		Help:    "From a change seen in the view to the snapshots that carry it being set (pushed to connected proxies).",
		Buckets: latencyBuckets,
	})
	ackLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "change_to_ack_seconds",
		Help:    "From a change seen in the view to the first proxy of a locality acknowledging the load assignments that carry it.",
		Buckets: latencyBuckets,
	})
	rebuildDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "rebuild_seconds",
		Help:    "Time to recompute targets and changed load assignments for every locality.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18), // 0.1 ms .. 13 s
	})
	pushBytes = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "push_bytes",
		Help:    "Size of xDS responses sent to proxies, by resource type.",
		Buckets: prometheus.ExponentialBuckets(256, 4, 10),
	}, []string{"type"})
	gatewayDown = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "remote_gateway_down",
		Help: "1 while a remote cluster's east-west gateway fails its probe (its cluster gets no traffic), else 0.",
	}, []string{"gateway"})
	groupsGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "groups",
		Help: "Groups of proxies (one per locality of this cluster that has open streams), each with its own snapshot.",
	})
	claimsIgnored = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "locality_claims_ignored_total",
		Help: "Proxy streams whose claimed locality was not honored (they joined the cluster's default group), by reason (UndeclaredZone, ForeignRegion).",
	}, []string{"reason"})
	handshakeFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "handshake_failures_total",
		Help: "TLS handshakes the xDS port refused: clients without a certificate of this cluster's mesh identities.",
	})
	allowedIdentities = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "allowed_identities",
		Help: "With mTLS: the exact SPIFFE IDs clients accept as servers, summed over the global service ports served.",
	})
	unservable = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "ports_without_identity",
		Help: "With mTLS: global service ports no identity may serve (no authorized, registered cluster publishes a member).",
	})
	recomputedGlobals = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "recomputed_global_services_total",
		Help: "Global services whose targets a rebuild recomputed: those the changes it carried can affect.",
	})
	builtAssignments = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "built_load_assignments_total",
		Help: "Load assignments built (validated and serialized once each), over every group: one per group for each target whose served form changed.",
	})
	droppedResponses = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "dropped_responses_total",
		Help: "Responses a stream's full channel refused (never expected: a stream holds one watch per type).",
	})
	policiesGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "policies",
		Help: "Policy generations whose resources connected proxies subscribe to, by state: Programmed (every subscriber ACKed them), Refused (a proxy NACKed them), Pending.",
	}, []string{"state"})
	nacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "nacks_total",
		Help: "Responses proxies rejected, by resource type.",
	}, []string{"type"})
)

// RegisterMetrics registers the xDS server's collectors with reg. Call it once per
// registry: registering twice panics.
func RegisterMetrics(reg prometheus.Registerer) {
	reg.MustRegister(buildLatency, ackLatency, rebuildDuration, pushBytes, gatewayDown, nacks, groupsGauge, claimsIgnored, handshakeFailures,
		allowedIdentities, unservable, recomputedGlobals, builtAssignments, droppedResponses, propagationSeconds, propagationDiscarded, policiesGauge)
}
