package clusteragent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	"github.com/meshfed/meshfed/internal/workloadtls"
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

	// WorkloadCertsAnnotation, on TrustBundleConfigMap, is the agent's account of
	// the workload certificates it wrote (WorkloadCertsStatus, JSON): what
	// `meshfedctl trust check` and `trust rotate` read to tell which root a cluster's
	// workloads present and trust, since the files themselves are out of their reach.
	WorkloadCertsAnnotation = "meshfed.io/workload-certs"
)

// WorkloadCertsStatus says what every configured workload identity's files hold.
// It is written only after all of them were checked or re-issued, and removed when
// that failed, so it never claims more than the files show.
type WorkloadCertsStatus struct {
	// Identities is how many workload identities have certificates.
	Identities int `json:"identities"`
	// Intermediate is the fingerprint (hex SHA-256 of the DER) of the intermediate
	// that issued every leaf; Root that of the root that signed it.
	Intermediate string `json:"intermediate"`
	Root         string `json:"root"`
	// Bundle is the hex SHA-256 of the ca.crt every workload has: the roots it trusts.
	Bundle string `json:"bundle"`
	// Since is when the files first held this state (a renewal under the same
	// intermediate and bundle keeps it): workloads' certificate providers re-read
	// files periodically, so a rotation waits a refresh interval past it.
	Since time.Time `json:"since"`
}

// Digest is the hex SHA-256 of data: how WorkloadCertsStatus names a bundle.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

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
// thirds of their life: what a file_watcher certificate provider reads. Beside them,
// xds-ca.crt (workloadtls.XDSCAFile) is the cluster's xDS serving CA, what proxies
// verify the agent's xDS port against.
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
	tick := time.NewTicker(trustCheckInterval(s.workloads.Lifetime))
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
	// A new CSR also when the one held is not what this agent would send (one made
	// before identities were bound to clusters, which the hub now refuses), and when
	// the answered chain is not bound to the cluster: that is how an upgrade replaces
	// intermediates without name constraints.
	if len(csr) == 0 || (answered && intermediateDue(chain)) ||
		(!answered && !validCSR(csr, bundle.TrustDomain, s.cluster)) {
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
	if len(chain) == 0 {
		return s.publishBundle(ctx, bundle, nil) // waiting for the hub
	}
	// Workloads first, then the ConfigMap with their status: the status never
	// runs ahead of the files.
	xdsCA, err := s.xdsCA(ctx)
	if err != nil {
		return err
	}
	status, werr := s.issueWorkloads(chain, sec.Data[corev1.TLSPrivateKeyKey], bundle, xdsCA)
	if err := s.publishBundle(ctx, bundle, status); err != nil {
		return err
	}
	return werr
}

func newKeyPEM() ([]byte, error) {
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	return pki.EncodeKey(key)
}

// publishBundle writes the bundle into the ConfigMap, with the workloads' status
// (none: the annotation is removed).
func (s *trustSync) publishBundle(ctx context.Context, bundle *model.TrustBundle, status *WorkloadCertsStatus) error {
	cms := s.kube.CoreV1().ConfigMaps(s.namespace)
	data := map[string]string{"ca.crt": bundle.Roots, "trustDomain": bundle.TrustDomain}
	cm, err := cms.Get(ctx, TrustBundleConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm, err = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: TrustBundleConfigMap, Namespace: s.namespace}}, nil
	}
	if err != nil {
		return err
	}
	annotation, err := workloadAnnotation(cm.Annotations[WorkloadCertsAnnotation], status, time.Now())
	if err != nil {
		return err
	}
	if cm.Data["ca.crt"] == data["ca.crt"] && cm.Data["trustDomain"] == data["trustDomain"] &&
		cm.Annotations[WorkloadCertsAnnotation] == annotation && cm.ResourceVersion != "" {
		return nil
	}
	cm.Data = data
	if annotation == "" {
		delete(cm.Annotations, WorkloadCertsAnnotation)
	} else {
		if cm.Annotations == nil {
			cm.Annotations = map[string]string{}
		}
		cm.Annotations[WorkloadCertsAnnotation] = annotation
	}
	if cm.ResourceVersion == "" {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	} else {
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	}
	return err
}

// workloadAnnotation is the annotation for status, keeping the Since of the current
// one when the state is the same; "" for no status.
func workloadAnnotation(current string, status *WorkloadCertsStatus, now time.Time) (string, error) {
	if status == nil {
		return "", nil
	}
	st := *status
	st.Since = now.UTC().Truncate(time.Second)
	var cur WorkloadCertsStatus
	if json.Unmarshal([]byte(current), &cur) == nil && !cur.Since.IsZero() {
		c := cur
		c.Since = st.Since
		if c == st {
			st.Since = cur.Since
		}
	}
	b, err := json.Marshal(st)
	return string(b), err
}

// xdsCA is the cluster's xDS serving CA as published for proxies (XDSCAConfigMap),
// nil when there is none (the agent's xDS does not use TLS, or no replica made it yet).
func (s *trustSync) xdsCA(ctx context.Context) ([]byte, error) {
	if s.workloads.Dir == "" {
		return nil, nil
	}
	cm, err := s.kube.CoreV1().ConfigMaps(s.namespace).Get(ctx, XDSCAConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the xDS serving CA: %w", err)
	}
	return []byte(cm.Data["ca.crt"]), nil
}

// issueWorkloads writes a certificate for every configured identity that has none, or
// whose certificate is due for renewal, was issued by another intermediate (a
// rotation re-signed it) or came with another bundle, and xdsCA (when there is one)
// as workloadtls.XDSCAFile beside it; and returns what the files now hold (nil when
// the agent issues no workload certificates).
func (s *trustSync) issueWorkloads(chain, keyPEM []byte, bundle *model.TrustBundle, xdsCA []byte) (*WorkloadCertsStatus, error) {
	if s.workloads.Dir == "" {
		return nil, nil
	}
	ic, err := trust.LoadIntermediate(chain, keyPEM)
	if err != nil {
		return nil, err
	}
	certs, err := trust.ParseCertificates(chain)
	if err != nil {
		return nil, err
	}
	status := &WorkloadCertsStatus{Identities: len(s.workloads.Identities), Intermediate: Digest(certs[0].Raw),
		Root: Digest(certs[len(certs)-1].Raw), Bundle: Digest([]byte(bundle.Roots))}
	for _, id := range s.workloads.Identities {
		ns, sa, ok := strings.Cut(id, "/")
		if !ok {
			return nil, fmt.Errorf("workload identity %q: use <namespace>/<serviceAccount>", id)
		}
		dir := filepath.Join(s.workloads.Dir, ns, sa)
		// The xDS CA first: a new directory is complete once tls.crt appears.
		if err := writeXDSCA(dir, xdsCA); err != nil {
			return nil, err
		}
		cur, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
		ca, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
		want := trust.ServiceAccountID(bundle.TrustDomain, s.cluster, ns, sa)
		if err == nil && !dueForRenewal(cur) && bytes.Equal(ca, []byte(bundle.Roots)) && chainedTo(cur, chain) && names(cur, want) {
			continue
		}
		certPEM, leafKey, err := trust.IssueWorkload(ic, bundle.TrustDomain, ns, sa, s.workloads.Lifetime)
		if err != nil {
			return nil, err
		}
		// Key first, then certificate: a file watcher that sees the new certificate
		// finds its key already there.
		for _, f := range []struct {
			name string
			data []byte
		}{{"tls.key", leafKey}, {"ca.crt", []byte(bundle.Roots)}, {"tls.crt", certPEM}} {
			if err := writeFile(dir, f.name, f.data); err != nil {
				return nil, err
			}
		}
		s.log.Info("workload certificate issued", "identity", id, "intermediate", status.Intermediate[:16], "root", status.Root[:16])
	}
	return status, nil
}

// writeXDSCA writes xdsCA into dir's workloadtls.XDSCAFile unless it holds it already
// (nothing when there is no xDS CA).
func writeXDSCA(dir string, xdsCA []byte) error {
	if len(xdsCA) == 0 {
		return nil
	}
	if cur, err := os.ReadFile(filepath.Join(dir, workloadtls.XDSCAFile)); err == nil && bytes.Equal(cur, xdsCA) {
		return nil
	}
	return writeFile(dir, workloadtls.XDSCAFile, xdsCA)
}

// writeFile replaces dir's file name with data at once (a temporary file renamed), so
// that readers never see it half written.
func writeFile(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+name)
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

func dueForRenewal(chainPEM []byte) bool {
	cert, err := pki.ParseCert(chainPEM)
	return err != nil || trust.NeedsRenewal(cert, time.Now())
}

// intermediateDue reports whether the cluster's intermediate should be renewed: due
// by its age, or not bound to the cluster by name constraints.
func intermediateDue(chainPEM []byte) bool {
	cert, err := pki.ParseCert(chainPEM)
	return err != nil || trust.IntermediateNeedsRenewal(cert, time.Now())
}

func validCSR(csrPEM []byte, trustDomain, cluster string) bool {
	_, err := trust.ValidateIntermediateCSR(csrPEM, trustDomain, cluster)
	return err == nil
}

// names reports whether the leaf of chainPEM carries exactly the identity id.
func names(chainPEM []byte, id string) bool {
	cert, err := pki.ParseCert(chainPEM)
	return err == nil && len(cert.URIs) == 1 && cert.URIs[0].String() == id
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

// trustCheckInterval is how often the agent checks whether its intermediate or
// workload certificates are due for renewal: every 30s, or a tenth of the workload
// certificates' lifetime when that is shorter, so that short-lived leaves are renewed
// near two thirds of their life rather than up to 30s late.
func trustCheckInterval(workloadLifetime time.Duration) time.Duration {
	d := 30 * time.Second
	if workloadLifetime > 0 {
		d = min(d, max(workloadLifetime/10, time.Second))
	}
	return d
}
