// Package agentcreds defines the Secret that carries an agent's etcd credentials in its
// member cluster, the one format meshfedctl writes and the agent reads.
//
// The Secret lives in the agent's namespace and holds the cluster's name, the hub's
// etcd endpoints, the CA of etcd's serving certificate, and the agent's client
// certificate and key. The key was made where the Secret was written; it never went
// through the hub. The agent renews the certificate and key in place
// (StoreCertificate) before they expire; every other field stays as meshfedctl wrote
// it, and the etcd user (the certificate's common name) never changes.
package agentcreds
