// Package etcdsec manages who may do what in the hub's etcd.
//
// The hub is etcd's root user. Every member cluster has an etcd role, named by
// hubinfo.EtcdRole, that may write only under the cluster's own prefix
// (/meshfed/v1/clusters/<cluster>/) and read everything under /meshfed/v1/; and one
// etcd user, that of its current registration (hubinfo.EtcdUser:
// meshfed-cluster-<cluster>.<registration>), bound to that role. Users authenticate
// with client certificates whose common name is the user name; they have no password.
// A new registration deletes the users of every earlier one, and revoking or
// unregistering a cluster deletes all of them, so etcd refuses their certificates
// from the next request on. A cluster registered before registrations existed keeps
// its user named like its role until it is registered again.
//
// etcd checks a watch's permission only when it is created, and keeps a lease alive
// for any certificate with a common name: the Guard, a stream interceptor of the
// embedded etcd, ends the open streams of deleted users at once (see Guard).
//
// Every function is idempotent: running it again after a crash or a partial run
// converges to the same users, roles and permissions. RemoveCluster removes a cluster's
// users and role but never its data; the hub deletes that separately.
package etcdsec
