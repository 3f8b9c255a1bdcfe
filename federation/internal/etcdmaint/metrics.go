package etcdmaint

import (
	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

const (
	namespace = "meshfed"
	subsystem = "hub_etcd"
)

func gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}, labels)
}

func gauge1(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help})
}

func counter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}, labels)
}

var (
	dbSize = gauge("db_size_bytes",
		"Size of the endpoint's database file, free pages included: what etcd compares with its quota.", "endpoint")
	dbSizeInUse = gauge("db_size_in_use_bytes",
		"Bytes of the endpoint's database file holding live data (after compaction, before defragmentation).", "endpoint")
	fragmentation = gauge("db_fragmentation_ratio",
		"Share of the endpoint's database file that is free: (size - in use) / size; defragmentation reclaims it.", "endpoint")
	quotaBytes = gauge("quota_bytes",
		"The endpoint's backend quota: at this database size etcd raises NOSPACE and refuses writes.", "endpoint")
	alarmsActive = gauge("alarms_active",
		"Members with an active etcd alarm, by alarm type (NOSPACE, CORRUPT).", "alarm")
	compactedRevision = gauge1("compacted_revision",
		"The revision the hub last compacted the etcd history to.")

	compactions = counter("compactions_total",
		"Compactions the hub ran, by reason (periodic, nospace) and result (ok, error; already: etcd had compacted further).", "reason", "result")
	defrags = counter("defrags_total",
		"Defragmentations the hub ran, by endpoint, reason (fragmented, nospace) and result (ok, error).", "endpoint", "reason", "result")
	recoveries = counter("nospace_recoveries_total",
		"NOSPACE recoveries (compact, defragment, disarm), by result: ok (alarm disarmed), full (live data fills the quota, "+
			"alarm left raised), error.", "result")
	checkErrors = counter("check_errors_total",
		"Maintenance checks that could not read an endpoint's status or the alarms, by step (status, alarms).", "step")

	lastCompaction = gauge1("last_compaction_duration_seconds",
		"How long the hub's last compaction took.")
	lastDefrag = gauge("last_defrag_duration_seconds",
		"How long the last defragmentation of the endpoint took: the time it served nothing.", "endpoint")
)

// RegisterMetrics registers the package's collectors with reg. The component that
// runs this package calls it once on the registry it serves.
func RegisterMetrics(reg prometheus.Registerer) {
	reg.MustRegister(dbSize, dbSizeInUse, fragmentation, quotaBytes, alarmsActive, compactedRevision,
		compactions, defrags, recoveries, checkErrors, lastCompaction, lastDefrag)
	// Known alarm types are present at 0, so an alert on them needs no absent().
	for _, a := range []pb.AlarmType{pb.AlarmType_NOSPACE, pb.AlarmType_CORRUPT} {
		alarmsActive.WithLabelValues(a.String())
	}
}
