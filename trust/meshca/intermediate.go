package meshca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/trust"
)

// cleanupTimeout bounds the deletion of a CertificateRequest after its wait ended,
// also when the caller's context has.
const cleanupTimeout = 30 * time.Second

// SignIntermediate signs the intermediate CA of member cluster cluster from csrPEM,
// a CSR made in that cluster (trust.NewIntermediateCSR): the cluster's private key
// never reaches the hub.
//
// It validates the CSR against the mesh's trust domain (trust.ValidateIntermediateCSR)
// and refuses, with an error wrapping trust.ErrWrongCluster, a CSR naming any other
// cluster. It then creates a cert-manager CertificateRequest for a CA (usages cert sign
// and digital signature, issuer ClusterIssuer IssuerName) in the client's namespace,
// waits until cert-manager's approver has approved it and the CA issuer has signed it,
// checks the certificate it got, deletes the CertificateRequest, and returns the chain:
// the intermediate, then the signing root.
//
// lifetime 0 means trust.DefaultIntermediateLifetime; it is cut to the signing root's
// remaining life, and must be at least trust.MinIntermediateLifetime.
func SignIntermediate(ctx context.Context, c *Client, cluster string, csrPEM []byte, lifetime time.Duration) ([]byte, error) {
	chain, result, err := c.signIntermediate(ctx, cluster, csrPEM, lifetime)
	intermediateCSRs.WithLabelValues(result).Inc()
	if err != nil {
		return nil, fmt.Errorf("sign intermediate for cluster %q: %w", cluster, err)
	}
	return chain, nil
}

// refused wraps errors the hub returns for invalid requests, so that the metric says
// "refused" rather than "failed".
type refused struct{ error }

func (r refused) Unwrap() error { return r.error }

func (c *Client) signIntermediate(ctx context.Context, cluster string, csrPEM []byte, lifetime time.Duration) (chain []byte, result string, err error) {
	log := logr.FromContextOrDiscard(ctx).WithValues("cluster", cluster)
	chain, err = c.sign(ctx, log, cluster, csrPEM, lifetime)
	var r refused
	switch {
	case errors.As(err, &r):
		// An audit record: someone asked for an intermediate they may not have.
		log.Info("refused intermediate CSR", "reason", err.Error())
		return nil, resultRefused, r.error
	case err != nil:
		return nil, resultFailed, err
	}
	return chain, resultSigned, nil
}

func (c *Client) sign(ctx context.Context, log logr.Logger, cluster string, csrPEM []byte, lifetime time.Duration) ([]byte, error) {
	issuer, err := c.CertManager.CertmanagerV1().ClusterIssuers().Get(ctx, IssuerName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: ClusterIssuer %s does not exist (EnsureRoot has not run)", ErrNoRoot, IssuerName)
	}
	if err != nil {
		return nil, err
	}
	td := issuer.Annotations[TrustDomainAnnotation]
	if td == "" || issuer.Spec.CA == nil {
		return nil, fmt.Errorf("ClusterIssuer %s was not made by EnsureRoot (no %s annotation or no CA)", IssuerName, TrustDomainAnnotation)
	}
	csr, err := trust.ValidateIntermediateCSR(csrPEM, td, cluster)
	if err != nil {
		return nil, refused{err}
	}
	if ok, status := issuerReady(issuer); !ok {
		return nil, fmt.Errorf("ClusterIssuer %s is not ready: %s", IssuerName, status)
	}
	secret, err := c.Kube.CoreV1().Secrets(c.namespace()).Get(ctx, issuer.Spec.CA.SecretName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("signing root Secret: %w", err)
	}
	root, err := rootFromSecret(secret)
	if err != nil {
		return nil, err
	}

	if lifetime == 0 {
		lifetime = trust.DefaultIntermediateLifetime
	}
	if left := root.NotAfter.Sub(c.now()); lifetime > left {
		lifetime = left.Truncate(time.Second)
	}
	if lifetime < trust.MinIntermediateLifetime {
		return nil, refused{fmt.Errorf("%w: lifetime %s is under the minimum %s (or the signing root %s expires too soon, at %s)",
			trust.ErrInvalid, lifetime, trust.MinIntermediateLifetime, secret.Name, root.NotAfter.UTC().Format(time.RFC3339))}
	}

	crs := c.CertManager.CertmanagerV1().CertificateRequests(c.namespace())
	cr, err := crs.Create(ctx, &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "meshfed-intermediate-" + cluster + "-",
			Labels:       map[string]string{ClusterLabel: cluster},
		},
		Spec: cmapi.CertificateRequestSpec{
			Request:   csrPEM,
			IsCA:      true,
			Usages:    []cmapi.KeyUsage{cmapi.UsageCertSign, cmapi.UsageDigitalSignature},
			Duration:  &metav1.Duration{Duration: lifetime},
			IssuerRef: cmmeta.IssuerReference{Name: IssuerName, Kind: cmapi.ClusterIssuerKind, Group: "cert-manager.io"},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create CertificateRequest: %w", err)
	}
	log = log.WithValues("certificateRequest", cr.Name)
	defer func() {
		// The request holds nothing secret, but finished ones would pile up.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := crs.Delete(dctx, cr.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			log.Error(err, "delete CertificateRequest")
		}
	}()

	var done *cmapi.CertificateRequest
	err = c.poll(ctx, "CertificateRequest "+c.namespace()+"/"+cr.Name+" signed", func(ctx context.Context) (bool, string, error) {
		got, err := crs.Get(ctx, cr.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil //nolint:nilerr // transient until the timeout says otherwise
		}
		status := requestStatus(got)
		switch {
		case apiutil.CertificateRequestIsDenied(got):
			return false, status, fmt.Errorf("CertificateRequest %s was denied: %s", cr.Name, status)
		case apiutil.CertificateRequestReadyReason(got) == cmapi.CertificateRequestReasonFailed:
			return false, status, fmt.Errorf("CertificateRequest %s failed: %s", cr.Name, status)
		case apiutil.CertificateRequestReadyReason(got) == cmapi.CertificateRequestReasonIssued && len(got.Status.Certificate) > 0:
			done = got
			return true, status, nil
		}
		return false, status, nil
	})
	if err != nil {
		return nil, err
	}
	if !apiutil.CertificateRequestIsApproved(done) {
		return nil, fmt.Errorf("CertificateRequest %s was signed without approval: %s", cr.Name, requestStatus(done))
	}
	cert, err := checkIntermediate(done, csr, root, td, cluster)
	if err != nil {
		return nil, fmt.Errorf("CertificateRequest %s: %w", cr.Name, err)
	}
	log.Info("signed intermediate", "serial", cert.SerialNumber.Text(16), "notAfter", cert.NotAfter, "root", secret.Name)
	var out bytes.Buffer
	out.Write(pki.EncodeCert(cert.Raw))
	out.Write(pki.EncodeCert(root.Raw))
	return out.Bytes(), nil
}

// checkIntermediate checks what cert-manager signed: a CA for the CSR's key, with the
// cluster's identity and name constraints, chaining to the signing root. The hub never hands out a
// certificate it has not checked.
func checkIntermediate(cr *cmapi.CertificateRequest, csr *x509.CertificateRequest, root *x509.Certificate, td, cluster string) (*x509.Certificate, error) {
	certs, err := trust.ParseCertificates(cr.Status.Certificate)
	if err != nil {
		return nil, fmt.Errorf("status.certificate: %w", err)
	}
	cert := certs[0]
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("signed certificate %q is not a CA", cert.Subject)
	}
	if k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(csr.PublicKey) {
		return nil, errors.New("signed certificate is not for the CSR's key")
	}
	wantID, err := trust.ClusterID(td, cluster)
	if err != nil {
		return nil, err
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != wantID {
		return nil, fmt.Errorf("signed certificate names %v, want %s", cert.URIs, wantID)
	}
	// cert-manager copies the CSR's name constraints into what it signs; an issuer
	// that did not would hand out an intermediate that may sign any identity.
	if err := trust.CheckIntermediateBound(cert); err != nil {
		return nil, fmt.Errorf("signed certificate is not bound to its cluster (does the issuer copy the CSR's name constraints?): %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: cert.NotBefore}); err != nil {
		return nil, fmt.Errorf("signed certificate does not chain to the signing root: %w", err)
	}
	return cert, nil
}

func requestStatus(cr *cmapi.CertificateRequest) string {
	var b bytes.Buffer
	for i, cond := range cr.Status.Conditions {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s=%s %s: %s", cond.Type, cond.Status, cond.Reason, cond.Message)
	}
	if b.Len() == 0 {
		return "no conditions yet (is cert-manager running?)"
	}
	return b.String()
}
