// Package check is `meshfedctl check`: a list of named checks of a federation, each
// passed (✓), warned about (⚠) or failed (✗) with the one thing to do about it, in
// groups: the hub's API server, the CRDs, the hub's etcd, every registered cluster,
// trust, and xDS serving.
//
// What it reads: the hub's API server (MeshCluster status, the CRDs, the hub's
// ConfigMap and Events, the mesh CA's roots), the hub's /metrics (its etcd
// figures) when its address is given, each member cluster's API server (the
// agent's credentials Secret, trust bundle and intermediate) when its kubeconfig is
// given, and each agent's /debug/view and /metrics when its address is given.
//
// Invariants:
//   - Nothing is passed over in silence: a check that cannot be made for want of an
//     address or kubeconfig is a warning saying what to give, never a pass.
//   - Every failure and warning carries a fix; the command exits non-zero when any
//     check failed.
package check
