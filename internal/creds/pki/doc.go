// Package pki issues the X.509 certificates meshfed's own plumbing needs: the CAs of
// local control planes and of the hub's etcd, serving certificates, and client
// certificates, from fresh keys or from certificate signing requests.
//
// Keys are ECDSA P-256. Everything is in memory and PEM-encoded; callers decide where
// files go. Signing a CSR never needs the requester's private key, which is how member
// clusters keep theirs. The mesh's own trust chain (root, intermediates, workload
// certificates) belongs to package trust and cert-manager, not here.
package pki
