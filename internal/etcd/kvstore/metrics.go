package kvstore

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Relist reasons, the values of the "reason" label of relistsTotal.
const (
	reasonCompacted   = "compacted"
	reasonWatchError  = "watch_error"
	reasonWatchClosed = "watch_closed"
	reasonListError   = "list_error"
	// Resync was called: the Observer differs from the store.
	reasonResync = "resync"
	// The store is another history than the one read or written before: a
	// new cluster, one restored from a backup, or a key's history rewritten.
	reasonClusterChanged    = "cluster_changed"
	reasonRevisionBackwards = "revision_backwards"
	reasonHistoryDiffers    = "history_differs"
	// The Writer's latest write is gone from the store (writer only).
	reasonWriteLost = "write_lost"
)

// storeChanged says reason is one of a store recreated or restored.
func storeChanged(reason string) bool {
	switch reason {
	case reasonClusterChanged, reasonRevisionBackwards, reasonHistoryDiffers, reasonWriteLost:
		return true
	}
	return false
}

// Write operations, the values of the "op" label of the writer metrics.
const (
	opPut    = "put"
	opDelete = "delete"
	opLease  = "lease"
	opCheck  = "check"
)

var (
	decodeErrorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed",
		Subsystem: "kvstore",
		Name:      "decode_errors_total",
		Help:      "Values under a watched prefix that could not be decoded and were skipped.",
	}, []string{"prefix"})

	refusedValuesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed",
		Subsystem: "kvstore",
		Name:      "refused_values_total",
		Help:      "Values under a watched prefix that the reader's decoder refused on purpose (over their writer's size limit), without decoding them.",
	}, []string{"prefix"})

	pageSplitsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed",
		Subsystem: "kvstore",
		Name:      "list_page_splits_total",
		Help:      "List pages fetched again in halves because their response exceeded the client's message limit.",
	}, []string{"prefix"})

	relistsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed",
		Subsystem: "kvstore",
		Name:      "relists_total",
		Help:      "Re-lists of a watched prefix, by the reason the previous watch or list ended.",
	}, []string{"prefix", "reason"})

	writerQueueDepth = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "meshfed",
		Subsystem: "kvstore",
		Name:      "writer_queue_depth",
		Help:      "Keys waiting to be written (retries in backoff excluded).",
	}, []string{"writer"})

	writeErrorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed",
		Subsystem: "kvstore",
		Name:      "write_errors_total",
		Help:      "Failed etcd writes (each is retried), by operation.",
	}, []string{"writer", "op"})

	writerRepublishesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshfed",
		Subsystem: "kvstore",
		Name:      "writer_republishes_total",
		Help:      "Times a writer found the store had lost its keys (recreated or restored from a backup) and rewrote every key, by the signal that showed it.",
	}, []string{"writer", "reason"})

	writeDurationSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "meshfed",
		Subsystem: "kvstore",
		Name:      "write_duration_seconds",
		Help:      "Latency of etcd writes, successful or not, by operation.",
		Buckets:   prometheus.ExponentialBuckets(0.001, 2, 15), // 1ms .. ~16s
	}, []string{"writer", "op"})
)

// RegisterMetrics registers the package's collectors with reg. The component that
// runs this package calls it once on the registry it serves, so that each
// component exports only its own metrics.
func RegisterMetrics(reg prometheus.Registerer) {
	reg.MustRegister(
		decodeErrorsTotal,
		refusedValuesTotal,
		pageSplitsTotal,
		relistsTotal,
		writerQueueDepth,
		writeErrorsTotal,
		writerRepublishesTotal,
		writeDurationSeconds,
	)
}
