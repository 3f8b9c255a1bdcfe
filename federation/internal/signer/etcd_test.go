package signer_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshfed/meshfed/federation/internal/signer"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

var errNotYet = errors.New("not yet")

// csrPEM makes a CSR from tmpl with a fresh key.
func csrPEM(t *testing.T, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// A renewal CSR is accepted only for the writer's own cluster's etcd user, with
// nothing but that common name.
func TestValidateEtcdCSR(t *testing.T) {
	good, _, err := pki.NewCSR(hubinfo.EtcdUser("alpha", testReg))
	if err != nil {
		t.Fatal(err)
	}
	tampered := []byte(strings.Replace(string(good), "A", "B", 1))
	for name, tc := range map[string]struct {
		csr  []byte
		want string // "" accepts
	}{
		"own user": {good, ""},
		"earlier registration": {csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: hubinfo.EtcdUser("alpha", hubinfo.NewRegistration())}}),
			"an earlier registration of cluster \"alpha\""},
		"before registrations existed": {csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: hubinfo.EtcdUser("alpha", "")}}),
			"an earlier registration of cluster \"alpha\""},
		"another cluster's": {csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: hubinfo.EtcdUser("beta", testReg)}}), "not cluster \"alpha\"'s etcd user"},
		"etcd root":         {csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "root"}}), "not cluster"},
		"no common name":    {csrPEM(t, &x509.CertificateRequest{}), "not cluster"},
		"with organization": {csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: hubinfo.EtcdUser("alpha", testReg), Organization: []string{"system:masters"}}}), "only a common name"},
		"with a DNS name":   {csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: hubinfo.EtcdUser("alpha", testReg)}, DNSNames: []string{"etcd"}}), "only a common name"},
		"with a URI": {csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: hubinfo.EtcdUser("alpha", testReg)},
			URIs: []*url.URL{{Scheme: "spiffe", Host: "x"}}}), "only a common name"},
		"not PEM":            {[]byte("junk"), "parse CSR"},
		"tampered signature": {tampered, "refused"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := signer.ValidateEtcdCSR(tc.csr, "alpha", testReg)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Error("accepted")
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// The certificate is client-only, for the CSR's key and common name, and lives the
// configured lifetime, never more than MaxLifetime nor past the CA.
func TestSignEtcdCSR(t *testing.T) {
	ca, err := pki.NewCA("etcd-ca", 100*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req, _, err := pki.NewCSR(hubinfo.EtcdUser("alpha", testReg))
	if err != nil {
		t.Fatal(err)
	}
	csr, err := signer.ValidateEtcdCSR(req, "alpha", testReg)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		lifetime, want time.Duration
	}{
		"minutes":           {4 * time.Minute, 4 * time.Minute},
		"default":           {0, signer.DefaultLifetime},
		"capped":            {365 * 24 * time.Hour, signer.MaxLifetime},
		"never past the CA": {signer.MaxLifetime, signer.MaxLifetime},
	} {
		t.Run(name, func(t *testing.T) {
			now := time.Now()
			certPEM, err := signer.SignEtcdCSR(ca, csr, tc.lifetime)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := pki.ParseCert(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			want := now.Add(tc.want)
			if want.After(ca.Cert.NotAfter) {
				want = ca.Cert.NotAfter
			}
			if d := cert.NotAfter.Sub(want); d < -time.Minute || d > time.Minute {
				t.Errorf("NotAfter %v, want about %v", cert.NotAfter, want)
			}
			if cert.IsCA || len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
				t.Errorf("IsCA %v, ExtKeyUsage %v: want a client-only certificate", cert.IsCA, cert.ExtKeyUsage)
			}
			if cert.Subject.CommonName != hubinfo.EtcdUser("alpha", testReg) || !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
				t.Error("certificate is not for the CSR's user and key")
			}
			if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
				t.Error(err)
			}
		})
	}
}

// recordingKV records Puts.
type recordingKV struct {
	mu   sync.Mutex
	puts map[string]string
}

func (k *recordingKV) Put(_ context.Context, key, val string, _ ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.puts[key] = val
	return &clientv3.PutResponse{}, nil
}

func (k *recordingKV) get(key string) (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.puts[key]
	return v, ok
}

// EtcdRenewals answers a registered cluster's CSR at its etcd-cert key, with the
// CSR's digest and the certificate's NotAfter; it ignores an unregistered cluster's
// CSR and refuses one for another cluster's user.
func TestEtcdRenewals(t *testing.T) {
	ca, err := pki.NewCA("etcd-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v := view.New(view.Options{})
	kv := &recordingKV{puts: map[string]string{}}
	r := &signer.EtcdRenewals{KV: kv, View: v, CA: ca, Lifetime: 10 * time.Minute}
	upsert := func(key string, rec model.Record) {
		t.Helper()
		if err := rec.Validate(); err != nil {
			t.Fatal(err)
		}
		v.OnUpsert(key, rec)
	}
	for _, c := range []string{"alpha", "beta", "delta"} {
		upsert(keyspace.ClusterInfo(c), &model.ClusterInfo{Name: c, Region: "r", Zones: []string{"z"}, Network: "n", Registration: testReg})
	}
	v.OnSynced()
	testutil.Run(t, "renewals", r.Start)

	alphaCSR, _, _ := pki.NewCSR(hubinfo.EtcdUser("alpha", testReg))
	forged, _, _ := pki.NewCSR(hubinfo.EtcdUser("alpha", testReg)) // written under beta's prefix
	gammaCSR, _, _ := pki.NewCSR(hubinfo.EtcdUser("gamma", testReg))
	staleCSR, _, _ := pki.NewCSR(hubinfo.EtcdUser("delta", hubinfo.NewRegistration())) // an earlier registration's
	upsert(keyspace.ClusterEtcdCSR("delta"), &model.EtcdCSR{CSR: string(staleCSR)})
	upsert(keyspace.ClusterEtcdCSR("alpha"), &model.EtcdCSR{CSR: string(alphaCSR)})
	upsert(keyspace.ClusterEtcdCSR("beta"), &model.EtcdCSR{CSR: string(forged)})
	upsert(keyspace.ClusterEtcdCSR("gamma"), &model.EtcdCSR{CSR: string(gammaCSR)})

	var rec model.EtcdCert
	testutil.Eventually(t, 10*time.Second, "alpha's answer", func() error {
		val, ok := kv.get(keyspace.ClusterEtcdCert("alpha"))
		if !ok {
			return errNotYet
		}
		got, err := model.Decode(keyspace.ClusterEtcdCert("alpha"), []byte(val))
		if err != nil {
			return err
		}
		rec = *got.(*model.EtcdCert)
		return nil
	})
	if rec.CSRDigest != model.CSRDigest(string(alphaCSR)) {
		t.Error("answer does not name alpha's CSR")
	}
	cert, err := pki.ParseCert([]byte(rec.Cert))
	if err != nil || !cert.NotAfter.Equal(rec.NotAfter) {
		t.Errorf("record NotAfter %v, certificate %v (%v)", rec.NotAfter, cert, err)
	}
	// An answer for alpha that the view shows stops the signer from signing again;
	// beta's forged CSR, unregistered gamma's and delta's for an earlier
	// registration get nothing.
	upsert(keyspace.ClusterEtcdCert("alpha"), &rec)
	for _, c := range []string{"beta", "gamma", "delta"} {
		if _, ok := kv.get(keyspace.ClusterEtcdCert(c)); ok {
			t.Errorf("%s's CSR was answered", c)
		}
	}
}
