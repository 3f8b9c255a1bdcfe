package view

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/internal/etcd/admit"
)

var (
	rejectedEndpoints = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed",
		Subsystem: "view",
		Name:      "rejected_endpoints",
		Help:      "Endpoints of member clusters' records this reader refuses now, by the cluster that published them and the reason (ZoneNotDeclared, AddressReserved, AddressOutOfRange, DuplicateAddress, InvalidLabels, TooManyEndpoints).",
	}, []string{"cluster", "reason"})

	rejectedRecords = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed",
		Subsystem: "view",
		Name:      "rejected_records",
		Help:      "Whole records of member clusters this reader refuses now, by the cluster that published them and the reason (TooManyServices, RecordTooLarge, ServiceNotAuthorized).",
	}, []string{"cluster", "reason"})
)

func rejectedGauge(reason string) *prometheus.GaugeVec {
	if admit.PerRecord(reason) {
		return rejectedRecords
	}
	return rejectedEndpoints
}

// RegisterMetrics registers the package's collectors with reg. The component that
// runs a View (the hub, an agent) calls it once on the registry it serves.
func RegisterMetrics(reg prometheus.Registerer) {
	reg.MustRegister(rejectedEndpoints, rejectedRecords)
}
