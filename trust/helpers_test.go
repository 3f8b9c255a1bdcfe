package trust

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/creds/pki"
)

const testTD = "mesh.example.org"

// t0 is the tests' fixed "now".
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

type testRoot struct {
	certPEM []byte
	cert    *x509.Certificate
	key     crypto.Signer
}

func newTestRoot(t *testing.T, td string) *testRoot {
	t.Helper()
	certPEM, keyPEM, err := NewRoot(td, 0, t0)
	if err != nil {
		t.Fatalf("NewRoot: %v", err)
	}
	cert, err := pki.ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &testRoot{certPEM: certPEM, cert: cert, key: key}
}

// signCSR stands in for cert-manager's CA issuer in pure tests: it copies the CSR's
// subject, names and name constraints into a CA certificate and drops the path
// length the CSR asks for, as cert-manager does.
func (r *testRoot) signCSR(t *testing.T, csrPEM []byte, notBefore time.Time, life time.Duration) []byte {
	t.Helper()
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	var extra []pkix.Extension
	for _, e := range csr.Extensions {
		if e.Id.Equal(oidNameConstraints) {
			extra = append(extra, e)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		ExtraExtensions:       extra,
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               csr.Subject,
		URIs:                  csr.URIs,
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(life),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, r.cert, csr.PublicKey, r.key)
	if err != nil {
		t.Fatal(err)
	}
	return append(pki.EncodeCert(der), r.certPEM...)
}

// newTestIntermediate makes a cluster's key and CSR and has root sign it.
func newTestIntermediate(t *testing.T, r *testRoot, td, cluster string) (*Intermediate, []byte) {
	t.Helper()
	csrPEM, keyPEM, err := NewIntermediateCSR(td, cluster)
	if err != nil {
		t.Fatalf("NewIntermediateCSR: %v", err)
	}
	chain := r.signCSR(t, csrPEM, t0, 365*24*time.Hour)
	ic, err := LoadIntermediate(chain, keyPEM)
	if err != nil {
		t.Fatalf("LoadIntermediate: %v", err)
	}
	ic.Now = func() time.Time { return t0.Add(time.Hour) }
	return ic, chain
}

func encodeCSR(t *testing.T, tmpl *x509.CertificateRequest, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func name(cn string, org ...string) pkix.Name { return pkix.Name{CommonName: cn, Organization: org} }
