package meshca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshfed/meshfed/trust"
)

// ErrNoRoot marks a hub whose mesh root has not been bootstrapped (see EnsureRoot).
var ErrNoRoot = errors.New("meshca: no mesh root")

// RootOptions configure EnsureRoot.
type RootOptions struct {
	// TrustDomain of the mesh, e.g. "mesh.example.org". Required. It is recorded with
	// the first root and may never change afterwards.
	TrustDomain string
	// Lifetime of a root EnsureRoot makes. Default trust.DefaultRootLifetime (10 years).
	Lifetime time.Duration
}

// Root is one active root of the mesh.
type Root struct {
	// Secret is the name of the Secret (in the client's namespace) holding it.
	Secret string
	// Cert is the root certificate.
	Cert *x509.Certificate
	// Signing reports whether the ClusterIssuer signs with this root now.
	Signing bool
}

// EnsureRoot bootstraps the mesh root, once: a self-signed root CA (trust.NewRoot) in
// the TLS Secret BootstrapRootSecret, labelled RootLabel=true, and the CA
// ClusterIssuer IssuerName that signs with it. It then waits until cert-manager
// reports the issuer Ready and returns the signing root.
//
// It is idempotent and safe to run at every hub start, from several replicas at once
// (creation races resolve through AlreadyExists). Once the ClusterIssuer exists,
// EnsureRoot never makes a root again: it follows the Secret the issuer names (which a
// rotation may have changed), and fails, rather than mint a new root, if that Secret is
// gone — a new root would silently split the mesh's trust.
func EnsureRoot(ctx context.Context, c *Client, opts RootOptions) (*x509.Certificate, error) {
	td := opts.TrustDomain
	if err := trust.ValidateTrustDomain(td); err != nil {
		return nil, fmt.Errorf("ensure root: %w", err)
	}
	log := logr.FromContextOrDiscard(ctx).WithValues("trustDomain", td)
	if err := c.ensureNamespace(ctx); err != nil {
		return nil, fmt.Errorf("ensure root: %w", err)
	}
	issuers := c.CertManager.CertmanagerV1().ClusterIssuers()
	issuer, err := issuers.Get(ctx, IssuerName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		var secret string
		secret, err = c.ensureBootstrapSecret(ctx, opts, log)
		if err != nil {
			return nil, fmt.Errorf("ensure root: %w", err)
		}
		issuer, err = issuers.Create(ctx, &cmapi.ClusterIssuer{
			ObjectMeta: metav1.ObjectMeta{Name: IssuerName, Annotations: map[string]string{TrustDomainAnnotation: td}},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: secret}}},
		}, metav1.CreateOptions{})
		switch {
		case apierrors.IsAlreadyExists(err):
			issuer, err = issuers.Get(ctx, IssuerName, metav1.GetOptions{})
		case apierrors.IsNotFound(err):
			err = fmt.Errorf("%w (are cert-manager's CRDs installed? certmanager.Run installs them)", err)
		case err == nil:
			log.Info("created mesh root ClusterIssuer", "issuer", IssuerName, "secret", secret)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ensure root: ClusterIssuer %s: %w", IssuerName, err)
	}
	if _, ok := issuer.Annotations[TrustDomainAnnotation]; !ok {
		return nil, fmt.Errorf("ensure root: ClusterIssuer %s exists but meshfed did not make it (no %s annotation); refusing to take it over",
			IssuerName, TrustDomainAnnotation)
	}
	if got := issuer.Annotations[TrustDomainAnnotation]; got != td {
		return nil, fmt.Errorf("ensure root: %w: ClusterIssuer %s was made for trust domain %q, asked for %q",
			trust.ErrTrustDomainMismatch, IssuerName, got, td)
	}
	if issuer.Spec.CA == nil || issuer.Spec.CA.SecretName == "" {
		return nil, fmt.Errorf("ensure root: ClusterIssuer %s is not a CA issuer", IssuerName)
	}
	secretName := issuer.Spec.CA.SecretName
	secret, err := c.Kube.CoreV1().Secrets(c.namespace()).Get(ctx, secretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("ensure root: %w: Secret %s/%s, which ClusterIssuer %s signs with, is gone; "+
			"refusing to make a new root, which would split the mesh's trust: restore the Secret or rotate deliberately",
			ErrNoRoot, c.namespace(), secretName, IssuerName)
	}
	if err != nil {
		return nil, fmt.Errorf("ensure root: %w", err)
	}
	root, err := rootFromSecret(secret)
	if err != nil {
		return nil, fmt.Errorf("ensure root: %w", err)
	}
	if secret.Labels[RootLabel] != "true" {
		return nil, fmt.Errorf("ensure root: signing root Secret %s/%s is not labelled %s=true, so the bundle would lack the root that signs intermediates",
			c.namespace(), secretName, RootLabel)
	}
	if err := c.waitIssuerReady(ctx); err != nil {
		return nil, fmt.Errorf("ensure root: %w", err)
	}
	if _, err := c.roots(ctx); err != nil { // refreshes the expiry gauge
		return nil, fmt.Errorf("ensure root: %w", err)
	}
	log.V(1).Info("mesh root ready", "secret", secretName, "notAfter", root.NotAfter)
	return root, nil
}

// ensureBootstrapSecret gets or creates the first root's Secret and returns its name.
func (c *Client) ensureBootstrapSecret(ctx context.Context, opts RootOptions, log logr.Logger) (string, error) {
	secrets := c.Kube.CoreV1().Secrets(c.namespace())
	existing, err := secrets.Get(ctx, BootstrapRootSecret, metav1.GetOptions{})
	if err == nil {
		// A previous run made the Secret but not the issuer.
		if got := existing.Annotations[TrustDomainAnnotation]; got != opts.TrustDomain {
			return "", fmt.Errorf("%w: root Secret %s/%s was made for trust domain %q, asked for %q",
				trust.ErrTrustDomainMismatch, c.namespace(), BootstrapRootSecret, got, opts.TrustDomain)
		}
		return BootstrapRootSecret, nil
	}
	if !apierrors.IsNotFound(err) {
		return "", err
	}
	certPEM, keyPEM, err := trust.NewRoot(opts.TrustDomain, opts.Lifetime, c.now())
	if err != nil {
		return "", err
	}
	_, err = secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:        BootstrapRootSecret,
			Namespace:   c.namespace(),
			Labels:      map[string]string{RootLabel: "true", cmCacheLabel: "true"},
			Annotations: map[string]string{TrustDomainAnnotation: opts.TrustDomain},
		},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       certPEM,
			corev1.TLSPrivateKeyKey: keyPEM,
			"ca.crt":                certPEM,
		},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Another replica won the race; use its root.
		return c.ensureBootstrapSecret(ctx, opts, log)
	}
	if err != nil {
		return "", fmt.Errorf("create root Secret %s/%s: %w", c.namespace(), BootstrapRootSecret, err)
	}
	log.Info("created mesh root", "secret", BootstrapRootSecret)
	return BootstrapRootSecret, nil
}

// waitIssuerReady waits until cert-manager reports the ClusterIssuer Ready for its
// current generation.
func (c *Client) waitIssuerReady(ctx context.Context) error {
	issuers := c.CertManager.CertmanagerV1().ClusterIssuers()
	return c.poll(ctx, "ClusterIssuer "+IssuerName+" Ready", func(ctx context.Context) (bool, string, error) {
		iss, err := issuers.Get(ctx, IssuerName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil //nolint:nilerr // transient until the timeout says otherwise
		}
		ok, status := issuerReady(iss)
		return ok, status, nil
	})
}

// issuerReady reports whether cert-manager found iss Ready for its current generation,
// and a description of what it found.
func issuerReady(iss *cmapi.ClusterIssuer) (bool, string) {
	for _, cond := range iss.Status.Conditions {
		if cond.Type != cmapi.IssuerConditionReady {
			continue
		}
		status := fmt.Sprintf("Ready=%s %s: %s", cond.Status, cond.Reason, cond.Message)
		return cond.Status == cmmeta.ConditionTrue && cond.ObservedGeneration == iss.Generation, status
	}
	return false, "no Ready condition yet (is cert-manager running?)"
}

// Roots returns every active root, oldest first (by NotBefore, then Secret name): each
// Secret in the namespace labelled RootLabel=true. It also refreshes the root expiry
// metric.
func Roots(ctx context.Context, c *Client) ([]Root, error) { return c.roots(ctx) }

func (c *Client) roots(ctx context.Context) ([]Root, error) {
	list, err := c.Kube.CoreV1().Secrets(c.namespace()).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{RootLabel: "true"}).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("list roots: %w", err)
	}
	signing := ""
	if iss, err := c.CertManager.CertmanagerV1().ClusterIssuers().Get(ctx, IssuerName, metav1.GetOptions{}); err == nil && iss.Spec.CA != nil {
		signing = iss.Spec.CA.SecretName
	} else if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("list roots: %w", err)
	}
	var roots []Root
	for i := range list.Items {
		s := &list.Items[i]
		cert, err := rootFromSecret(s)
		if err != nil {
			// Never drop a root silently: a bundle without it would break every
			// workload whose chain ends there.
			return nil, fmt.Errorf("list roots: %w", err)
		}
		roots = append(roots, Root{Secret: s.Name, Cert: cert, Signing: s.Name == signing})
	}
	slices.SortFunc(roots, func(a, b Root) int {
		if c := a.Cert.NotBefore.Compare(b.Cert.NotBefore); c != 0 {
			return c
		}
		return strings.Compare(a.Secret, b.Secret)
	})
	rootExpiry.Reset()
	for _, r := range roots {
		rootExpiry.WithLabelValues(r.Secret).Set(float64(r.Cert.NotAfter.Unix()))
	}
	return roots, nil
}

// Bundle returns the trust bundle: the PEM of every active root (see Roots), each
// certificate once, oldest first, so the same roots always give the same bytes. It
// fails with ErrNoRoot when there is none.
func Bundle(ctx context.Context, c *Client) ([]byte, error) {
	roots, err := c.roots(ctx)
	if err != nil {
		return nil, err
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("bundle: %w: no Secret in %s labelled %s=true", ErrNoRoot, c.namespace(), RootLabel)
	}
	return BundleOf(roots), nil
}

func rootFromSecret(s *corev1.Secret) (*x509.Certificate, error) {
	certs, err := trust.ParseCertificates(s.Data[corev1.TLSCertKey])
	if err != nil {
		return nil, fmt.Errorf("root Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	if !certs[0].IsCA {
		return nil, fmt.Errorf("root Secret %s/%s: %w: %q is not a CA", s.Namespace, s.Name, trust.ErrInvalid, certs[0].Subject)
	}
	return certs[0], nil
}
