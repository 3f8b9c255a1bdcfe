package trust

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshfed/meshfed/internal/creds/pki"
)

// intermediateKeyUsage is what an intermediate may do: sign workload certificates.
const intermediateKeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature

var (
	oidSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
)

// basicConstraints is the ASN.1 of RFC 5280 section 4.2.1.9.
type basicConstraints struct {
	IsCA       bool `asn1:"optional"`
	MaxPathLen int  `asn1:"optional,default:-1"`
}

// NewIntermediateCSR makes, in the member cluster, a fresh ECDSA P-256 key and a CSR for
// the cluster's intermediate CA, naming exactly what meshca.SignIntermediate requires:
// the cluster's ID, a CA of path length 0, and the name constraints that bind it to the
// cluster's identity domain (see CheckIntermediateBound). The key stays with the
// caller; only the CSR goes to the hub.
func NewIntermediateCSR(trustDomain, cluster string) (csrPEM, keyPEM []byte, err error) {
	key, err := pki.NewKey()
	if err != nil {
		return nil, nil, err
	}
	csrPEM, err = IntermediateCSR(key, trustDomain, cluster)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = pki.EncodeKey(key)
	return csrPEM, keyPEM, err
}

// IntermediateCSR makes a CSR for the cluster's intermediate CA with an existing key,
// for a member that renews without changing its key.
func IntermediateCSR(key crypto.Signer, trustDomain, cluster string) ([]byte, error) {
	id, err := ClusterID(trustDomain, cluster)
	if err != nil {
		return nil, err
	}
	uri, err := url.Parse(id)
	if err != nil {
		return nil, invalidf("cluster ID %q: %v", id, err)
	}
	bc, err := asn1.Marshal(basicConstraints{IsCA: true, MaxPathLen: 0})
	if err != nil {
		return nil, err
	}
	nc, err := clusterConstraintsExtension(trustDomain, cluster)
	if err != nil {
		return nil, err
	}
	ku, err := marshalKeyUsage(intermediateKeyUsage)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Organization: []string{Organization}, CommonName: IntermediateCommonName(cluster)},
		URIs:    []*url.URL{uri},
		ExtraExtensions: []pkix.Extension{
			{Id: oidBasicConstraints, Critical: true, Value: bc},
			{Id: oidKeyUsage, Critical: true, Value: ku},
			nc,
		},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("create intermediate CSR for cluster %q: %w", cluster, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ValidateIntermediateCSR checks that csrPEM is a well-signed CSR for exactly the
// intermediate identity of cluster in trustDomain: subject O=meshfed,
// CN="meshfed intermediate <cluster>", one URI SAN spiffe://<td>/cluster/<cluster>, no
// other names; basic constraints CA:TRUE with path length 0; exactly the cluster's
// critical name constraints (URIs of <cluster>.<td> only, no DNS, IP or email name);
// and no extensions but those and a key usage for certificate signing. A CSR naming
// another cluster fails with an error wrapping ErrWrongCluster; every failure wraps
// ErrInvalid.
//
// cert-manager copies a CSR's subject, names and extensions into the certificate it
// signs, which is why the hub checks all of them before it creates a
// CertificateRequest.
func ValidateIntermediateCSR(csrPEM []byte, trustDomainName, cluster string) (*x509.CertificateRequest, error) {
	wantID, err := ClusterID(trustDomainName, cluster)
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, invalidf("CSR: no PEM CERTIFICATE REQUEST block")
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, invalidf("CSR: trailing data after the CERTIFICATE REQUEST block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, invalidf("CSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, invalidf("CSR: bad signature: %v", err)
	}

	// Which cluster does the CSR name? Answer that first, so that a request for another
	// cluster gets the error that says so, whatever else is wrong with it.
	cn := csr.Subject.CommonName
	if other, ok := strings.CutPrefix(cn, intermediateCNPrefix); ok && other != cluster {
		return nil, wrongCluster(cluster, fmt.Sprintf("common name %q", cn))
	}
	for _, u := range csr.URIs {
		id, err := spiffeid.FromURI(u)
		if err != nil {
			continue
		}
		if id.TrustDomain().Name() != trustDomainName {
			return nil, fmt.Errorf("%w: %w: CSR URI SAN %q is in trust domain %q, the mesh is %q",
				ErrInvalid, ErrTrustDomainMismatch, u, id.TrustDomain().Name(), trustDomainName)
		}
		if other, ok := strings.CutPrefix(id.Path(), "/cluster/"); ok && other != cluster {
			return nil, wrongCluster(cluster, fmt.Sprintf("URI SAN %q", u))
		}
	}

	if cn != IntermediateCommonName(cluster) {
		return nil, invalidf("CSR common name %q: want %q", cn, IntermediateCommonName(cluster))
	}
	if !slices.Equal(csr.Subject.Organization, []string{Organization}) || len(csr.Subject.Names) != 2 {
		return nil, invalidf("CSR subject %q: want exactly O=%s, CN=%s", csr.Subject, Organization, IntermediateCommonName(cluster))
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != wantID {
		return nil, invalidf("CSR URI SANs %v: want exactly [%s]", csr.URIs, wantID)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 {
		return nil, invalidf("CSR has DNS, IP or email SANs; an intermediate carries only its SPIFFE ID")
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := checkCSRExtensions(csr, trustDomainName, cluster); err != nil {
		return nil, err
	}
	return csr, nil
}

func wrongCluster(cluster, what string) error {
	return fmt.Errorf("%w: %w: %s; this request is for cluster %q and the hub signs only a cluster's own intermediate",
		ErrInvalid, ErrWrongCluster, what, cluster)
}

func checkCSRExtensions(csr *x509.CertificateRequest, trustDomain, cluster string) error {
	seen := map[string]bool{}
	var bc *pkix.Extension
	for _, ext := range csr.Extensions {
		key := ext.Id.String()
		if seen[key] {
			return invalidf("CSR repeats extension %s", key)
		}
		seen[key] = true
		switch {
		case ext.Id.Equal(oidSubjectAltName):
			// Checked through csr.URIs and friends.
		case ext.Id.Equal(oidBasicConstraints):
			bc = &ext
		case ext.Id.Equal(oidNameConstraints):
			if err := checkCSRConstraints(ext, trustDomain, cluster); err != nil {
				return err
			}
		case ext.Id.Equal(oidKeyUsage):
			ku, err := parseKeyUsage(ext.Value)
			if err != nil {
				return err
			}
			if ku != intermediateKeyUsage {
				return invalidf("CSR key usage %#x: want exactly cert sign and digital signature (%#x)", ku, intermediateKeyUsage)
			}
		default:
			return invalidf("CSR asks for extension %s; an intermediate CSR may carry only subject alternative names, basic constraints, name constraints and key usage", key)
		}
	}
	// A missing name constraint first: it is what a CSR of an agent from before
	// cluster-bound identities lacks, and the message says to upgrade it.
	if !seen[oidNameConstraints.String()] {
		return invalidf("CSR has no name constraints; cluster %q's intermediate must be limited to URIs of %s (as trust.NewIntermediateCSR makes it: upgrade the cluster's agent)",
			cluster, ClusterTrustDomain(trustDomain, cluster))
	}
	if bc == nil {
		return invalidf("CSR has no basic constraints; an intermediate CSR must ask for CA:TRUE, pathlen:0")
	}
	var v basicConstraints
	if rest, err := asn1.Unmarshal(bc.Value, &v); err != nil || len(rest) > 0 {
		return invalidf("CSR basic constraints do not parse")
	}
	switch {
	case !v.IsCA:
		return invalidf("CSR basic constraints say CA:FALSE; an intermediate is a CA")
	case v.MaxPathLen != 0:
		return invalidf("CSR basic constraints have %s; an intermediate signs workloads only and must ask for pathlen:0", pathLen(v.MaxPathLen))
	case !bc.Critical:
		return invalidf("CSR basic constraints are not critical")
	}
	return nil
}

func pathLen(n int) string {
	if n < 0 {
		return "no path length"
	}
	return fmt.Sprintf("path length %d", n)
}

func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return invalidf("ECDSA key on curve %s: want P-256 or P-384", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return nil
		}
		return invalidf("RSA key of %d bits: want at least 2048", k.N.BitLen())
	default:
		return invalidf("public key of type %T: want ECDSA P-256/P-384 or RSA", pub)
	}
}

// marshalKeyUsage encodes a key usage as the DER BIT STRING of RFC 5280 4.2.1.3: bit i
// (counting from the most significant bit of the first byte) is usage 1<<i.
func marshalKeyUsage(ku x509.KeyUsage) ([]byte, error) {
	n := 0
	for i := range 16 {
		if ku&(1<<i) != 0 {
			n = i + 1
		}
	}
	b := make([]byte, (n+7)/8)
	for i := range n {
		if ku&(1<<i) != 0 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	return asn1.Marshal(asn1.BitString{Bytes: b, BitLength: n})
}

func parseKeyUsage(der []byte) (x509.KeyUsage, error) {
	var bs asn1.BitString
	if rest, err := asn1.Unmarshal(der, &bs); err != nil || len(rest) > 0 {
		return 0, invalidf("CSR key usage does not parse")
	}
	var ku x509.KeyUsage
	for i := range min(bs.BitLength, 16) {
		if bs.At(i) != 0 {
			ku |= 1 << i
		}
	}
	return ku, nil
}
