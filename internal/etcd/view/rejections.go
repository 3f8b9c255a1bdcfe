package view

import (
	"maps"
	"slices"
)

// Rejection is what this reader refused of one cluster's records for one reason:
// how many, and one example to show an operator. Readers check every record
// against the hub-written ClusterInfo of the cluster that wrote it (its zones,
// address ranges and publish limits) and the services it may provide.
type Rejection struct {
	// Cluster wrote the records.
	Cluster string
	// Reason is a CamelCase reason, e.g. "AddressOutOfRange".
	Reason string
	// Count is how many endpoints or records are refused for Reason now.
	Count int
	// Key is the etcd key of one refused record, Detail says what in it was
	// refused: "endpoint 192.0.2.10 is outside 10.250.0.0/16".
	Key, Detail string
}

// Rejections is what the View refuses now, by cluster and reason, sorted, each with
// one example (the first key in key order).
func (v *View) Rejections() []Rejection {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []Rejection
	for _, cluster := range slices.Sorted(maps.Keys(v.published)) {
		out = append(out, v.rejectionsOf(cluster, v.counts(cluster))...)
	}
	return out
}
