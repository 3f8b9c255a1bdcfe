// Package sandbox runs a whole meshfed federation on one machine: a hub control plane
// and N member control planes (real etcd and kube-apiserver processes, package
// localkube), the hub and one agent per member as real `meshfed` processes, and
// registration through the same code path as `meshfedctl cluster register`.
//
// It is `meshfedctl dev up` and the end-to-end tests' federation. Every process it
// starts dies with the process that started it (package proc), and Down stops them
// all. Agents run with their own ServiceAccount's RBAC in their member cluster, as
// they would in a real one, not as administrators.
package sandbox
