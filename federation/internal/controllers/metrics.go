package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	clusterConnected = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "hub", Name: "cluster_connected",
		Help: "1 while the cluster's agent holds a live heartbeat lease, else 0.",
	}, []string{"cluster"})
	clusterEndpoints = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "hub", Name: "cluster_exported_endpoints",
		Help: "Endpoints the cluster publishes, ready or not.",
	}, []string{"cluster"})
	clusterCredentialsExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "hub", Name: "cluster_etcd_cert_expiry_timestamp_seconds",
		Help: "When the cluster's agent's etcd client certificate, as the hub last signed it, expires (seconds since the epoch).",
	}, []string{"cluster"})
	clusterIntermediateExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "hub", Name: "cluster_intermediate_expiry_timestamp_seconds",
		Help: "When the cluster's mesh CA intermediate, as the hub last signed it, expires (seconds since the epoch); absent without the mesh CA.",
	}, []string{"cluster"})
	orphansDeleted = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "hub", Name: "orphans_deleted_total",
		Help: "Etcd entries the collector deleted because no object on the hub accounted for them.",
	})
)

// RegisterMetrics registers the package's collectors with reg. The component that
// runs this package calls it once on the registry it serves, so that each
// component exports only its own metrics.
func RegisterMetrics(reg prometheus.Registerer) {
	reg.MustRegister(clusterConnected, clusterEndpoints, clusterCredentialsExpiry, clusterIntermediateExpiry, orphansDeleted, hubViewInSync, hubViewDesyncs, hubRejected,
		policyAccepted, policyResolved, policyProgrammedClusters)
}
