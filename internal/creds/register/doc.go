// Package register joins a member cluster to the federation and removes it again: the
// code path behind `meshfedctl cluster register|unregister` and the sandbox.
//
// Register checks its input and both API servers before it changes anything, then
// creates the cluster's MeshCluster on the hub, applies the agent's namespace and RBAC
// (deploy/agent) in the member cluster, and obtains the agent's etcd client
// certificate: it makes the key here, sends only a CSR to the hub's signer, and writes
// key and certificate into the member cluster's credentials Secret. Running it again
// with the same settings changes nothing (credentials are renewed only when a third
// of their life is left); different settings for a registered cluster are refused,
// except address ranges given explicitly, which replace the registered ones.
//
// Address ranges (the CIDRs the cluster's endpoints may use, which every reader
// enforces) are given, or discovered from the member cluster's nodes' podCIDRs and
// its ServiceCIDRs; Register says what it found, and warns when it found nothing: the
// cluster is then registered without ranges (any routable address).
//
// Unregister deletes the MeshCluster, whose finalizer makes the hub remove the
// cluster's etcd user and every key under its prefix, then removes the agent's objects
// from the member cluster if it is reachable.
package register
