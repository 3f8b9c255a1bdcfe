// Package meshca is the mesh's certificate authority on the hub: the mesh root, held by
// cert-manager as a CA ClusterIssuer, the signing of member clusters' intermediate CAs
// through cert-manager CertificateRequests, and the trust bundle. Package
// trust/certmanager runs the cert-manager controllers it relies on; a hub whose cluster
// already runs cert-manager (with meshfed-system as its cluster resource namespace) can
// use that instead.
//
// On the hub's API server it keeps, in namespace DefaultNamespace (meshfed-system):
//
//	Secret meshfed-root-ca          the first root (kubernetes.io/tls), labelled
//	                                meshfed.io/root=true; later roots are further
//	                                Secrets with that label
//	ClusterIssuer meshfed-root      CA issuer; spec.ca.secretName names the signing root
//	CertificateRequest meshfed-intermediate-<cluster>-*
//	                                one per signing, deleted once answered
//
// Invariants:
//   - Keys never leave where they were made: the root key is made on the hub and lives
//     only in its Secret; intermediates are signed from CSRs, never from keys.
//   - The hub signs only CSRs for the cluster they name, bound to that cluster by name
//     constraints: SignIntermediate validates the CSR (trust.ValidateIntermediateCSR)
//     before creating a CertificateRequest and checks the certificate cert-manager
//     returns, name constraints included (trust.CheckIntermediateBound), before
//     handing it out.
//   - The bundle is every active root: every Secret in the namespace labelled
//     meshfed.io/root=true, signing or not. Removing the label is how a root retires.
//   - EnsureRoot makes a root only when none was ever made; it never replaces one.
//   - The trust domain is fixed by the first root (annotation meshfed.io/trust-domain).
//   - A root rotation (AddRoot, SwitchSigning, RetireRoot; `meshfedctl trust rotate`)
//     never has more than two active roots, always moves towards the newest one
//     (Phase), never signs with a root outside the bundle, and never retires the
//     signing root or the last one. These functions check the hub's side only; that
//     every member cluster caught up before the next step is the caller's to check.
//
// Who may create CertificateRequests in meshfed-system may obtain an intermediate:
// cert-manager's built-in approver approves every request there. Grant that right to
// the hub alone.
//
// Metrics (controller-runtime's registry): meshfed_trust_intermediate_csrs_total{result}
// and meshfed_trust_root_expiry_timestamp_seconds{secret}.
package meshca
