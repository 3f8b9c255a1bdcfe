package clusteragent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
	"github.com/meshfed/meshfed/trust"
)

// Names of the agent's trust objects in its namespace.
const (
	// IntermediateSecret holds the cluster's intermediate CA: its key (made here,
	// never sent anywhere), the CSR last sent to the hub, and the signed chain.
	IntermediateSecret = "meshfed-intermediate"
	// TrustBundleConfigMap holds the mesh's trust bundle (ca.crt) for workloads.
	TrustBundleConfigMap = "meshfed-trust-bundle"
	keyCSR               = "csr.pem"
)

// trustSync is the agent's side of the mesh CA, run by the leader: it asks the hub to
// sign the cluster's intermediate (a CSR in etcd), keeps the signed chain next to its
// key in the member cluster, publishes the trust bundle there, and issues workload
// certificates from the intermediate. It does nothing until the hub publishes a trust
// bundle (the hub runs without --mesh-ca).
type trustSync struct {
	cluster   string
	namespace string
	kube      kubernetes.Interface
	view      *view.View
	sink      interface {
		Upsert(key string, value []byte)
	}
	workloads WorkloadCerts
	log       logr.Logger
}

// WorkloadCerts says which workload identities the agent issues certificates for,
// into Dir/<namespace>/<serviceAccount>/{tls.crt,tls.key,ca.crt}, renewed at two
// thirds of their life: what a file_watcher certificate provider reads.
type WorkloadCerts struct {
	Dir        string
	Identities []string // "<namespace>/<serviceAccount>"
	Lifetime   time.Duration
}

func (s *trustSync) run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	unsubscribe := s.view.Subscribe(func(k keyspace.Key) {
		if k.Kind == keyspace.KindTrustBundle || (k.Kind == keyspace.KindIntermediate && k.Cluster == s.cluster) {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
	defer unsubscribe()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		if err := s.sync(ctx); err != nil {
			s.log.Error(err, "trust sync")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-tick.C:
		}
	}
}

func (s *trustSync) sync(ctx context.Context) error {
	bundle := s.view.TrustBundle()
	if bundle == nil {
		return nil // no mesh CA
	}
	secrets := s.kube.CoreV1().Secrets(s.namespace)
	sec, err := secrets.Get(ctx, IntermediateSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		keyPEM, kerr := newKeyPEM()
		if kerr != nil {
			return kerr
		}
		sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: IntermediateSecret, Namespace: s.namespace},
			Type: corev1.SecretTypeOpaque, Data: map[string][]byte{corev1.TLSPrivateKeyKey: keyPEM}}
		if sec, err = secrets.Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create intermediate key: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("read intermediate key: %w", err)
	}
	key, err := pki.ParseKey(sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return fmt.Errorf("intermediate key in %s/%s: %w", s.namespace, IntermediateSecret, err)
	}

	// The hub's answer to the CSR last sent replaces the chain held; a new CSR (same
	// key) goes out when there is none or the answered chain is due for renewal, and
	// the chain in use stays until its successor arrives.
	c, _ := s.view.Cluster(s.cluster)
	csr, chain := sec.Data[keyCSR], sec.Data[corev1.TLSCertKey]
	answered := c.Intermediate != nil && len(csr) > 0 && c.Intermediate.CSRDigest == model.CSRDigest(string(csr))
	if answered {
		chain = []byte(c.Intermediate.Chain)
	}
	if len(csr) == 0 || (answered && dueForRenewal(chain)) {
		if csr, err = trust.IntermediateCSR(key, bundle.TrustDomain, s.cluster); err != nil {
			return err
		}
		answered = false
	}
	if !answered {
		rec, err := model.Encode(&model.IntermediateCSR{TrustDomain: bundle.TrustDomain, CSR: string(csr)})
		if err != nil {
			return err
		}
		s.sink.Upsert(keyspace.ClusterIntermediateCSR(s.cluster), rec)
	}
	want := map[string][]byte{corev1.TLSPrivateKeyKey: sec.Data[corev1.TLSPrivateKeyKey], keyCSR: csr,
		corev1.TLSCertKey: chain, "ca.crt": []byte(bundle.Roots)}
	if !sameData(sec.Data, want) {
		sec.Data = want
		if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("store intermediate: %w", err)
		}
		if len(chain) > 0 {
			s.log.Info("cluster intermediate stored", "secret", IntermediateSecret)
		}
	}
	if err := s.publishBundle(ctx, bundle); err != nil {
		return err
	}
	if len(chain) == 0 {
		return nil // waiting for the hub
	}
	return s.issueWorkloads(chain, sec.Data[corev1.TLSPrivateKeyKey], bundle)
}

func newKeyPEM() ([]byte, error) {
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	return pki.EncodeKey(key)
}

func (s *trustSync) publishBundle(ctx context.Context, bundle *model.TrustBundle) error {
	cms := s.kube.CoreV1().ConfigMaps(s.namespace)
	data := map[string]string{"ca.crt": bundle.Roots, "trustDomain": bundle.TrustDomain}
	cm, err := cms.Get(ctx, TrustBundleConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: TrustBundleConfigMap, Namespace: s.namespace},
			Data: data}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if cm.Data["ca.crt"] == data["ca.crt"] && cm.Data["trustDomain"] == data["trustDomain"] {
		return nil
	}
	cm.Data = data
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// issueWorkloads writes a certificate for every configured identity that has none or
// whose certificate is due for renewal.
func (s *trustSync) issueWorkloads(chain, keyPEM []byte, bundle *model.TrustBundle) error {
	if s.workloads.Dir == "" {
		return nil
	}
	ic, err := trust.LoadIntermediate(chain, keyPEM)
	if err != nil {
		return err
	}
	for _, id := range s.workloads.Identities {
		ns, sa, ok := strings.Cut(id, "/")
		if !ok {
			return fmt.Errorf("workload identity %q: use <namespace>/<serviceAccount>", id)
		}
		dir := filepath.Join(s.workloads.Dir, ns, sa)
		cur, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
		ca, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
		if err == nil && !dueForRenewal(cur) && bytes.Equal(ca, []byte(bundle.Roots)) && chainedTo(cur, chain) {
			continue
		}
		certPEM, leafKey, err := trust.IssueWorkload(ic, bundle.TrustDomain, ns, sa, s.workloads.Lifetime)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		// Key first, then certificate: a file watcher that sees the new certificate
		// finds its key already there.
		for _, f := range []struct {
			name string
			data []byte
		}{{"tls.key", leafKey}, {"ca.crt", []byte(bundle.Roots)}, {"tls.crt", certPEM}} {
			tmp := filepath.Join(dir, "."+f.name)
			if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
				return err
			}
			if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
				return err
			}
		}
		s.log.Info("workload certificate issued", "identity", id)
	}
	return nil
}

func dueForRenewal(chainPEM []byte) bool {
	cert, err := pki.ParseCert(chainPEM)
	return err != nil || trust.NeedsRenewal(cert, time.Now())
}

// chainedTo reports whether the leaf's chain carries the given intermediate.
func chainedTo(leafChain, intermediateChain []byte) bool {
	inter, err := pki.ParseCert(intermediateChain)
	if err != nil {
		return false
	}
	certs, err := trust.ParseCertificates(leafChain)
	if err != nil || len(certs) < 2 {
		return false
	}
	return certs[1].Equal(inter)
}

func sameData(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if !bytes.Equal(a[k], v) {
			return false
		}
	}
	return true
}
