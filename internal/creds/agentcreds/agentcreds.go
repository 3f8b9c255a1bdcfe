package agentcreds

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
)

// SecretName is the name of the credentials Secret.
const SecretName = "meshfed-agent-etcd"

// Keys of the Secret.
const (
	KeyCluster   = "cluster"
	KeyEndpoints = "endpoints" // comma-separated
	KeyCA        = "ca.crt"
	KeyCert      = corev1.TLSCertKey
	KeyKey       = corev1.TLSPrivateKeyKey
)

// Credentials are an agent's identity and etcd credentials.
type Credentials struct {
	Cluster string
	Etcd    etcdconn.Credentials
}

// Secret returns the Secret holding c in namespace.
func (c Credentials) Secret(namespace string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: namespace,
			Labels: map[string]string{"app.kubernetes.io/part-of": "meshfed"}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			KeyCluster:   []byte(c.Cluster),
			KeyEndpoints: []byte(strings.Join(c.Etcd.Endpoints, ",")),
			KeyCA:        c.Etcd.CA,
			KeyCert:      c.Etcd.Cert,
			KeyKey:       c.Etcd.Key,
		},
	}
}

// Certificate parses the client certificate.
func (c Credentials) Certificate() (*x509.Certificate, error) { return pki.ParseCert(c.Etcd.Cert) }

// FromSecret reads credentials from a Secret and checks that they are complete.
func FromSecret(s *corev1.Secret) (Credentials, error) {
	c := Credentials{
		Cluster: string(s.Data[KeyCluster]),
		Etcd: etcdconn.Credentials{
			CA: s.Data[KeyCA], Cert: s.Data[KeyCert], Key: s.Data[KeyKey],
		},
	}
	for _, e := range strings.Split(string(s.Data[KeyEndpoints]), ",") {
		if e = strings.TrimSpace(e); e != "" {
			c.Etcd.Endpoints = append(c.Etcd.Endpoints, e)
		}
	}
	var missing []string
	for key, v := range map[string]int{KeyCluster: len(c.Cluster), KeyEndpoints: len(c.Etcd.Endpoints),
		KeyCA: len(c.Etcd.CA), KeyCert: len(c.Etcd.Cert), KeyKey: len(c.Etcd.Key)} {
		if v == 0 {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return c, fmt.Errorf("secret %s/%s lacks %s: run meshfedctl cluster register", s.Namespace, s.Name, strings.Join(missing, ", "))
	}
	if _, err := c.Etcd.TLS(); err != nil {
		return c, fmt.Errorf("secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return c, nil
}

// Load reads the credentials Secret from namespace.
func Load(ctx context.Context, kube kubernetes.Interface, namespace string) (Credentials, error) {
	s, err := kube.CoreV1().Secrets(namespace).Get(ctx, SecretName, metav1.GetOptions{})
	if err != nil {
		return Credentials{}, fmt.Errorf("read etcd credentials: %w", err)
	}
	return FromSecret(s)
}

// User is the etcd user the credentials' certificate names ("" if it does not parse).
func (c Credentials) User() string {
	cert, err := c.Certificate()
	if err != nil {
		return ""
	}
	return cert.Subject.CommonName
}

// Fresh reports whether the credentials' certificate is valid now and for at least a
// third of its life to come.
func (c Credentials) Fresh(now time.Time) bool {
	cert, err := c.Certificate()
	if err != nil {
		return false
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	return now.After(cert.NotBefore) && cert.NotAfter.Sub(now) > life/3
}

// StoreCertificate replaces the client certificate and key in the credentials Secret
// in namespace, leaving everything else as it is. It refuses a pair that does not
// match or that names another etcd user than the certificate it replaces: a renewal
// never changes who the agent is. Run by the agent that renewed the certificate.
func StoreCertificate(ctx context.Context, kube kubernetes.Interface, namespace string, certPEM, keyPEM []byte) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		secrets := kube.CoreV1().Secrets(namespace)
		s, err := secrets.Get(ctx, SecretName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur, err := FromSecret(s)
		if err != nil {
			return err
		}
		pair, err := etcdconn.NewKeyPair(certPEM, keyPEM)
		if err != nil {
			return err
		}
		old, err := cur.Certificate()
		if err != nil {
			return err
		}
		if pair.User() != old.Subject.CommonName {
			return fmt.Errorf("renewed certificate is for etcd user %q, not %q", pair.User(), old.Subject.CommonName)
		}
		s.Data[KeyCert], s.Data[KeyKey] = certPEM, keyPEM
		_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("store renewed etcd credentials in %s/%s: %w", namespace, SecretName, err)
	}
	return nil
}
