package trust

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshfed/meshfed/internal/creds/pki"
)

// clockSkew backdates workload certificates so that a peer whose clock is slightly
// behind accepts them (never before the intermediate's own NotBefore).
const clockSkew = 5 * time.Minute

// Intermediate is a member cluster's intermediate CA together with its private key,
// which was made in the cluster and never left it. It issues workload certificates.
type Intermediate struct {
	// Cert is the intermediate CA certificate the hub signed.
	Cert *x509.Certificate
	// Key is the intermediate's private key.
	Key crypto.Signer
	// Chain holds the certificates between Cert and a root, if any. The roots
	// themselves are never in it: peers have them in the bundle.
	Chain []*x509.Certificate
	// TrustDomain and Cluster are read from Cert's SPIFFE ID.
	TrustDomain string
	Cluster     string
	// Now is the clock IssueWorkload reads; nil means time.Now.
	Now func() time.Time
}

// LoadIntermediate parses the chain meshca.SignIntermediate returned (the intermediate first)
// and the intermediate's PEM private key, and checks that they belong together and
// that the certificate is a meshfed intermediate CA.
func LoadIntermediate(chainPEM, keyPEM []byte) (*Intermediate, error) {
	certs, err := parseCerts(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("load intermediate: %w", err)
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load intermediate: %w: %v", ErrInvalid, err)
	}
	cert := certs[0]
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, invalidf("load intermediate: %q is not a CA that may sign certificates", cert.Subject)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, invalidf("load intermediate: the key does not belong to certificate %q", cert.Subject)
	}
	td, cluster, err := clusterFromCert(cert)
	if err != nil {
		return nil, fmt.Errorf("load intermediate: %w", err)
	}
	ic := &Intermediate{Cert: cert, Key: key, TrustDomain: td, Cluster: cluster}
	for _, c := range certs[1:] {
		if !selfSigned(c) {
			ic.Chain = append(ic.Chain, c)
		}
	}
	return ic, nil
}

func (ic *Intermediate) now() time.Time {
	if ic.Now != nil {
		return ic.Now()
	}
	return time.Now()
}

// IssueWorkload issues, from the cluster's intermediate, a workload certificate for
// the service account serviceAccount in namespace of the intermediate's cluster: a
// fresh ECDSA P-256 key and a certificate whose only name is the URI SAN
// spiffe://<cluster>.<trustDomain>/ns/<ns>/sa/<sa> (WorkloadID), for TLS client and
// server authentication, valid for lifetime (default
// DefaultWorkloadLifetime) but never beyond the intermediate. chainPEM is the leaf
// followed by the intermediate (and any certificates between it and the root); keyPEM
// is the leaf's PKCS#8 key. It does no I/O.
func IssueWorkload(ic *Intermediate, trustDomain, namespace, serviceAccount string, lifetime time.Duration) (chainPEM, keyPEM []byte, err error) {
	if ic == nil || ic.Cert == nil || ic.Key == nil {
		return nil, nil, invalidf("issue workload certificate: no intermediate")
	}
	if trustDomain != ic.TrustDomain {
		return nil, nil, fmt.Errorf("issue workload certificate: %w: intermediate of cluster %q is in trust domain %q, asked for %q",
			ErrTrustDomainMismatch, ic.Cluster, ic.TrustDomain, trustDomain)
	}
	id, err := WorkloadID(trustDomain, ic.Cluster, namespace, serviceAccount)
	if err != nil {
		return nil, nil, fmt.Errorf("issue workload certificate: %w", err)
	}
	uri, err := url.Parse(id)
	if err != nil {
		return nil, nil, invalidf("issue workload certificate: %v", err)
	}
	if lifetime <= 0 {
		lifetime = DefaultWorkloadLifetime
	}
	now := ic.now()
	notBefore := now.Add(-clockSkew)
	if notBefore.Before(ic.Cert.NotBefore) {
		notBefore = ic.Cert.NotBefore
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(ic.Cert.NotAfter) {
		notAfter = ic.Cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, nil, fmt.Errorf("issue workload certificate: intermediate of cluster %q expired at %s", ic.Cluster, ic.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{Organization}},
		URIs:                  []*url.URL{uri},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ic.Cert, key.Public(), ic.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue workload certificate %s: %w", id, err)
	}
	var chain bytes.Buffer
	chain.Write(pki.EncodeCert(der))
	chain.Write(pki.EncodeCert(ic.Cert.Raw))
	for _, c := range ic.Chain {
		chain.Write(pki.EncodeCert(c.Raw))
	}
	keyPEM, err = pki.EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return chain.Bytes(), keyPEM, nil
}

// Verified describes a chain Verify accepted.
type Verified struct {
	// SPIFFEID is the leaf's identity.
	SPIFFEID string
	// Leaf is the workload certificate.
	Leaf *x509.Certificate
	// Cluster is the member cluster whose intermediate issued the leaf, if the
	// intermediate carries a meshfed cluster ID.
	Cluster string
	// Root is the bundle root the chain ends in: the trust anchor in use.
	Root *x509.Certificate
	// Chain runs from the leaf to Root.
	Chain []*x509.Certificate
}

// Verify checks, at the current time, that chainPEM (a leaf followed by its
// intermediates) chains to a root in bundlePEM and that the leaf is a workload
// certificate whose only URI SAN is spiffeID. See VerifyAt.
func Verify(chainPEM, bundlePEM []byte, spiffeID string) (*Verified, error) {
	return VerifyAt(chainPEM, bundlePEM, spiffeID, time.Now())
}

// VerifyAt is Verify at time now. It checks that:
//   - the leaf chains, through the given intermediates, to a CA in the bundle, every
//     certificate valid at now, for TLS server or client authentication, within every
//     name constraint on the way (a cluster's intermediate may sign only its
//     cluster's identities);
//   - the leaf is not a CA, may not sign certificates, and is for both TLS client and
//     server authentication;
//   - the leaf carries exactly one URI SAN, equal to spiffeID;
//   - a CA in the chain carries a meshfed cluster ID spiffe://<td>/cluster/<cluster>,
//     and the leaf's identity is in that cluster's identity domain
//     (spiffe://<cluster>.<td>/...): a cluster's intermediate speaks only for its own
//     workloads, also when it is an old one without name constraints.
//
// Errors wrap ErrNotVerified (or ErrInvalid for input that does not parse).
func VerifyAt(chainPEM, bundlePEM []byte, spiffeID string, now time.Time) (*Verified, error) {
	want, err := spiffeid.FromString(spiffeID)
	if err != nil {
		return nil, invalidf("SPIFFE ID %q: %v", spiffeID, err)
	}
	certs, err := parseCerts(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("verify: chain: %w", err)
	}
	roots, err := parseCerts(bundlePEM)
	if err != nil {
		return nil, fmt.Errorf("verify: bundle: %w", err)
	}
	leaf := certs[0]
	rootPool := x509.NewCertPool()
	for _, r := range roots {
		if !r.IsCA {
			return nil, invalidf("verify: bundle holds %q, which is not a CA", r.Subject)
		}
		rootPool.AddCert(r)
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}

	if leaf.IsCA {
		return nil, notVerified("leaf %q is a CA, not a workload certificate", leaf.Subject)
	}
	if leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return nil, notVerified("leaf may sign certificates or CRLs")
	}
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if !slices.Contains(leaf.ExtKeyUsage, eku) {
			return nil, notVerified("leaf lacks extended key usage %s", ekuName(eku))
		}
	}
	if len(leaf.URIs) != 1 {
		return nil, notVerified("leaf has %d URI SANs %v, want exactly one SPIFFE ID", len(leaf.URIs), leaf.URIs)
	}
	got, err := spiffeid.FromURI(leaf.URIs[0])
	if err != nil {
		return nil, notVerified("leaf URI SAN %q is not a SPIFFE ID: %v", leaf.URIs[0], err)
	}
	if got != want {
		return nil, notVerified("leaf is %s, want %s", got, want)
	}

	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         rootPool,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) && invalid.Reason == x509.CANotAuthorizedForThisName {
		return nil, notVerified("%s is outside what its issuer may sign: %s (X.509 name constraints: %v)", got, issuerScope(certs[1:]), err)
	}
	if err != nil {
		return nil, notVerified("%s does not chain to a root in the bundle (%d roots): %v", got, len(roots), err)
	}
	chain := chains[0]
	v := &Verified{SPIFFEID: got.String(), Leaf: leaf, Root: chain[len(chain)-1], Chain: chain}
	td := ""
	for _, ca := range chain[1:] {
		if t, c, err := clusterFromCert(ca); err == nil && v.Cluster == "" {
			td, v.Cluster = t, c
		}
	}
	if v.Cluster == "" {
		return nil, notVerified("no CA in %s's chain carries a meshfed cluster ID (spiffe://<td>/cluster/<name>): the identity is bound to no cluster", got)
	}
	if domain := ClusterTrustDomain(td, v.Cluster); got.TrustDomain().Name() != domain {
		return nil, notVerified("%s is outside the identity domain of cluster %q, whose intermediate issued it: that cluster may speak only for spiffe://%s/...",
			got, v.Cluster, domain)
	}
	return v, nil
}

// issuerScope says which identities the intermediates in a chain may sign, for an
// error message.
func issuerScope(intermediates []*x509.Certificate) string {
	for _, ca := range intermediates {
		if _, cluster, err := clusterFromCert(ca); err == nil && len(ca.PermittedURIDomains) > 0 {
			return fmt.Sprintf("the intermediate of cluster %q may sign only spiffe://%s/... and no DNS, IP or email name", cluster, strings.Join(ca.PermittedURIDomains, ", spiffe://"))
		}
	}
	return "an intermediate's name constraints refuse it"
}

func notVerified(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotVerified, fmt.Sprintf(format, args...))
}

func ekuName(eku x509.ExtKeyUsage) string {
	switch eku {
	case x509.ExtKeyUsageServerAuth:
		return "server auth"
	case x509.ExtKeyUsageClientAuth:
		return "client auth"
	}
	return fmt.Sprint(int(eku))
}

// clusterFromCert reads the trust domain and cluster of an intermediate's SPIFFE ID.
func clusterFromCert(cert *x509.Certificate) (trustDomain, cluster string, err error) {
	if len(cert.URIs) != 1 {
		return "", "", invalidf("certificate %q has %d URI SANs, want one cluster SPIFFE ID", cert.Subject, len(cert.URIs))
	}
	id, err := spiffeid.FromURI(cert.URIs[0])
	if err != nil {
		return "", "", invalidf("certificate %q: URI SAN %q: %v", cert.Subject, cert.URIs[0], err)
	}
	c, ok := strings.CutPrefix(id.Path(), "/cluster/")
	if !ok || strings.Contains(c, "/") {
		return "", "", invalidf("certificate %q: %s is not a cluster ID (spiffe://<td>/cluster/<name>)", cert.Subject, id)
	}
	return id.TrustDomain().Name(), c, nil
}

// parseCerts parses every PEM CERTIFICATE block in data; there must be one at least,
// and no other kind of block.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, invalidf("PEM block %q where certificates were expected", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, invalidf("certificate: %v", err)
		}
		out = append(out, c)
	}
	if len(strings.TrimSpace(string(data))) > 0 {
		return nil, invalidf("data that is not PEM after the certificates")
	}
	if len(out) == 0 {
		return nil, invalidf("no PEM certificates")
	}
	return out, nil
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(errors.Join(errors.New("crypto/rand failed"), err)) // it does not, on Linux
	}
	return n.Add(n, big.NewInt(1)) // positive and non-zero, as RFC 5280 requires
}
