// Package trust is meshfed's mesh identity: SPIFFE IDs, the member clusters'
// intermediate CA CSRs, workload certificates, their verification against the trust
// bundle, and when certificates need renewing. Everything here is pure — no API
// server, no files, no clock but the one passed in — so that agents and meshfedctl use
// it without pulling in cert-manager.
//
// The chain of trust is root → intermediate (one per member cluster) → workload:
//
//   - The mesh root is a self-signed CA held by cert-manager on the hub (package
//     trust/meshca; NewRoot makes one). It allows one CA below it (path length 1).
//   - A member cluster's intermediate is a CA whose only name is the URI SAN
//     spiffe://<trust-domain>/cluster/<cluster>, subject O=meshfed,
//     CN="meshfed intermediate <cluster>", with critical name constraints that permit
//     URIs of the cluster's identity domain <cluster>.<trust-domain> only and exclude
//     every DNS name, IP address and email address (CheckIntermediateBound). The
//     cluster makes its key and a CSR (NewIntermediateCSR); the hub signs the CSR
//     (meshca.SignIntermediate).
//   - A workload certificate (IssueWorkload) names exactly one URI SAN,
//     spiffe://<cluster>.<trust-domain>/ns/<namespace>/sa/<service-account>
//     (WorkloadID), for TLS client and server authentication. Its chain is the leaf and the intermediate; the root is in
//     the bundle.
//   - The trust bundle is every active root (meshca.Bundle). Verify checks a chain
//     against it: the core of `meshfedctl trust check`.
//
// Invariants:
//   - Private keys never leave where they were made: NewIntermediateCSR and
//     IssueWorkload return a key to their caller and nothing else sees it; the hub
//     receives only CSRs.
//   - The hub signs only a CSR for the cluster it names: ValidateIntermediateCSR
//     accepts exactly one cluster's identity in the mesh's trust domain and refuses,
//     with ErrWrongCluster, a CSR naming any other cluster; it refuses any name or
//     extension beyond those, because cert-manager copies them into what it signs.
//   - What a cluster's intermediate signs is that cluster's: ValidateIntermediateCSR
//     refuses a CSR without exactly the cluster's name constraints and pathlen:0, so
//     every X.509 verifier refuses a leaf outside <cluster>.<trust-domain>; and Verify
//     refuses an identity outside the issuing cluster's identity domain even under an
//     intermediate without constraints (one signed before they existed, which
//     IntermediateNeedsRenewal renews).
//   - The bundle is every active root, never just the signing one, so that a root can be
//     added before it signs and removed after nothing chains to it (staged rotation).
//   - Verify trusts nothing in the chain it is given but the path to a bundle root.
//
// Errors wrap the sentinel errors ErrInvalid, ErrWrongCluster, ErrTrustDomainMismatch
// and ErrNotVerified.
package trust
