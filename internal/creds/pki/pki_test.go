package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func newCA(t *testing.T, lifetime time.Duration) *CA {
	t.Helper()
	ca, err := NewCA("test-ca", lifetime)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

func pool(ca *CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func mustParseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	cert, err := ParseCert(certPEM)
	if err != nil {
		t.Fatalf("ParseCert: %v", err)
	}
	return cert
}

func samePrivate(a, b crypto.PrivateKey) bool {
	k, ok := a.(interface{ Equal(crypto.PrivateKey) bool })
	return ok && k.Equal(b)
}

func samePublic(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func TestNewCA(t *testing.T) {
	before := time.Now()
	ca := newCA(t, time.Hour)
	after := time.Now()
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Errorf("IsCA=%v BasicConstraintsValid=%v, want both true", c.IsCA, c.BasicConstraintsValid)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("key usage %v lacks CertSign", c.KeyUsage)
	}
	if c.Subject.CommonName != "test-ca" {
		t.Errorf("CN %q, want test-ca", c.Subject.CommonName)
	}
	// Self-signed: its own pool verifies it.
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool(ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("CA does not verify against itself: %v", err)
	}
	// X.509 times have second resolution.
	if c.NotBefore.After(after.Add(-clockSkew)) || c.NotBefore.Before(before.Add(-clockSkew-time.Second)) {
		t.Errorf("NotBefore %v, want about %v (backdated by the clock skew)", c.NotBefore, before.Add(-clockSkew))
	}
	if d := c.NotAfter.Sub(before.Add(time.Hour)); d < -2*time.Second || d > 2*time.Minute {
		t.Errorf("NotAfter %v, want about an hour from %v", c.NotAfter, before)
	}
	if got := mustParseCert(t, ca.CertPEM); !got.Equal(c) {
		t.Error("CertPEM does not encode Cert")
	}
}

// A CA survives a trip through PEM: the loaded CA is the same certificate and key,
// and what it issues verifies against the original.
func TestLoadCARoundTrip(t *testing.T) {
	ca := newCA(t, time.Hour)
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatalf("KeyPEM: %v", err)
	}
	loaded, err := LoadCA(ca.CertPEM, keyPEM)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if !loaded.Cert.Equal(ca.Cert) || !bytes.Equal(loaded.CertPEM, ca.CertPEM) {
		t.Error("loaded certificate differs from the original")
	}
	if !samePrivate(loaded.Key, ca.Key) {
		t.Error("loaded key differs from the original")
	}
	certPEM, _, err := loaded.Issue(ClientTemplate("alice"), time.Minute)
	if err != nil {
		t.Fatalf("Issue from loaded CA: %v", err)
	}
	if _, err := mustParseCert(t, certPEM).Verify(x509.VerifyOptions{
		Roots: pool(ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Errorf("certificate from loaded CA does not verify against the original: %v", err)
	}
}

func TestLoadCARejects(t *testing.T) {
	ca := newCA(t, time.Hour)
	caKey, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	leafCert, leafKey, err := ca.Issue(ClientTemplate("leaf"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		cert, key []byte
		want      string
	}{
		"leaf certificate": {leafCert, leafKey, "not a CA"},
		"no certificate":   {[]byte("junk"), caKey, "no PEM CERTIFICATE block"},
		"key as cert":      {caKey, caKey, "no PEM CERTIFICATE block"},
		"no key":           {ca.CertPEM, []byte("junk"), "no PEM block"},
		"garbage key":      {ca.CertPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}), "load CA"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := LoadCA(tc.cert, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadCA error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// Issued certificates chain to the CA, carry exactly the EKUs and SANs of their
// template, and come with the matching key.
func TestIssue(t *testing.T) {
	ca := newCA(t, time.Hour)
	tests := map[string]struct {
		tmpl        *x509.Certificate
		wantEKU     []x509.ExtKeyUsage
		wantDNS     []string
		wantIPs     []string
		wantOrgs    []string
		verifyAs    x509.ExtKeyUsage
		notVerifyAs x509.ExtKeyUsage // 0: no usage the certificate lacks
		host        string
	}{
		"server": {
			tmpl:     ServerTemplate("etcd", "localhost", "etcd.example", "127.0.0.1", "::1"),
			wantEKU:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			wantDNS:  []string{"localhost", "etcd.example"},
			wantIPs:  []string{"127.0.0.1", "::1"},
			verifyAs: x509.ExtKeyUsageServerAuth,
			host:     "127.0.0.1",
		},
		"client": {
			tmpl:        ClientTemplate("meshfed-cluster-alpha", "group-a", "group-b"),
			wantEKU:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			wantOrgs:    []string{"group-a", "group-b"},
			verifyAs:    x509.ExtKeyUsageClientAuth,
			notVerifyAs: x509.ExtKeyUsageServerAuth,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			orig := *tc.tmpl
			certPEM, keyPEM, err := ca.Issue(tc.tmpl, 10*time.Minute)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			if tc.tmpl.SerialNumber != nil || !tc.tmpl.NotAfter.Equal(orig.NotAfter) {
				t.Error("Issue modified the caller's template")
			}
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Fatalf("certificate and key do not match: %v", err)
			}
			cert := mustParseCert(t, certPEM)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(ca), KeyUsages: []x509.ExtKeyUsage{tc.verifyAs}}); err != nil {
				t.Errorf("does not verify for %v: %v", tc.verifyAs, err)
			}
			if tc.notVerifyAs != 0 {
				if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(ca), KeyUsages: []x509.ExtKeyUsage{tc.notVerifyAs}}); err == nil {
					t.Errorf("verifies for %v, which it must not carry", tc.notVerifyAs)
				}
			}
			if cert.IsCA {
				t.Error("leaf certificate is a CA")
			}
			if cert.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("key usage %v, want digital signature only", cert.KeyUsage)
			}
			if !slices.Equal(cert.ExtKeyUsage, tc.wantEKU) {
				t.Errorf("EKUs %v, want %v", cert.ExtKeyUsage, tc.wantEKU)
			}
			if !slices.Equal(cert.DNSNames, tc.wantDNS) {
				t.Errorf("DNS names %v, want %v", cert.DNSNames, tc.wantDNS)
			}
			var ips []string
			for _, ip := range cert.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tc.wantIPs) {
				t.Errorf("IPs %v, want %v", ips, tc.wantIPs)
			}
			if cert.Subject.CommonName != tc.tmpl.Subject.CommonName || !slices.Equal(cert.Subject.Organization, tc.wantOrgs) {
				t.Errorf("subject %v, want CN %q O %v", cert.Subject, tc.tmpl.Subject.CommonName, tc.wantOrgs)
			}
			if tc.host != "" {
				for _, h := range append(tc.wantDNS, tc.wantIPs...) {
					if err := cert.VerifyHostname(h); err != nil {
						t.Errorf("VerifyHostname(%s): %v", h, err)
					}
				}
				if err := cert.VerifyHostname("other.example"); err == nil {
					t.Error("certificate valid for a host it does not name")
				}
			}
		})
	}
}

func TestIssueUniqueSerials(t *testing.T) {
	ca := newCA(t, time.Hour)
	seen := map[string]bool{ca.Cert.SerialNumber.String(): true}
	for range 20 {
		certPEM, _, err := ca.Issue(ClientTemplate("x"), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		s := mustParseCert(t, certPEM).SerialNumber.String()
		if seen[s] {
			t.Fatalf("serial %s issued twice", s)
		}
		seen[s] = true
	}
}

// newRequest makes a CSR that asks for much more than a bare common name.
func newRequest(t *testing.T) (*x509.CertificateRequest, *x509.CertificateRequest) {
	t.Helper()
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "root", Organization: []string{"system:masters"}, OrganizationalUnit: []string{"ou"}},
		DNSNames:       []string{"evil.example"},
		IPAddresses:    []net.IP{net.ParseIP("10.0.0.1")},
		EmailAddresses: []string{"evil@example.com"},
		URIs:           []*url.URL{{Scheme: "spiffe", Host: "evil", Path: "/ns/x/sa/y"}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	if err != nil {
		t.Fatalf("ParseCSR: %v", err)
	}
	other, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr, other
}

// SignCSR certifies the requester's public key with the template's subject and
// extensions, never with anything the requester asked for.
func TestSignCSRUsesTemplateNotRequest(t *testing.T) {
	ca := newCA(t, time.Hour)
	csr, _ := newRequest(t)
	certPEM, err := ca.SignCSR(csr, ClientTemplate("meshfed-cluster-alpha"), 10*time.Minute)
	if err != nil {
		t.Fatalf("SignCSR: %v", err)
	}
	cert := mustParseCert(t, certPEM)
	if cert.Subject.CommonName != "meshfed-cluster-alpha" {
		t.Errorf("CN %q, want the template's", cert.Subject.CommonName)
	}
	if len(cert.Subject.Organization)+len(cert.Subject.OrganizationalUnit) > 0 {
		t.Errorf("subject %v carries the request's organizations", cert.Subject)
	}
	if n := len(cert.DNSNames) + len(cert.IPAddresses) + len(cert.EmailAddresses) + len(cert.URIs); n != 0 {
		t.Errorf("certificate carries %d SANs from the request: %v %v %v %v", n, cert.DNSNames, cert.IPAddresses, cert.EmailAddresses, cert.URIs)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("EKUs %v, want client auth only", cert.ExtKeyUsage)
	}
	if !samePublic(cert.PublicKey, csr.PublicKey) {
		t.Error("certificate is not for the CSR's public key")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("does not verify: %v", err)
	}
}

// A CSR whose signature does not check out is never signed: the requester must
// hold the private key of the public key it asks to have certified.
func TestSignCSRRejectsBadSignature(t *testing.T) {
	ca := newCA(t, time.Hour)
	tests := map[string]func(csr *x509.CertificateRequest){
		"tampered signature": func(csr *x509.CertificateRequest) { csr.Signature[len(csr.Signature)/2] ^= 0xff },
		"someone else's key": func(csr *x509.CertificateRequest) {
			k, err := NewKey()
			if err != nil {
				t.Fatal(err)
			}
			csr.PublicKey = k.Public()
		},
		"tampered request": func(csr *x509.CertificateRequest) {
			csr.RawTBSCertificateRequest = bytes.Clone(csr.RawTBSCertificateRequest)
			csr.RawTBSCertificateRequest[len(csr.RawTBSCertificateRequest)-1] ^= 0xff
		},
	}
	for name, tamper := range tests {
		t.Run(name, func(t *testing.T) {
			csr, _ := newRequest(t)
			tamper(csr)
			certPEM, err := ca.SignCSR(csr, ClientTemplate("meshfed-cluster-alpha"), time.Minute)
			if err == nil || !strings.Contains(err.Error(), "bad signature") {
				t.Fatalf("SignCSR = %d bytes, %v; want a bad-signature error", len(certPEM), err)
			}
		})
	}
}

// No certificate outlives its CA.
func TestLifetimeCappedAtCA(t *testing.T) {
	ca := newCA(t, time.Hour)
	csr, _ := newRequest(t)
	signed, err := ca.SignCSR(csr, ClientTemplate("a"), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issued, _, err := ca.Issue(ServerTemplate("b", "localhost"), 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, certPEM := range map[string][]byte{"SignCSR": signed, "Issue": issued} {
		if got := mustParseCert(t, certPEM).NotAfter; !got.Equal(ca.Cert.NotAfter) {
			t.Errorf("%s: NotAfter %v, want the CA's %v", name, got, ca.Cert.NotAfter)
		}
	}

	// A shorter lifetime is kept as asked, from now (X.509 times have second
	// resolution).
	before := time.Now()
	short, _, err := ca.Issue(ClientTemplate("c"), 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	cert := mustParseCert(t, short)
	if cert.NotAfter.Before(before.Add(10*time.Minute).Truncate(time.Second)) || cert.NotAfter.After(after.Add(10*time.Minute)) {
		t.Errorf("NotAfter %v, want 10m after [%v, %v]", cert.NotAfter, before, after)
	}
	if cert.NotBefore.After(after.Add(-clockSkew)) {
		t.Errorf("NotBefore %v not backdated by %v", cert.NotBefore, clockSkew)
	}
}

func TestParseKey(t *testing.T) {
	ec, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := EncodeKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := EncodeECKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(pkcs8, []byte("BEGIN PRIVATE KEY")) || !bytes.Contains(sec1, []byte("BEGIN EC PRIVATE KEY")) {
		t.Fatalf("unexpected PEM types:\n%s\n%s", pkcs8, sec1)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed8, err := EncodeKey(edKey)
	if err != nil {
		t.Fatal(err)
	}

	for name, tc := range map[string]struct {
		data []byte
		want any
	}{
		"PKCS#8 EC":      {pkcs8, ec},
		"SEC1 EC":        {sec1, ec},
		"PKCS#8 Ed25519": {ed8, edKey},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseKey(tc.data)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if !samePrivate(got, tc.want) {
				t.Error("parsed key differs from the encoded one")
			}
		})
	}

	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	xDER, err := x509.MarshalPKCS8PrivateKey(x)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"empty":               {nil, "no PEM block"},
		"not PEM":             {[]byte("not a key"), "no PEM block"},
		"garbage":             {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), ""},
		"X25519 (no signing)": {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: xDER}), "not a signing key"},
		"PKCS#1 RSA":          {pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), ""},
	} {
		t.Run(name, func(t *testing.T) {
			key, err := ParseKey(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseKey = %T, %v; want an error containing %q", key, err, tc.want)
			}
		})
	}
}

func TestNewCSR(t *testing.T) {
	csrPEM, keyPEM, err := NewCSR("meshfed-cluster-alpha")
	if err != nil {
		t.Fatalf("NewCSR: %v", err)
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		t.Fatalf("ParseCSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Errorf("CSR signature: %v", err)
	}
	if csr.Subject.CommonName != "meshfed-cluster-alpha" || len(csr.Subject.Organization) > 0 || len(csr.DNSNames) > 0 {
		t.Errorf("CSR subject %v, SANs %v: want the common name only", csr.Subject, csr.DNSNames)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		t.Fatalf("ParseKey: %v", err)
	}
	if !samePublic(key.Public(), csr.PublicKey) {
		t.Error("key does not match the CSR")
	}

	// Signing it yields a certificate that pairs with the requester's key.
	ca := newCA(t, time.Hour)
	certPEM, err := ca.SignCSR(csr, ClientTemplate(csr.Subject.CommonName), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Errorf("signed certificate does not pair with the requester's key: %v", err)
	}
}

func TestParseRejectsWrongBlocks(t *testing.T) {
	csrPEM, keyPEM, err := NewCSR("x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCSR(keyPEM); err == nil {
		t.Error("ParseCSR accepted a key")
	}
	if _, err := ParseCSR(nil); err == nil {
		t.Error("ParseCSR accepted nothing")
	}
	if _, err := ParseCert(csrPEM); err == nil {
		t.Error("ParseCert accepted a CSR")
	}
}
