// Package testnet gives tests and the demo hosts of their own: network namespaces,
// each joined to the caller's namespace by a veth pair, with as many addresses as
// asked for.
//
// Kubernetes refuses loopback addresses in EndpointSlices, so processes that
// endpoints point at listen on a Host's addresses instead; the caller reaches them
// over the veth. Traffic never leaves the machine: the subnet (10.250.x.0/24) is
// routed only to the veth. Close deletes the host and every process in it. It needs
// root (CAP_NET_ADMIN), as tests run here and in CI.
package testnet
