package clusteragent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/trust"
)

const upgradeTD = "meshfed.local"

// TestTrustSyncRenewsUnboundIntermediate is an upgrade: the member cluster holds an
// intermediate signed before identities were bound to clusters (no name
// constraints, answered by the hub for the CSR the old agent sent) and a workload
// certificate with the old identity. The new agent asks for a cluster-bound
// intermediate at once, keeps the old chain in use until the answer arrives, then
// stores the bound one and re-issues the workload certificate with the cluster's
// identity. An unanswered CSR of the old agent is replaced too (the hub refuses it).
func TestTrustSyncRenewsUnboundIntermediate(t *testing.T) {
	cp := localkube.ForTest(t, "alpha")[0]
	kube := kubernetes.NewForConfigOrDie(cp.Config)
	ctx := context.Background()
	const ns = "meshfed-system"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rootPEM, rootKeyPEM, err := trust.NewRoot(upgradeTD, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	root, _ := pki.ParseCert(rootPEM)
	rootKey, _ := pki.ParseKey(rootKeyPEM)
	// hubSign answers a CSR as the hub does through cert-manager: subject, names and
	// name constraints copied, no path length.
	hubSign := func(csrPEM []byte) []byte {
		csr, err := pki.ParseCSR(csrPEM)
		if err != nil {
			t.Fatal(err)
		}
		var extra []pkix.Extension
		for _, e := range csr.Extensions {
			if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 30}) {
				extra = append(extra, e)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()),
			Subject: csr.Subject, URIs: csr.URIs, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
			ExtraExtensions: extra}, root, csr.PublicKey, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		return append(pki.EncodeCert(der), rootPEM...)
	}

	// The old agent's state: key, its CSR (no constraints), the chain the hub
	// answered, and a workload certificate with the old identity.
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	oldCSR := unboundCSR(t, key, "alpha")
	oldChain := hubSign(oldCSR)
	if err := trust.CheckIntermediateBound(mustCert(t, oldChain)); err == nil {
		t.Fatal("the old intermediate is bound")
	}
	if _, err := kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: IntermediateSecret, Namespace: ns},
		Data: map[string][]byte{corev1.TLSPrivateKeyKey: keyPEM, keyCSR: oldCSR, corev1.TLSCertKey: oldChain, "ca.crt": rootPEM}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v := view.New(view.Options{Self: "alpha"})
	v.OnUpsert(keyspace.TrustBundle(), &model.TrustBundle{TrustDomain: upgradeTD, Roots: string(rootPEM)})
	answer := func(csr, chain []byte) {
		v.OnUpsert(keyspace.ClusterIntermediate("alpha"), &model.Intermediate{Chain: string(chain), NotAfter: mustCert(t, chain).NotAfter,
			CSRDigest: model.CSRDigest(string(csr))})
	}
	answer(oldCSR, oldChain)
	dir := t.TempDir()
	s := &trustSync{cluster: "alpha", namespace: ns, kube: kube, view: v, sink: &csrSink{},
		workloads: WorkloadCerts{Dir: dir, Identities: []string{"shop/cart"}, Lifetime: time.Hour}, log: testr.New(t)}
	sink := s.sink.(*csrSink)

	if err := s.sync(ctx); err != nil {
		t.Fatal(err)
	}
	newCSR := sink.last(t)
	if _, err := trust.ValidateIntermediateCSR(newCSR, upgradeTD, "alpha"); err != nil {
		t.Fatalf("the agent sent a CSR the hub refuses: %v", err)
	}
	sec, _ := kube.CoreV1().Secrets(ns).Get(ctx, IntermediateSecret, metav1.GetOptions{})
	if !bytes.Equal(sec.Data[corev1.TLSCertKey], oldChain) {
		t.Error("the old chain left before its successor arrived")
	}

	// The hub answers; the bound intermediate replaces the old one, and the
	// workload certificate carries the cluster's identity.
	answer(newCSR, hubSign(newCSR))
	if err := s.sync(ctx); err != nil {
		t.Fatal(err)
	}
	sec, _ = kube.CoreV1().Secrets(ns).Get(ctx, IntermediateSecret, metav1.GetOptions{})
	if err := trust.CheckIntermediateBound(mustCert(t, sec.Data[corev1.TLSCertKey])); err != nil {
		t.Fatalf("stored intermediate: %v", err)
	}
	leaf, err := os.ReadFile(filepath.Join(dir, "shop", "cart", "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	const id = "spiffe://alpha.meshfed.local/ns/shop/sa/cart"
	if v, err := trust.Verify(leaf, rootPEM, id); err != nil || v.Cluster != "alpha" {
		t.Fatalf("workload certificate after the upgrade: %+v, %v", v, err)
	}
	sent := len(sink.csrs)
	if err := s.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if len(sink.csrs) != sent {
		t.Error("a bound, answered intermediate was renewed again")
	}

	t.Run("an unanswered CSR of the old agent is replaced", func(t *testing.T) {
		sec, _ := kube.CoreV1().Secrets(ns).Get(ctx, IntermediateSecret, metav1.GetOptions{})
		sec.Data[keyCSR] = unboundCSR(t, key, "alpha")
		if _, err := kube.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s.sync(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := trust.ValidateIntermediateCSR(sink.last(t), upgradeTD, "alpha"); err != nil {
			t.Fatalf("the agent kept sending a CSR the hub refuses: %v", err)
		}
	})
}

// csrSink records the intermediate CSRs the agent writes.
type csrSink struct {
	mu   sync.Mutex
	csrs [][]byte
}

func (s *csrSink) Upsert(key string, value []byte) {
	if key != keyspace.ClusterIntermediateCSR("alpha") {
		return
	}
	rec, err := model.Decode(key, value)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.csrs = append(s.csrs, []byte(rec.(*model.IntermediateCSR).CSR))
}

func (s *csrSink) last(t *testing.T) []byte {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.csrs) == 0 {
		t.Fatal("the agent sent no CSR")
	}
	return s.csrs[len(s.csrs)-1]
}

func mustCert(t *testing.T, chain []byte) *x509.Certificate {
	t.Helper()
	c, err := pki.ParseCert(chain)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// unboundCSR is a CSR as agents made them before identities were bound to
// clusters: a CA, no path length, no name constraints.
func unboundCSR(t *testing.T, key crypto.Signer, cluster string) []byte {
	t.Helper()
	id, _ := trust.ClusterID(upgradeTD, cluster)
	u, _ := url.Parse(id)
	bc, _ := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Organization: []string{trust.Organization}, CommonName: trust.IntermediateCommonName(cluster)},
		URIs:    []*url.URL{u}, ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}
