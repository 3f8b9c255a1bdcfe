package publish

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Publish operations, the values of the "op" label of publishOpsTotal.
const (
	opUpsert = "upsert"
	opDelete = "delete"
)

// Error reasons, the values of the "reason" label of errorsTotal.
const (
	reasonEncode    = "encode"
	reasonDiscovery = "discovery"
	reasonBadKey    = "bad_key"
	// reasonAnnotation: a Service's ServiceAccountsAnnotation names something that
	// is not a service account.
	reasonAnnotation = "annotation"
)

// Publishing stages, the values of the "stage" label of publishStageSeconds.
const (
	stageQueue = "queue"
	stageBuild = "build"
	stageWrite = "write"
)

// latencyBuckets: 0.5 ms doubling to ~33 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 17)

// Every collector has a "cluster" label: one process may run several agents' publishers
// (the tests do; the sandbox runs each agent as a process of its own).
var (
	exportedServices = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed",
		Subsystem: "agent",
		Name:      "exported_services",
		Help:      "Services this agent currently publishes.",
	}, []string{"cluster"})

	publishedEndpoints = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed",
		Subsystem: "agent",
		Name:      "published_endpoints",
		Help:      "Endpoints in the services this agent currently publishes.",
	}, []string{"cluster"})

	publishOpsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed",
		Subsystem: "agent",
		Name:      "publish_operations_total",
		Help:      "Changed service records handed to the writer, by operation (upsert, delete).",
	}, []string{"cluster", "op"})

	overLimitTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed",
		Subsystem: "agent",
		Name:      "publish_over_limit_total",
		Help:      "Service records not written because they exceed the cluster's publish limits (bytes per value, endpoints per service); the last value written stays.",
	}, []string{"cluster"})

	// Buckets from 0.5 ms to ~33 s: the milliseconds of the common case and the
	// seconds of a stalled etcd both resolve.
	publishStageSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "meshfed",
		Subsystem: "agent",
		Name:      "publish_stage_seconds",
		Help:      "Time a changed service record spent in each stage of publishing: queue (informer event to the worker taking it), build (building and encoding the record), write (handed to the writer to etcd's acknowledgement).",
		Buckets:   latencyBuckets,
	}, []string{"cluster", "stage"})

	publishLatencySeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "meshfed",
		Subsystem: "agent",
		Name:      "publish_latency_seconds",
		Help:      "Time from the informer event that changed a service record to etcd's acknowledgement of its write: the publishing agent's share of propagation.",
		Buckets:   latencyBuckets,
	}, []string{"cluster"})

	errorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed",
		Subsystem: "agent",
		Name:      "publish_errors_total",
		Help:      "Errors while computing what to publish, by reason (encode, discovery, bad_key, annotation).",
	}, []string{"cluster", "reason"})
)

// RegisterMetrics registers the package's collectors with reg. The component that
// runs this package calls it once on the registry it serves, so that each
// component exports only its own metrics.
func RegisterMetrics(reg prometheus.Registerer) {
	reg.MustRegister(exportedServices, publishedEndpoints, publishOpsTotal, errorsTotal, overLimitTotal,
		publishStageSeconds, publishLatencySeconds)
}

// observeStages records one written value: its event arrived at seen, the worker
// took it at dequeued, handed it to the writer at handed, and etcd acknowledged it at
// written.
func observeStages(cluster string, seen, dequeued, handed, written time.Time) {
	publishStageSeconds.WithLabelValues(cluster, stageQueue).Observe(dequeued.Sub(seen).Seconds())
	publishStageSeconds.WithLabelValues(cluster, stageBuild).Observe(handed.Sub(dequeued).Seconds())
	publishStageSeconds.WithLabelValues(cluster, stageWrite).Observe(written.Sub(handed).Seconds())
	publishLatencySeconds.WithLabelValues(cluster).Observe(written.Sub(seen).Seconds())
}
