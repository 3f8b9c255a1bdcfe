// Package hubinfo is what the hub tells the world through its API server, in one place
// for the hub that writes it and the CLI that reads it: the namespace of meshfed's own
// objects, the ConfigMap that says where the hub's etcd is, and the signer name of
// agents' etcd client certificates.
package hubinfo
