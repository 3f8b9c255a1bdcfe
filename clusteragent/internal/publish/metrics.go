package publish

import (
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
	reg.MustRegister(exportedServices, publishedEndpoints, publishOpsTotal, errorsTotal, overLimitTotal)
}
