// Package register joins a member cluster to the federation, revokes it and removes
// it again: the code path behind `meshfedctl cluster register|revoke|unregister` and
// the sandbox.
//
// Register checks its input and both API servers before it changes anything, then
// creates the cluster's MeshCluster on the hub with a new random registration
// (spec.registration), applies the agent's namespace and RBAC (deploy/agent) in the
// member cluster, waits until the hub has made the registration's etcd user, and
// obtains the agent's etcd client certificate for that user: it makes the key here,
// sends only a CSR to the hub's signer, and writes key and certificate into the member
// cluster's credentials Secret. Running it again with the same settings changes
// nothing (credentials are renewed only when a third of their life is left, or when
// they are not the registration's); different settings for a registered cluster are
// refused, except address ranges given explicitly, which replace the registered
// ones. A revoked cluster, or one registered before registrations existed, gets a new
// registration: certificates of every earlier one are refused from then on, and its
// running agent restarts to take the new ones.
//
// Revoke marks the MeshCluster revoked and waits until the hub has deleted the
// cluster's etcd user and records: from then on etcd refuses its certificates.
//
// Address ranges (the CIDRs the cluster's endpoints may use, which every reader
// enforces) are given, or discovered from the member cluster's nodes' podCIDRs and
// its ServiceCIDRs; Register says what it found, and warns when it found nothing: the
// cluster is then registered without ranges (any routable address).
//
// Unregister deletes the MeshCluster, whose finalizer makes the hub remove the
// cluster's etcd users and every key under its prefix, then removes the agent's objects
// from the member cluster if it is reachable.
package register
