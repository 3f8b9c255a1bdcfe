package trust

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"time"

	"github.com/meshfed/meshfed/internal/creds/pki"
)

// NewRoot makes a self-signed mesh root CA for trustDomain: a fresh ECDSA P-256 key,
// subject O=meshfed, CN="meshfed root <trust domain>", valid from now (backdated by a
// few minutes for skewed clocks) for lifetime (default DefaultRootLifetime).
//
// The root allows exactly one CA below it (path length 1): a member cluster's
// intermediate may sign workload certificates but no further CAs, which cert-manager
// cannot express on the intermediate itself.
func NewRoot(trustDomain string, lifetime time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	if err := ValidateTrustDomain(trustDomain); err != nil {
		return nil, nil, err
	}
	if lifetime <= 0 {
		lifetime = DefaultRootLifetime
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{Organization}, CommonName: RootCommonName(trustDomain)},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("make root for trust domain %q: %w", trustDomain, err)
	}
	keyPEM, err = pki.EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pki.EncodeCert(der), keyPEM, nil
}

// ParseCertificates parses every PEM CERTIFICATE block in data (a chain or a bundle).
func ParseCertificates(data []byte) ([]*x509.Certificate, error) { return parseCerts(data) }
