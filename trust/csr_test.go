package trust

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/meshfed/meshfed/internal/creds/pki"
)

func TestValidateIntermediateCSRAcceptsNewIntermediateCSR(t *testing.T) {
	csrPEM, keyPEM, err := NewIntermediateCSR(testTD, "east")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ValidateIntermediateCSR(csrPEM, testTD, "east")
	if err != nil {
		t.Fatalf("ValidateIntermediateCSR: %v", err)
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeysEqual(key.Public(), csr.PublicKey) {
		t.Error("CSR is not for the returned key")
	}
	if got := csr.URIs[0].String(); got != "spiffe://mesh.example.org/cluster/east" {
		t.Errorf("URI SAN = %s", got)
	}
}

func TestValidateIntermediateCSR(t *testing.T) {
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	uri := func(s string) []*url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return []*url.URL{u}
	}
	ext := func(id asn1.ObjectIdentifier, v any) pkix.Extension {
		der, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return pkix.Extension{Id: id, Critical: true, Value: der}
	}
	kuExt := func(ku x509.KeyUsage) pkix.Extension {
		der, err := marshalKeyUsage(ku)
		if err != nil {
			t.Fatal(err)
		}
		return pkix.Extension{Id: oidKeyUsage, Critical: true, Value: der}
	}
	ncExt := func(c constraints) pkix.Extension {
		der, err := c.marshal()
		if err != nil {
			t.Fatal(err)
		}
		return pkix.Extension{Id: oidNameConstraints, Critical: true, Value: der}
	}
	bcExt := func(pathLen int) pkix.Extension {
		return ext(oidBasicConstraints, basicConstraints{IsCA: true, MaxPathLen: pathLen})
	}
	east := clusterConstraints("mesh.example.org", "east")
	good := func() *x509.CertificateRequest {
		return &x509.CertificateRequest{
			Subject:         name("meshfed intermediate east", "meshfed"),
			URIs:            uri("spiffe://mesh.example.org/cluster/east"),
			ExtraExtensions: []pkix.Extension{bcExt(0), ncExt(east)},
		}
	}
	// set replaces (or adds) the extension with e's OID; drop removes one.
	set := func(r *x509.CertificateRequest, e pkix.Extension) {
		r.ExtraExtensions = append(slices.DeleteFunc(r.ExtraExtensions, func(x pkix.Extension) bool { return x.Id.Equal(e.Id) }), e)
	}
	drop := func(r *x509.CertificateRequest, id asn1.ObjectIdentifier) {
		r.ExtraExtensions = slices.DeleteFunc(r.ExtraExtensions, func(x pkix.Extension) bool { return x.Id.Equal(id) })
	}
	with := func(c constraints, change func(*constraints)) constraints {
		change(&c)
		return c
	}
	rsaKey := func(bits int) crypto.Signer {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)

	tests := map[string]struct {
		mutate   func(*x509.CertificateRequest)
		key      crypto.Signer
		cluster  string
		pem      func([]byte) []byte
		ok       bool
		wrong    bool // wants ErrWrongCluster
		tdErr    bool // wants ErrTrustDomainMismatch
		contains string
	}{
		"cluster-bound CA": {mutate: func(*x509.CertificateRequest) {}, ok: true},
		"with key usage": {mutate: func(r *x509.CertificateRequest) {
			set(r, kuExt(intermediateKeyUsage))
		}, ok: true},
		"without extensions": {mutate: func(r *x509.CertificateRequest) {
			r.ExtraExtensions = nil
		}, contains: "no name constraints"},
		"without basic constraints": {mutate: func(r *x509.CertificateRequest) {
			drop(r, oidBasicConstraints)
		}, contains: "no basic constraints"},
		"without name constraints": {mutate: func(r *x509.CertificateRequest) {
			drop(r, oidNameConstraints)
		}, contains: "no name constraints; cluster \"east\"'s intermediate must be limited to URIs of east.mesh.example.org"},
		"without a path length": {mutate: func(r *x509.CertificateRequest) {
			set(r, bcExt(-1))
		}, contains: "no path length; an intermediate signs workloads only and must ask for pathlen:0"},
		"path length 1": {mutate: func(r *x509.CertificateRequest) {
			set(r, bcExt(1))
		}, contains: "path length 1"},
		"basic constraints not critical": {mutate: func(r *x509.CertificateRequest) {
			e := bcExt(0)
			e.Critical = false
			set(r, e)
		}, contains: "basic constraints are not critical"},
		"name constraints of another cluster": {mutate: func(r *x509.CertificateRequest) {
			set(r, ncExt(clusterConstraints("mesh.example.org", "west")))
		}, contains: "permitted URI west.mesh.example.org"},
		"name constraints of the whole trust domain": {mutate: func(r *x509.CertificateRequest) {
			set(r, ncExt(with(east, func(c *constraints) { c.PermittedURI = []string{"mesh.example.org"} })))
		}, contains: "are {permitted URI mesh.example.org;"},
		"a second permitted URI domain": {mutate: func(r *x509.CertificateRequest) {
			set(r, ncExt(with(east, func(c *constraints) { c.PermittedURI = append(c.PermittedURI, "west.mesh.example.org") })))
		}, contains: "must carry exactly {permitted URI east.mesh.example.org; excluded DNS (all); excluded email (all); excluded IP 0.0.0.0/0,::/0}"},
		"DNS names not excluded": {mutate: func(r *x509.CertificateRequest) {
			set(r, ncExt(with(east, func(c *constraints) { c.ExcludedDNS = nil })))
		}, contains: "name constraints"},
		"IPv6 not excluded": {mutate: func(r *x509.CertificateRequest) {
			set(r, ncExt(with(east, func(c *constraints) { c.ExcludedIP = c.ExcludedIP[:1] })))
		}, contains: "excluded IP 0.0.0.0/0}"},
		"a permitted DNS domain": {mutate: func(r *x509.CertificateRequest) {
			set(r, ncExt(with(east, func(c *constraints) { c.PermittedDNS = []string{"east.example.org"} })))
		}, contains: "permitted DNS east.example.org"},
		"name constraints not critical": {mutate: func(r *x509.CertificateRequest) {
			e := ncExt(east)
			e.Critical = false
			set(r, e)
		}, contains: "not critical"},
		"empty name constraints": {mutate: func(r *x509.CertificateRequest) {
			set(r, pkix.Extension{Id: oidNameConstraints, Critical: true, Value: []byte{0x30, 0x00}})
		}, contains: "are {none}"},
		"name constraints that do not parse": {mutate: func(r *x509.CertificateRequest) {
			set(r, pkix.Extension{Id: oidNameConstraints, Critical: true, Value: []byte{0x04, 0x00}})
		}, contains: "do not parse"},
		"RSA 2048": {mutate: func(*x509.CertificateRequest) {}, key: rsaKey(2048), ok: true},
		"common name of another cluster": {mutate: func(r *x509.CertificateRequest) {
			r.Subject.CommonName = "meshfed intermediate west"
		}, wrong: true, contains: `"meshfed intermediate west"`},
		"URI of another cluster": {mutate: func(r *x509.CertificateRequest) {
			r.URIs = uri("spiffe://mesh.example.org/cluster/west")
		}, wrong: true, contains: "cluster/west"},
		"both names of another cluster, submitted for east": {mutate: func(r *x509.CertificateRequest) {
			r.Subject.CommonName = "meshfed intermediate west"
			r.URIs = uri("spiffe://mesh.example.org/cluster/west")
		}, wrong: true, contains: `for cluster "east"`},
		"a second cluster URI": {mutate: func(r *x509.CertificateRequest) {
			r.URIs = append(r.URIs, uri("spiffe://mesh.example.org/cluster/west")...)
		}, wrong: true},
		"another trust domain": {mutate: func(r *x509.CertificateRequest) {
			r.URIs = uri("spiffe://other.example.org/cluster/east")
		}, tdErr: true},
		"a workload URI": {mutate: func(r *x509.CertificateRequest) {
			r.URIs = uri("spiffe://mesh.example.org/ns/default/sa/default")
		}, contains: "URI SANs"},
		"no URI": {mutate: func(r *x509.CertificateRequest) { r.URIs = nil }, contains: "URI SANs"},
		"a DNS name too": {mutate: func(r *x509.CertificateRequest) {
			r.DNSNames = []string{"example.org"}
		}, contains: "DNS"},
		"no organization": {mutate: func(r *x509.CertificateRequest) {
			r.Subject.Organization = nil
		}, contains: "subject"},
		"an extra subject attribute": {mutate: func(r *x509.CertificateRequest) {
			r.Subject.OrganizationalUnit = []string{"ops"}
		}, contains: "subject"},
		"a common name that names no cluster": {mutate: func(r *x509.CertificateRequest) {
			r.Subject.CommonName = "root"
		}, contains: "common name"},
		"CA:FALSE": {mutate: func(r *x509.CertificateRequest) {
			set(r, ext(oidBasicConstraints, basicConstraints{IsCA: false, MaxPathLen: -1}))
		}, contains: "CA:FALSE"},
		"more key usages": {mutate: func(r *x509.CertificateRequest) {
			set(r, kuExt(intermediateKeyUsage|x509.KeyUsageCRLSign))
		}, contains: "key usage"},
		"extended key usage": {mutate: func(r *x509.CertificateRequest) {
			set(r, ext(asn1.ObjectIdentifier{2, 5, 29, 37}, []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}}))
		}, contains: "2.5.29.37"},
		"RSA 1024":             {mutate: func(*x509.CertificateRequest) {}, key: rsaKey(1024), contains: "1024"},
		"Ed25519":              {mutate: func(*x509.CertificateRequest) {}, key: edKey, contains: "ed25519"},
		"P-224":                {mutate: func(*x509.CertificateRequest) {}, key: p224, contains: "P-224"},
		"invalid cluster name": {mutate: func(*x509.CertificateRequest) {}, cluster: "East_1", contains: "cluster"},
		"bad signature": {mutate: func(*x509.CertificateRequest) {}, pem: func(p []byte) []byte {
			b, _ := pem.Decode(p)
			b.Bytes[len(b.Bytes)-3] ^= 0xff
			return pem.EncodeToMemory(b)
		}, contains: "signature"},
		"not PEM":       {mutate: func(*x509.CertificateRequest) {}, pem: func([]byte) []byte { return []byte("hello") }, contains: "PEM"},
		"trailing data": {mutate: func(*x509.CertificateRequest) {}, pem: func(p []byte) []byte { return append(p, "junk"...) }, contains: "trailing"},
		"a certificate, not a CSR": {mutate: func(*x509.CertificateRequest) {}, pem: func(p []byte) []byte {
			b, _ := pem.Decode(p)
			b.Type = "CERTIFICATE"
			return pem.EncodeToMemory(b)
		}, contains: "CERTIFICATE REQUEST"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := good()
			tc.mutate(r)
			k := tc.key
			if k == nil {
				k = key
			}
			p := encodeCSR(t, r, k)
			if tc.pem != nil {
				p = tc.pem(p)
			}
			cluster := tc.cluster
			if cluster == "" {
				cluster = "east"
			}
			_, err := ValidateIntermediateCSR(p, testTD, cluster)
			if tc.ok {
				if err != nil {
					t.Fatalf("ValidateIntermediateCSR: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("ValidateIntermediateCSR accepted it")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			if got := errors.Is(err, ErrWrongCluster); got != tc.wrong {
				t.Errorf("errors.Is(%q, ErrWrongCluster) = %v, want %v", err, got, tc.wrong)
			}
			if got := errors.Is(err, ErrTrustDomainMismatch); got != tc.tdErr {
				t.Errorf("errors.Is(%q, ErrTrustDomainMismatch) = %v, want %v", err, got, tc.tdErr)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not mention %q", err, tc.contains)
			}
		})
	}
}

// TestKeyUsageEncoding checks marshalKeyUsage and parseKeyUsage against the encoding
// crypto/x509 writes into certificates.
func TestKeyUsageEncoding(t *testing.T) {
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, ku := range []x509.KeyUsage{
		x509.KeyUsageDigitalSignature,
		intermediateKeyUsage,
		x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		x509.KeyUsageDecipherOnly | x509.KeyUsageDigitalSignature,
	} {
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: randomSerial(), KeyUsage: ku, NotBefore: t0, NotAfter: t0.Add(1)}, &x509.Certificate{}, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		var std []byte
		for _, e := range cert.Extensions {
			if e.Id.Equal(oidKeyUsage) {
				std = e.Value
			}
		}
		mine, err := marshalKeyUsage(ku)
		if err != nil {
			t.Fatal(err)
		}
		if string(mine) != string(std) {
			t.Errorf("marshalKeyUsage(%#x) = %x, crypto/x509 writes %x", ku, mine, std)
		}
		back, err := parseKeyUsage(std)
		if err != nil || back != ku {
			t.Errorf("parseKeyUsage(%x) = %#x, %v; want %#x", std, back, err, ku)
		}
	}
}

func TestIDs(t *testing.T) {
	tests := map[string]struct {
		got  func() (string, error)
		want string // "" wants an error
	}{
		"cluster":                      {func() (string, error) { return ClusterID("mesh.example.org", "east-1") }, "spiffe://mesh.example.org/cluster/east-1"},
		"workload":                     {func() (string, error) { return WorkloadID("mesh.example.org", "east", "shop", "cart") }, "spiffe://east.mesh.example.org/ns/shop/sa/cart"},
		"workload, dotted SA":          {func() (string, error) { return WorkloadID("td", "east", "shop", "cart.v2") }, "spiffe://east.td/ns/shop/sa/cart.v2"},
		"workload, cluster with a dot": {func() (string, error) { return WorkloadID("td", "east.x", "shop", "cart") }, ""},
		"workload, empty cluster":      {func() (string, error) { return WorkloadID("td", "", "shop", "cart") }, ""},
		"trust domain with scheme":     {func() (string, error) { return ClusterID("spiffe://mesh", "east") }, ""},
		"trust domain with port":       {func() (string, error) { return ClusterID("mesh:8080", "east") }, ""},
		"upper-case trust domain":      {func() (string, error) { return ClusterID("Mesh", "east") }, ""},
		"empty trust domain":           {func() (string, error) { return ClusterID("", "east") }, ""},
		"cluster with a slash":         {func() (string, error) { return ClusterID("mesh", "a/b") }, ""},
		"namespace with upper case":    {func() (string, error) { return WorkloadID("mesh", "east", "Shop", "cart") }, ""},
		"service account with slash":   {func() (string, error) { return WorkloadID("mesh", "east", "shop", "a/b") }, ""},
		"empty service account":        {func() (string, error) { return WorkloadID("mesh", "east", "shop", "") }, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := tc.got()
			if tc.want == "" {
				if err == nil || !errors.Is(err, ErrInvalid) {
					t.Fatalf("got %q, %v; want an error wrapping ErrInvalid", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
