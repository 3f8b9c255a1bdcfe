// Package admit decides what of a member cluster's published records a reader
// accepts: each record is a claim that every reader (the hub and every agent, through
// package view) checks against what the hub authorized for the cluster that wrote it,
// its model.ClusterInfo (zones, address ranges, publish limits).
//
// Record is a pure function of the ClusterInfo and one service record: it returns
// the record with every endpoint the cluster may not claim dropped, and what it
// dropped, grouped by reason and zone. Readers count the refusals per cluster and
// reason (view.Rejection) and explanations show them as exclusions.
//
// What is refused, per endpoint: an address that is loopback, link-local
// (169.254/16, fe80::/10), unspecified or multicast (AddressReserved), unless one of
// the cluster's AddressRanges names it (a single-host test federation); outside the
// cluster's AddressRanges when it has any (AddressOutOfRange); a zone the cluster
// does not declare (ZoneNotDeclared; "" for an unknown zone stays allowed: such
// endpoints never match any client's zone, so they cannot pose as another cluster's
// zone); a second endpoint with an address already in the record (DuplicateAddress);
// more labels than model.MaxEndpointLabels, or a label Kubernetes would refuse
// (InvalidLabels);
// the endpoints beyond MaxEndpointsPerService, the highest addresses first
// (TooManyEndpoints). Per cluster, the readers refuse the records beyond MaxServices
// in key order (TooManyServices) and, before decoding, values larger than
// MaxValueBytes (RecordTooLarge): see Limits.
package admit
