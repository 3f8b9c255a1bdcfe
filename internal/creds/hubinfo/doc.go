// Package hubinfo is what the hub tells the world through its API server, in one place
// for the hub that writes it and the CLI that reads it: the namespace of meshfed's own
// objects, the ConfigMap that says where the hub's etcd is, the signer name of
// agents' etcd client certificates, and the names of clusters' etcd roles and users:
// one user per registration (meshfed-cluster-<cluster>.<registration>), so that a new
// registration or a revocation refuses every certificate of the earlier ones.
package hubinfo
