package trust

import (
	"crypto/x509"
	"time"
)

// IntermediateExpiry returns the NotAfter of the first certificate in chainPEM, the
// intermediate meshca.SignIntermediate returned, for MeshCluster status.
func IntermediateExpiry(chainPEM []byte) (time.Time, error) {
	certs, err := parseCerts(chainPEM)
	if err != nil {
		return time.Time{}, err
	}
	if !certs[0].IsCA {
		return time.Time{}, invalidf("certificate %q is not an intermediate CA", certs[0].Subject)
	}
	return certs[0].NotAfter, nil
}

// RenewAt is when cert should be renewed: once two thirds of its life have passed,
// so that a third of it is left to get the renewal through (a hub down for a while, a
// slow rollout).
func RenewAt(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter.Add(-life / 3)
}

// NeedsRenewal reports whether, at now, cert has a third of its life or less left
// (now is at or after RenewAt), including when it has expired.
func NeedsRenewal(cert *x509.Certificate, now time.Time) bool {
	return !now.Before(RenewAt(cert))
}
