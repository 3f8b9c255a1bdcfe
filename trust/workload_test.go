package trust

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meshfed/meshfed/internal/creds/pki"
)

func TestIssueWorkloadVerifies(t *testing.T) {
	root := newTestRoot(t, testTD)
	ic, _ := newTestIntermediate(t, root, testTD, "east")
	if ic.TrustDomain != testTD || ic.Cluster != "east" {
		t.Fatalf("LoadIntermediate read trust domain %q, cluster %q", ic.TrustDomain, ic.Cluster)
	}
	chainPEM, keyPEM, err := IssueWorkload(ic, testTD, "shop", "cart", time.Hour)
	if err != nil {
		t.Fatalf("IssueWorkload: %v", err)
	}
	now := t0.Add(90 * time.Minute)
	const id = "spiffe://east.mesh.example.org/ns/shop/sa/cart"
	v, err := VerifyAt(chainPEM, root.certPEM, id, now)
	if err != nil {
		t.Fatalf("VerifyAt: %v", err)
	}
	if v.SPIFFEID != id || v.Cluster != "east" || !v.Root.Equal(root.cert) || len(v.Chain) != 3 {
		t.Errorf("Verified = {ID %s, cluster %q, root %q, chain of %d}", v.SPIFFEID, v.Cluster, v.Root.Subject, len(v.Chain))
	}

	leaf := v.Leaf
	if leaf.NotAfter.Sub(t0.Add(time.Hour)) != time.Hour {
		t.Errorf("leaf lives until %s, want an hour after issue", leaf.NotAfter)
	}
	if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("leaf IsCA=%v KeyUsage=%#x", leaf.IsCA, leaf.KeyUsage)
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		t.Error("keyPEM is not the leaf's key")
	}

	// An independent implementation of the X509-SVID rules agrees.
	certs, err := ParseCertificates(chainPEM)
	if err != nil {
		t.Fatal(err)
	}
	bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("east."+testTD), []*x509.Certificate{root.cert})
	got, _, err := x509svid.Verify(certs, bundle, x509svid.WithTime(now))
	if err != nil {
		t.Fatalf("go-spiffe x509svid.Verify: %v", err)
	}
	if got.String() != id {
		t.Errorf("go-spiffe read %s", got)
	}
}

func TestVerifyRejects(t *testing.T) {
	root := newTestRoot(t, testTD)
	ic, icChain := newTestIntermediate(t, root, testTD, "east")
	chainPEM, _, err := IssueWorkload(ic, testTD, "shop", "cart", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign := newTestRoot(t, testTD)
	otherTD := newTestRoot(t, "other.example.org")
	otherIC, _ := newTestIntermediate(t, otherTD, "other.example.org", "east")
	otherChain, _, err := IssueWorkload(otherIC, "other.example.org", "shop", "cart", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(90 * time.Minute)
	const id = "spiffe://east.mesh.example.org/ns/shop/sa/cart"
	unbound := unboundIntermediate(t, root, "east")
	if v, err := VerifyAt(mint(t, ic, id), root.certPEM, id, t0.Add(90*time.Minute)); err != nil || v.Cluster != "east" {
		t.Fatalf("east's own identity, minted: %+v, %v", v, err)
	}
	leafOnly, _, _ := strings.Cut(string(chainPEM), "-----END CERTIFICATE-----\n")
	leafOnly += "-----END CERTIFICATE-----\n"

	tests := map[string]struct {
		chain, bundle []byte
		id            string
		at            time.Time
		contains      string
	}{
		"foreign root, same trust domain": {chainPEM, foreign.certPEM, id, now, "does not chain"},
		"root of another trust domain":    {chainPEM, otherTD.certPEM, id, now, "does not chain"},
		"another workload's ID":           {chainPEM, root.certPEM, "spiffe://east.mesh.example.org/ns/shop/sa/checkout", now, "want spiffe://east.mesh.example.org/ns/shop/sa/checkout"},
		"expired":                         {chainPEM, root.certPEM, id, now.Add(2 * time.Hour), "expired"},
		"not yet valid":                   {chainPEM, root.certPEM, id, t0.Add(-time.Hour), "does not chain"},
		"without its intermediate":        {[]byte(leafOnly), root.certPEM, id, now, "does not chain"},
		"a CA presented as a workload":    {icChain, root.certPEM, "spiffe://mesh.example.org/cluster/east", now, "is a CA"},
		"other trust domain's leaf":       {otherChain, root.certPEM, id, now, "want spiffe://east.mesh.example.org"},

		// What a thief of east's intermediate key can mint: name constraints refuse
		// everything outside east's identity domain.
		"minted: another cluster's identity": {mint(t, ic, "spiffe://west.mesh.example.org/ns/shop/sa/cart"), root.certPEM,
			"spiffe://west.mesh.example.org/ns/shop/sa/cart", now, `the intermediate of cluster "east" may sign only spiffe://east.mesh.example.org/...`},
		"minted: the bare trust domain": {mint(t, ic, "spiffe://mesh.example.org/ns/shop/sa/cart"), root.certPEM,
			"spiffe://mesh.example.org/ns/shop/sa/cart", now, "not permitted"},
		"minted: another trust domain": {mint(t, ic, "spiffe://other.example.org/ns/shop/sa/cart"), root.certPEM,
			"spiffe://other.example.org/ns/shop/sa/cart", now, "not permitted"},
		"minted: a subdomain of east's": {mint(t, ic, "spiffe://x.east.mesh.example.org/ns/shop/sa/cart"), root.certPEM,
			"spiffe://x.east.mesh.example.org/ns/shop/sa/cart", now, `outside the identity domain of cluster "east"`},
		"minted: east's identity with a DNS name": {mint(t, ic, id, "cart.shop.svc"), root.certPEM, id, now, "excluded"},
		"minted: east's identity with an IP":      {mint(t, ic, id, "10.0.0.1"), root.certPEM, id, now, "excluded"},
		// An intermediate signed before name constraints: X.509 lets it sign
		// anything, Verify still refuses what is not its cluster's.
		"old unconstrained intermediate, another cluster's identity": {mint(t, unbound, "spiffe://west.mesh.example.org/ns/shop/sa/cart"), root.certPEM,
			"spiffe://west.mesh.example.org/ns/shop/sa/cart", now, `outside the identity domain of cluster "east", whose intermediate issued it`},
		"old unconstrained intermediate, the bare trust domain": {mint(t, unbound, "spiffe://mesh.example.org/ns/shop/sa/cart"), root.certPEM,
			"spiffe://mesh.example.org/ns/shop/sa/cart", now, "may speak only for spiffe://east.mesh.example.org/..."},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := VerifyAt(tc.chain, tc.bundle, tc.id, tc.at)
			if err == nil {
				t.Fatal("VerifyAt accepted it")
			}
			if !errors.Is(err, ErrNotVerified) {
				t.Errorf("error %q does not wrap ErrNotVerified", err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not mention %q", err, tc.contains)
			}
		})
	}

	t.Run("bundle with both roots", func(t *testing.T) {
		bundle := append(append([]byte{}, foreign.certPEM...), root.certPEM...)
		v, err := VerifyAt(chainPEM, bundle, id, now)
		if err != nil {
			t.Fatalf("VerifyAt: %v", err)
		}
		if !v.Root.Equal(root.cert) {
			t.Errorf("anchored at %q, want the root that signed", v.Root.Subject)
		}
	})
	t.Run("malformed input", func(t *testing.T) {
		for _, in := range [][3]string{
			{"", string(root.certPEM), id},
			{string(chainPEM), "junk", id},
			{string(chainPEM), string(root.certPEM), "https://example.org"},
		} {
			if _, err := VerifyAt([]byte(in[0]), []byte(in[1]), in[2], now); !errors.Is(err, ErrInvalid) {
				t.Errorf("VerifyAt(%.20q, %.20q, %q) = %v, want ErrInvalid", in[0], in[1], in[2], err)
			}
		}
	})
}

func TestIssueWorkloadLimits(t *testing.T) {
	root := newTestRoot(t, testTD)
	ic, _ := newTestIntermediate(t, root, testTD, "east")

	t.Run("never outlives the intermediate", func(t *testing.T) {
		chain, _, err := IssueWorkload(ic, testTD, "shop", "cart", 10*365*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		certs, _ := ParseCertificates(chain)
		if !certs[0].NotAfter.Equal(ic.Cert.NotAfter) {
			t.Errorf("leaf NotAfter %s, intermediate %s", certs[0].NotAfter, ic.Cert.NotAfter)
		}
		if certs[0].NotBefore.Before(ic.Cert.NotBefore) {
			t.Errorf("leaf NotBefore %s precedes the intermediate's %s", certs[0].NotBefore, ic.Cert.NotBefore)
		}
	})
	t.Run("default lifetime", func(t *testing.T) {
		chain, _, err := IssueWorkload(ic, testTD, "shop", "cart", 0)
		if err != nil {
			t.Fatal(err)
		}
		certs, _ := ParseCertificates(chain)
		if got := certs[0].NotAfter.Sub(ic.Now()); got != DefaultWorkloadLifetime {
			t.Errorf("lifetime %s, want %s", got, DefaultWorkloadLifetime)
		}
	})
	t.Run("another trust domain", func(t *testing.T) {
		_, _, err := IssueWorkload(ic, "other.example.org", "shop", "cart", 0)
		if !errors.Is(err, ErrTrustDomainMismatch) {
			t.Errorf("err = %v, want ErrTrustDomainMismatch", err)
		}
	})
	t.Run("invalid names", func(t *testing.T) {
		_, _, err := IssueWorkload(ic, testTD, "Shop", "cart", 0)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("err = %v, want ErrInvalid", err)
		}
	})
	t.Run("expired intermediate", func(t *testing.T) {
		old := *ic
		old.Now = func() time.Time { return ic.Cert.NotAfter.Add(time.Second) }
		if _, _, err := IssueWorkload(&old, testTD, "shop", "cart", 0); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Errorf("err = %v, want expired", err)
		}
	})
}

func TestLoadIntermediate(t *testing.T) {
	root := newTestRoot(t, testTD)
	_, chain := newTestIntermediate(t, root, testTD, "east")
	_, otherKey, err := NewIntermediateCSR(testTD, "east")
	if err != nil {
		t.Fatal(err)
	}
	rootKey, err := pki.EncodeKey(root.key)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ chain, key []byte }{
		"someone else's key":   {chain, otherKey},
		"the root, not a leaf": {root.certPEM, rootKey},
		"no certificate":       {nil, otherKey},
		"no key":               {chain, nil},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := LoadIntermediate(tc.chain, tc.key); !errors.Is(err, ErrInvalid) {
				t.Errorf("LoadIntermediate = %v, want ErrInvalid", err)
			}
		})
	}
	t.Run("chain keeps no self-signed root", func(t *testing.T) {
		csrPEM, keyPEM, _ := NewIntermediateCSR(testTD, "east")
		ic, err := LoadIntermediate(root.signCSR(t, csrPEM, t0, time.Hour), keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		if len(ic.Chain) != 0 {
			t.Errorf("Chain holds %d certificates", len(ic.Chain))
		}
		chain, _, err := IssueWorkload(ic, testTD, "a", "b", 0)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(chain, root.certPEM) {
			t.Error("workload chain carries the root; peers take it from the bundle")
		}
	})
}

func TestNewRoot(t *testing.T) {
	root := newTestRoot(t, testTD)
	c := root.cert
	if !c.IsCA || c.MaxPathLen != 1 || c.Subject.CommonName != "meshfed root mesh.example.org" || c.Subject.Organization[0] != "meshfed" {
		t.Errorf("root: IsCA=%v MaxPathLen=%d subject %q", c.IsCA, c.MaxPathLen, c.Subject)
	}
	if got := c.NotAfter.Sub(t0); got != DefaultRootLifetime {
		t.Errorf("root lifetime %s", got)
	}
	if _, _, err := NewRoot("Not A Domain", 0, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewRoot(bad trust domain) = %v", err)
	}

	// Path length 1: an intermediate may sign workloads, but a CA it signed may not,
	// even one within the intermediate's name constraints.
	ic, _ := newTestIntermediate(t, root, testTD, "east")
	subKey, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: randomSerial(), Subject: name("sub-CA"),
		NotBefore: t0, NotAfter: t0.Add(24 * time.Hour), KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true},
		ic.Cert, subKey.Public(), ic.Key)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	const id = "spiffe://east.mesh.example.org/ns/shop/sa/cart"
	leaf := mint(t, &Intermediate{Cert: sub, Key: subKey, Cluster: "east"}, id)
	leaf = append(leaf, pki.EncodeCert(ic.Cert.Raw)...)
	_, err = VerifyAt(leaf, root.certPEM, id, t0.Add(90*time.Minute))
	if !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), "path length") {
		t.Errorf("a leaf under a sub-CA of an intermediate: %v, want refused for the path length", err)
	}
}

// mint signs, with ic's key, a workload certificate for uri (and any DNS names or IP
// addresses given) whatever the intermediate may sign: what a thief of the key can
// make. It returns the leaf and the intermediate.
func mint(t *testing.T, ic *Intermediate, uri string, names ...string) []byte {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: randomSerial(), URIs: []*url.URL{u}, NotBefore: t0, NotAfter: t0.Add(2 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ic.Cert, key.Public(), ic.Key)
	if err != nil {
		t.Fatal(err)
	}
	return append(pki.EncodeCert(der), pki.EncodeCert(ic.Cert.Raw)...)
}

// unboundIntermediate is cluster's intermediate as the hub signed it before
// identities were bound to clusters: no name constraints.
func unboundIntermediate(t *testing.T, r *testRoot, cluster string) *Intermediate {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := ClusterID(testTD, cluster)
	u, _ := url.Parse(id)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: randomSerial(),
		Subject: name(IntermediateCommonName(cluster), Organization), URIs: []*url.URL{u}, NotBefore: t0, NotAfter: t0.Add(365 * 24 * time.Hour),
		KeyUsage: intermediateKeyUsage, BasicConstraintsValid: true, IsCA: true}, r.cert, key.Public(), r.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Intermediate{Cert: cert, Key: key, TrustDomain: testTD, Cluster: cluster}
}
