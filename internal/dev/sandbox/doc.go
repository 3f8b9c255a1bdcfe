// Package sandbox runs a whole meshfed federation on one machine: a hub control plane
// and N member control planes (real etcd and kube-apiserver processes, package
// localkube), the hub and one agent per member as real `meshfed` processes, and
// registration through the same code path as `meshfedctl cluster register`.
//
// By default the hub is one process with its embedded etcd. With Options.EtcdMembers
// and Options.HubReplicas it is the documented HA hub instead: an external etcd
// cluster of real processes (package etcdcluster) and several hub replicas with
// --leader-elect, every one given every member, and agents given every member through
// the hub ConfigMap. HubLeader reads which replica holds the Lease; StopHubReplica,
// StartHubReplica and Etcd (Kill, Restart, Leader) inject the faults.
//
// It is `meshfedctl dev up` and the end-to-end tests' federation. Every process it
// starts dies with the process that started it (package proc), and Down stops them
// all. Agents run with their own ServiceAccount's RBAC in their member cluster, as
// they would in a real one, not as administrators.
package sandbox
