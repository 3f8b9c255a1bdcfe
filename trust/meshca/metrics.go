package meshca

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Results of an intermediate CSR, the label of intermediateCSRs.
const (
	resultSigned  = "signed"
	resultRefused = "refused"
	resultFailed  = "failed"
)

var (
	intermediateCSRs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed", Subsystem: "trust", Name: "intermediate_csrs_total",
		Help: "Member clusters' intermediate CA CSRs the hub handled, by result: signed; " +
			"refused (the CSR or request was invalid, e.g. it named another cluster); " +
			"failed (valid, but cert-manager did not sign it in time or the API failed).",
	}, []string{"result"})

	rootExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed", Subsystem: "trust", Name: "root_expiry_timestamp_seconds",
		Help: "NotAfter of each active mesh root, as a Unix time, by the Secret holding it.",
	}, []string{"secret"})
)

// RegisterMetrics registers the package's collectors with reg. The component that
// runs this package calls it once on the registry it serves, so that each
// component exports only its own metrics.
func RegisterMetrics(reg prometheus.Registerer) {
	for _, r := range []string{resultSigned, resultRefused, resultFailed} {
		intermediateCSRs.WithLabelValues(r)
	}
	reg.MustRegister(intermediateCSRs, rootExpiry)
}
