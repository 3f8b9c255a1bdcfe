package meshca

import (
	"context"
	"fmt"
	"time"

	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Names of the objects package meshca keeps on the hub's API server.
const (
	// DefaultNamespace holds the root Secrets and the intermediates'
	// CertificateRequests. It must be cert-manager's cluster resource namespace: the
	// namespace where a ClusterIssuer's Secrets live.
	DefaultNamespace = "meshfed-system"
	// IssuerName is the CA ClusterIssuer that signs intermediates with the signing root.
	IssuerName = "meshfed-root"
	// BootstrapRootSecret is the Secret EnsureRoot creates for the first root. Later
	// roots (rotation) take other names; the ClusterIssuer names the signing one.
	BootstrapRootSecret = "meshfed-root-ca"

	// RootLabel marks a Secret holding an active root: the bundle is every Secret in
	// the namespace labelled RootLabel=true.
	RootLabel = "meshfed.io/root"
	// ClusterLabel names the member cluster of an intermediate's CertificateRequest.
	ClusterLabel = "meshfed.io/cluster"
	// TrustDomainAnnotation records the trust domain on the ClusterIssuer and on the
	// root Secrets. It is fixed when the first root is made.
	TrustDomainAnnotation = "meshfed.io/trust-domain"

	// cmCacheLabel asks cert-manager to cache the Secret whole rather than fetch it on
	// every use (cert-manager's SecretsFilteredCaching).
	cmCacheLabel = "controller.cert-manager.io/fao"
)

// DefaultTimeout bounds each wait (ClusterIssuer Ready, CertificateRequest signed)
// when the context has no earlier deadline: generous, for cert-manager on a loaded
// machine.
const DefaultTimeout = 2 * time.Minute

// pollInterval is how often a wait re-reads the object it waits on.
const pollInterval = 200 * time.Millisecond

// Client reaches the hub's API server: Secrets through Kube, ClusterIssuers and
// CertificateRequests through CertManager.
type Client struct {
	Kube        kubernetes.Interface
	CertManager cmclient.Interface
	// Namespace holds the root Secrets and CertificateRequests. Default
	// DefaultNamespace.
	Namespace string
	// Timeout bounds each wait when the context has no earlier deadline. Default
	// DefaultTimeout.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewClient returns a Client for the API server cfg reaches, with the defaults.
func NewClient(cfg *rest.Config) (*Client, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("mesh CA client: %w", err)
	}
	cm, err := cmclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("mesh CA client: %w", err)
	}
	return &Client{Kube: kube, CertManager: cm}, nil
}

func (c *Client) namespace() string {
	if c.Namespace == "" {
		return DefaultNamespace
	}
	return c.Namespace
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// poll calls cond every pollInterval until it is done, fails, or the client's timeout
// (or ctx) ends; then the error says what it last saw.
func (c *Client) poll(ctx context.Context, what string, cond func(ctx context.Context) (done bool, status string, err error)) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, pollInterval, c.timeout(), true, func(ctx context.Context) (bool, error) {
		done, status, err := cond(ctx)
		last = status
		return done, err
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w (last seen: %s)", what, ctx.Err(), last)
	case wait.Interrupted(err):
		return fmt.Errorf("%s: gave up after %s (last seen: %s): %w", what, c.timeout(), last, err)
	}
	return err
}

func (c *Client) ensureNamespace(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.namespace()}}
	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", c.namespace(), err)
	}
	return nil
}
