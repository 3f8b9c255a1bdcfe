package xds

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	buildLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "change_to_push_seconds",
		Help:    "From a change seen in the view to the snapshots that carry it being set (pushed to connected proxies).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	ackLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "change_to_ack_seconds",
		Help:    "From a change seen in the view to the first proxy of a locality acknowledging the load assignments that carry it.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	rebuildDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "rebuild_seconds",
		Help:    "Time to recompute targets and changed load assignments for every locality.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
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
	nacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "xds", Name: "nacks_total",
		Help: "Responses proxies rejected, by resource type.",
	}, []string{"type"})
)

// RegisterMetrics registers the package's collectors with reg. The component that
// runs this package calls it once on the registry it serves, so that each
// component exports only its own metrics.
func RegisterMetrics(reg prometheus.Registerer) {
	reg.MustRegister(buildLatency, ackLatency, rebuildDuration, pushBytes, gatewayDown, nacks)
}
