package meshca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/trust"
)

// ErrRotation marks a rotation step asked for in the wrong phase (see Phase).
var ErrRotation = errors.New("meshca: root rotation")

// RotationPhase is where a staged root rotation stands, read from the hub's roots
// alone (see Phase). What the member clusters have caught up with is the caller's
// to check before moving on.
type RotationPhase string

const (
	// PhaseSteady: one active root; it signs.
	PhaseSteady RotationPhase = "steady"
	// PhaseAdded: a new root is in the bundle; the old one still signs.
	PhaseAdded RotationPhase = "added"
	// PhaseSwitched: the new root signs; the old one is still in the bundle, so
	// everything it signed still verifies.
	PhaseSwitched RotationPhase = "switched"
)

// Rotation is the phase of a root rotation and the roots it concerns.
type Rotation struct {
	Phase RotationPhase
	// Old is the root being replaced (zero in PhaseSteady).
	Old Root
	// New is the root rotated to; in PhaseSteady, the one root.
	New Root
}

// Phase reads the rotation's phase from the active roots (as Roots returns them,
// oldest first). A rotation always moves towards the newest root: it is New, and the
// phase says whether it signs yet. More than two active roots, or none, is no phase
// this package produces, and an error saying so.
func Phase(roots []Root) (Rotation, error) {
	switch len(roots) {
	case 0:
		return Rotation{}, fmt.Errorf("%w: no active root", ErrNoRoot)
	case 1:
		return Rotation{Phase: PhaseSteady, New: roots[0]}, nil
	case 2:
		r := Rotation{Old: roots[0], New: roots[1], Phase: PhaseAdded}
		if r.New.Signing {
			r.Phase = PhaseSwitched
		}
		return r, nil
	}
	names := make([]string, len(roots))
	for i, r := range roots {
		names[i] = r.Secret
	}
	return Rotation{}, fmt.Errorf("%w: %d active roots (%v); a rotation has two at most: retire the extra ones (label %s=false)",
		ErrRotation, len(roots), names, RootLabel)
}

// Fingerprint is the hex SHA-256 of a certificate's DER: how agents and the CLI name
// a root or intermediate without sending it.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// BundleOf is the trust bundle of roots: each certificate's PEM once, in the given
// order (Roots returns them oldest first), so the same roots give the same bytes.
func BundleOf(roots []Root) []byte {
	var buf bytes.Buffer
	seen := map[string]bool{}
	for _, r := range roots {
		if seen[string(r.Cert.Raw)] {
			continue
		}
		seen[string(r.Cert.Raw)] = true
		buf.Write(pki.EncodeCert(r.Cert.Raw))
	}
	return buf.Bytes()
}

// AddRoot starts a rotation: it makes a new root (trust.NewRoot, in the trust domain
// of ClusterIssuer IssuerName) in a new Secret labelled RootLabel=true, so that it
// joins the bundle, but does not sign yet. It refuses unless the phase is
// PhaseSteady; in PhaseAdded it returns the root already added and created=false, so
// that a step run twice does not make a third root.
func AddRoot(ctx context.Context, c *Client, opts RootOptions) (root Root, created bool, err error) {
	roots, err := c.roots(ctx)
	if err != nil {
		return Root{}, false, fmt.Errorf("add root: %w", err)
	}
	rot, err := Phase(roots)
	if err != nil {
		return Root{}, false, fmt.Errorf("add root: %w", err)
	}
	switch rot.Phase {
	case PhaseAdded:
		return rot.New, false, nil
	case PhaseSwitched:
		return Root{}, false, fmt.Errorf("add root: %w: %s already signs and %s is still active; finish that rotation first",
			ErrRotation, rot.New.Secret, rot.Old.Secret)
	}
	iss, err := c.CertManager.CertmanagerV1().ClusterIssuers().Get(ctx, IssuerName, metav1.GetOptions{})
	if err != nil {
		return Root{}, false, fmt.Errorf("add root: ClusterIssuer %s: %w", IssuerName, err)
	}
	td := iss.Annotations[TrustDomainAnnotation]
	if opts.TrustDomain != "" && opts.TrustDomain != td {
		return Root{}, false, fmt.Errorf("add root: %w: the mesh's trust domain is %q, asked for %q",
			trust.ErrTrustDomainMismatch, td, opts.TrustDomain)
	}
	now := c.now()
	certPEM, keyPEM, err := trust.NewRoot(td, opts.Lifetime, now)
	if err != nil {
		return Root{}, false, fmt.Errorf("add root: %w", err)
	}
	// Roots orders by NotBefore (one-second resolution) and a rotation moves towards
	// the newest root: the new one must start strictly after the current one.
	if made, err := pki.ParseCert(certPEM); err != nil || !made.NotBefore.After(rot.New.Cert.NotBefore) {
		return Root{}, false, fmt.Errorf("add root: %w: the new root would not start after the current root %s (%s); try again in a second",
			ErrRotation, rot.New.Secret, rot.New.Cert.NotBefore.UTC().Format(time.RFC3339))
	}
	name := "meshfed-root-" + now.UTC().Format("20060102-150405")
	sec, err := c.Kube.CoreV1().Secrets(c.namespace()).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   c.namespace(),
			Labels:      map[string]string{RootLabel: "true", cmCacheLabel: "true"},
			Annotations: map[string]string{TrustDomainAnnotation: td},
		},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, "ca.crt": certPEM},
	}, metav1.CreateOptions{})
	if err != nil {
		return Root{}, false, fmt.Errorf("add root: create Secret %s/%s: %w", c.namespace(), name, err)
	}
	cert, err := rootFromSecret(sec)
	if err != nil {
		return Root{}, false, fmt.Errorf("add root: %w", err)
	}
	if _, err := c.roots(ctx); err != nil { // refreshes the expiry gauge
		return Root{}, false, fmt.Errorf("add root: %w", err)
	}
	logr.FromContextOrDiscard(ctx).Info("added mesh root", "secret", name, "notAfter", cert.NotAfter, "signing", rot.New.Secret)
	return Root{Secret: name, Cert: cert}, true, nil
}

// SwitchSigning makes ClusterIssuer IssuerName sign with the root in Secret secret,
// which must be an active root, and waits until cert-manager reports the issuer Ready
// with it. Intermediates signed afterwards chain to that root. It is idempotent.
func SwitchSigning(ctx context.Context, c *Client, secret string) error {
	roots, err := c.roots(ctx)
	if err != nil {
		return fmt.Errorf("switch signing root: %w", err)
	}
	found := false
	for _, r := range roots {
		found = found || r.Secret == secret
	}
	if !found {
		return fmt.Errorf("switch signing root: %w: Secret %s/%s is not an active root (labelled %s=true); "+
			"signing with a root outside the bundle would break every new intermediate", ErrRotation, c.namespace(), secret, RootLabel)
	}
	issuers := c.CertManager.CertmanagerV1().ClusterIssuers()
	var from string
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		iss, err := issuers.Get(ctx, IssuerName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if iss.Spec.CA == nil {
			return fmt.Errorf("ClusterIssuer %s is not a CA issuer", IssuerName)
		}
		from = iss.Spec.CA.SecretName
		if from == secret {
			return nil
		}
		iss.Spec.CA.SecretName = secret
		_, err = issuers.Update(ctx, iss, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("switch signing root: %w", err)
	}
	if err := c.waitIssuerReady(ctx); err != nil {
		return fmt.Errorf("switch signing root: %w", err)
	}
	if from != secret {
		logr.FromContextOrDiscard(ctx).Info("switched signing root", "from", from, "to", secret)
	}
	return nil
}

// RetireRoot takes the root in Secret secret out of the bundle: its label RootLabel
// becomes "false" (the Secret stays, for a way back, until someone deletes it). It
// refuses to retire the signing root or the last active one. Retiring a root that is
// already retired does nothing.
func RetireRoot(ctx context.Context, c *Client, secret string) error {
	secrets := c.Kube.CoreV1().Secrets(c.namespace())
	roots, err := c.roots(ctx)
	if err != nil {
		return fmt.Errorf("retire root: %w", err)
	}
	active := false
	for _, r := range roots {
		if r.Secret != secret {
			continue
		}
		active = true
		if r.Signing {
			return fmt.Errorf("retire root: %w: %s still signs intermediates; switch signing first", ErrRotation, secret)
		}
	}
	if !active {
		return nil
	}
	if len(roots) < 2 {
		return fmt.Errorf("retire root: %w: %s is the only active root", ErrRotation, secret)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := secrets.Get(ctx, secret, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Labels[RootLabel] = "false"
		_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("retire root: %w", err)
	}
	if _, err := c.roots(ctx); err != nil { // drops its expiry series
		return fmt.Errorf("retire root: %w", err)
	}
	logr.FromContextOrDiscard(ctx).Info("retired mesh root", "secret", secret)
	return nil
}
