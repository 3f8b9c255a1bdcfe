package view

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

// Rejections is what the view refuses now, by cluster and reason, sorted.
// (Issue 10: filled in by the admission of records.)
func (v *View) Rejections() []Rejection { return nil }
