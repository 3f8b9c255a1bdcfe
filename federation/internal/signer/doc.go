// Package signer is the hub's signer for agents' etcd client certificates: it approves
// and signs Kubernetes CertificateSigningRequests with signer name SignerName on the
// hub's API server.
//
// This is how a member cluster gets its etcd credentials without its private key ever
// leaving the machine that made it: meshfedctl makes a key and a CSR, the hub signs the
// CSR, and only the certificate travels.
//
// A CSR is approved only when all of these hold, and denied with the reason otherwise:
// its common name is the etcd user of the current registration of a MeshCluster that
// is neither revoked nor being deleted (hubinfo.EtcdUser(cluster,
// spec.registration): a certificate of an earlier registration is never issued
// again), it asks for no other subject fields or names, and the user who created it may update
// that MeshCluster (a SubjectAccessReview). Certificates are client-only and live at
// most MaxLifetime. Whoever approved a CSR, the signer signs only common names that are
// clusters' etcd users (never etcd's root). CSRs for other signers are never touched.
// Every denial is also a Warning Event (reason Denied) on the CSR, recorded once: a
// denial is final, so the CSR is never reviewed again.
//
// EtcdRenewals renews those certificates without Kubernetes: an agent writes a CSR
// under its own etcd prefix (keyspace.ClusterEtcdCSR, writable only by its cluster's
// etcd user), and the hub answers at keyspace.ClusterEtcdCert (hub-written). The same
// rules hold (ValidateEtcdCSR): the common name must be the etcd user of that
// cluster's current registration (model.ClusterInfo.Registration; the writer's own, so
// a cluster can renew only itself, and a renewal never changes the registration), nothing else may be asked for,
// the certificate is client-only and lives at most the configured lifetime. The
// answer, with its NotAfter, is the hub's record of the agent's credentials.
package signer
