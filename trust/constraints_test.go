package trust

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/creds/pki"
)

// TestConstraintsEncoding checks the name constraints a CSR carries against
// crypto/x509: what it writes for the same constraints is the same DER, and what it
// reads from ours is the cluster's constraints.
func TestConstraintsEncoding(t *testing.T) {
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	want := clusterConstraints(testTD, "east")
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: randomSerial(), NotBefore: t0, NotAfter: t0.Add(1),
		BasicConstraintsValid: true, IsCA: true, PermittedDNSDomainsCritical: true,
		PermittedURIDomains: want.PermittedURI, ExcludedDNSDomains: want.ExcludedDNS,
		ExcludedEmailAddresses: want.ExcludedEmail, ExcludedIPRanges: want.ExcludedIP,
	}, &x509.Certificate{}, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	var std pkix.Extension
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidNameConstraints) {
			std = e
		}
	}
	mine, err := clusterConstraintsExtension(testTD, "east")
	if err != nil {
		t.Fatal(err)
	}
	if string(mine.Value) != string(std.Value) || mine.Critical != std.Critical {
		t.Errorf("ours %x (critical %v), crypto/x509 writes %x (critical %v)", mine.Value, mine.Critical, std.Value, std.Critical)
	}
	got, err := parseConstraints(std.Value)
	if err != nil || !got.equal(want) {
		t.Errorf("parseConstraints(crypto/x509's) = {%s}, %v; want {%s}", got, err, want)
	}
	if got := certConstraints(cert); !got.equal(want) {
		t.Errorf("crypto/x509 read {%s}, want {%s}", got, want)
	}
}

func TestCheckIntermediateBound(t *testing.T) {
	root := newTestRoot(t, testTD)
	ic, _ := newTestIntermediate(t, root, testTD, "east")
	if err := CheckIntermediateBound(ic.Cert); err != nil {
		t.Errorf("an intermediate signed from NewIntermediateCSR: %v", err)
	}
	now := t0.Add(time.Hour)
	if IntermediateNeedsRenewal(ic.Cert, now) {
		t.Error("a fresh cluster-bound intermediate needs renewal")
	}

	// sign makes east's intermediate with the given template changes.
	sign := func(change func(*x509.Certificate)) *x509.Certificate {
		t.Helper()
		key, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse("spiffe://" + testTD + "/cluster/east")
		c := clusterConstraints(testTD, "east")
		tmpl := &x509.Certificate{SerialNumber: randomSerial(), Subject: name(IntermediateCommonName("east"), Organization),
			URIs: []*url.URL{u}, NotBefore: t0, NotAfter: t0.Add(365 * 24 * time.Hour), KeyUsage: intermediateKeyUsage,
			BasicConstraintsValid: true, IsCA: true, MaxPathLen: 0, MaxPathLenZero: true, PermittedDNSDomainsCritical: true,
			PermittedURIDomains: c.PermittedURI, ExcludedDNSDomains: c.ExcludedDNS, ExcludedEmailAddresses: c.ExcludedEmail,
			ExcludedIPRanges: c.ExcludedIP}
		change(tmpl)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, root.cert, key.Public(), root.key)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	tests := map[string]struct {
		change   func(*x509.Certificate)
		contains string // "" for bound
	}{
		"pathlen:0":      {func(*x509.Certificate) {}, ""},
		"no path length": {func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = -1, false }, ""},
		"path length 1":  {func(c *x509.Certificate) { c.MaxPathLen = 1 }, "path length 1"},
		"no name constraints": {func(c *x509.Certificate) {
			c.PermittedURIDomains, c.ExcludedDNSDomains, c.ExcludedEmailAddresses, c.ExcludedIPRanges = nil, nil, nil, nil
		}, "no name constraints"},
		"not critical":      {func(c *x509.Certificate) { c.PermittedDNSDomainsCritical = false }, "not critical"},
		"another cluster's": {func(c *x509.Certificate) { c.PermittedURIDomains = []string{"west." + testTD} }, "permitted URI west.mesh.example.org"},
		"DNS names allowed": {func(c *x509.Certificate) { c.ExcludedDNSDomains = nil }, "want {permitted URI east.mesh.example.org; excluded DNS (all)"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cert := sign(tc.change)
			err := CheckIntermediateBound(cert)
			if tc.contains == "" {
				if err != nil {
					t.Fatalf("CheckIntermediateBound: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("CheckIntermediateBound = %v, want an error mentioning %q", err, tc.contains)
			}
			if !IntermediateNeedsRenewal(cert, now) {
				t.Error("an intermediate not bound to its cluster does not need renewal")
			}
		})
	}
}

// TestCSRCarriesConstraints checks what NewIntermediateCSR asks for, read back by
// crypto/x509 from a certificate that copies it as cert-manager does.
func TestCSRCarriesConstraints(t *testing.T) {
	csrPEM, _, err := NewIntermediateCSR(testTD, "east")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	var bc basicConstraints
	for _, e := range csr.Extensions {
		if e.Id.Equal(oidBasicConstraints) {
			if _, err := asn1.Unmarshal(e.Value, &bc); err != nil || !e.Critical {
				t.Fatalf("basic constraints: %v, critical %v", err, e.Critical)
			}
		}
	}
	if !bc.IsCA || bc.MaxPathLen != 0 {
		t.Errorf("CSR basic constraints %+v, want CA with path length 0", bc)
	}
	root := newTestRoot(t, testTD)
	cert, err := pki.ParseCert(root.signCSR(t, csrPEM, t0, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got := certConstraints(cert); !cert.PermittedDNSDomainsCritical || strings.Join(got.PermittedURI, ",") != "east.mesh.example.org" ||
		len(got.ExcludedIP) != 2 || len(got.ExcludedDNS) != 1 || len(got.ExcludedEmail) != 1 {
		t.Errorf("signed intermediate's constraints {%s}, critical %v", got, cert.PermittedDNSDomainsCritical)
	}
}
