// Package etcdsec manages who may do what in the hub's etcd.
//
// The hub is etcd's root user. Every member cluster has its own etcd user, named by
// UserName, whose role may write only under the cluster's own prefix
// (/meshfed/v1/clusters/<cluster>/) and read everything under /meshfed/v1/. Users
// authenticate with client certificates whose common name is the user name; they have
// no password.
//
// Every function is idempotent: running it again after a crash or a partial run
// converges to the same users, roles and permissions. RemoveCluster removes a cluster's
// user and role but never its data; the hub deletes that separately.
package etcdsec
