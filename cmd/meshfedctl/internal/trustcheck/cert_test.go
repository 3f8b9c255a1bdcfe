package trustcheck

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/trust"
)

// A chain minted with beta's intermediate key for anything but beta's identities
// fails the check, saying why; beta's own workloads pass.
func TestCheckCert(t *testing.T) {
	now := time.Now()
	rootPEM, rootKeyPEM, err := trust.NewRoot("meshfed.local", 0, now)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := pki.ParseCert(rootPEM)
	rootKey, _ := pki.ParseKey(rootKeyPEM)
	csrPEM, keyPEM, err := trust.NewIntermediateCSR("meshfed.local", "beta")
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := pki.ParseCSR(csrPEM)
	var extra []pkix.Extension
	for _, e := range csr.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 30}) {
			extra = append(extra, e) // as cert-manager copies them
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: csr.Subject, URIs: csr.URIs,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
		IsCA: true, ExtraExtensions: extra}, root, csr.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := trust.LoadIntermediate(pki.EncodeCert(der), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	legit, _, err := trust.IssueWorkload(ic, "meshfed.local", "shop", "cart", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	mint := func(uris ...string) []byte {
		key, _ := pki.NewKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Minute),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		for _, u := range uris {
			p, _ := url.Parse(u)
			tmpl.URIs = append(tmpl.URIs, p)
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ic.Cert, key.Public(), ic.Key)
		if err != nil {
			t.Fatal(err)
		}
		return append(pki.EncodeCert(der), pki.EncodeCert(ic.Cert.Raw)...)
	}
	tests := map[string]struct {
		chain  []byte
		detail string // "" for OK
	}{
		"beta's workload": {legit, ""},
		"alpha's cart": {mint("spiffe://alpha.meshfed.local/ns/shop/sa/cart"),
			`the intermediate of cluster "beta" may sign only spiffe://beta.meshfed.local/...`},
		"the bare trust domain": {mint("spiffe://meshfed.local/ns/shop/sa/cart"), "not permitted by any constraint"},
		"two identities": {mint("spiffe://beta.meshfed.local/ns/a/sa/b", "spiffe://beta.meshfed.local/ns/c/sa/d"),
			"exactly one SPIFFE ID"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := CheckCert(name, tc.chain, rootPEM, Roots{}, now)
			if tc.detail == "" {
				if !r.OK || r.Cluster != "beta" || r.Identity != "spiffe://beta.meshfed.local/ns/shop/sa/cart" {
					t.Fatalf("CheckCert = %+v, want OK for beta", r)
				}
				return
			}
			if r.OK || !strings.Contains(r.Detail, tc.detail) {
				t.Fatalf("CheckCert = %+v, want refused with %q", r, tc.detail)
			}
			if CertVerdict([]CertResult{r}) == nil {
				t.Error("CertVerdict passed a refused chain")
			}
		})
	}
}
