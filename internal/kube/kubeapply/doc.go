// Package kubeapply server-side applies multi-document YAML manifests, the way
// `kubectl apply --server-side` does, so that meshfedctl installs exactly the
// manifests under deploy/ that an operator may also apply by hand.
//
// Apply is idempotent and owns its fields under the field manager "meshfed"; Delete
// removes the objects a manifest names and ignores those already gone.
package kubeapply
