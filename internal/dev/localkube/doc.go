// Package localkube runs real Kubernetes control planes on this machine: one etcd and
// one kube-apiserver process per control plane, built from their Go modules by
// hack/binaries/build.sh and cached outside the clone.
//
// It serves the integration tests, the end-to-end tests and the local sandbox
// (meshfedctl dev up). A control plane listens on loopback only, authenticates with
// client certificates from its own CA, authorizes with RBAC, and has meshfed's CRDs
// installed when asked.
//
// Invariants:
//   - No process outlives its owner. Every process runs in its own process group, is
//     killed by the kernel when the owning process dies (Pdeathsig), and Stop kills the
//     whole group: a failed, panicking or killed test leaves nothing running.
//   - Control planes share nothing: separate data directories, ports and CAs. Several
//     may start at once.
//   - There is no kubelet, controller-manager or scheduler: callers create Services and
//     EndpointSlices themselves, as the EndpointSlice controller would.
package localkube
