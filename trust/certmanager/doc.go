// Package certmanager runs cert-manager's own controllers, from its Go module, inside
// the hub process — what the hub needs to sign CertificateRequests with a CA
// ClusterIssuer, without deploying cert-manager:
//
//	clusterissuers                  checks the ClusterIssuer's CA Secret, sets Ready
//	certificaterequests-issuer-ca   signs approved CertificateRequests for CA issuers
//	certificaterequests-approver    approves CertificateRequests, in Options.Namespace only
//
// Run first installs cert-manager's CRDs, embedded from the pinned module version (see
// trust/internal/certmanagercrds), so a built binary needs no module cache.
//
// Invariants and limits:
//   - Only CertificateRequests in Options.Namespace (meshfed-system) are approved, so a
//     request naming the mesh root from any other namespace is never signed.
//   - Run as one replica at a time (under the hub's leader election): two would race to
//     sign the same request. Do not run it where a cert-manager is already installed.
//   - This package is the only one in meshfed that imports cert-manager's controllers;
//     they add tens of megabytes to a binary. Import it from the hub only.
//   - cert-manager never stops the event broadcasters its controller contexts start;
//     a few idle goroutines outlive Run. Run it once per process and API server.
package certmanager
