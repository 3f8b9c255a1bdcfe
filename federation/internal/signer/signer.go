package signer

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
)

// SignerName is the signer of agents' etcd client certificates.
const SignerName = hubinfo.SignerName

// Lifetimes of the certificates the signer issues.
const (
	DefaultLifetime = 30 * 24 * time.Hour
	MaxLifetime     = 90 * 24 * time.Hour
)

var decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "meshfed", Subsystem: "hub", Name: "etcd_csr_decisions_total",
	Help: "Agents' etcd client CSRs reviewed by the hub, by decision (Approved, Denied).",
}, []string{"decision"})

// RegisterMetrics registers the package's collectors with reg. The component that
// runs this package calls it once on the registry it serves.
func RegisterMetrics(reg prometheus.Registerer) { reg.MustRegister(decisions, renewals) }

// EventSource is the reporting controller of the signer's Events: the signer's name.
const EventSource = SignerName

// eventReasonDenied is the reason of the Warning Event on a denied CSR.
const eventReasonDenied = "Denied"

// Reconciler approves and signs etcd client CSRs.
type Reconciler struct {
	Client client.Client
	CA     *pki.CA
	// Lifetime is the life of a certificate whose CSR asks for none, and the most any
	// CSR gets. 0: DefaultLifetime, and MaxLifetime for CSRs that ask.
	Lifetime time.Duration
	// Events hears of every denial, on the CSR; Setup sets the manager's recorder if nil.
	Events events.EventRecorder

	// apiReader reads around Client's cache; Setup sets it.
	apiReader client.Reader
}

// Setup registers the signer with mgr.
func (r *Reconciler) Setup(mgr ctrl.Manager) error {
	r.apiReader = mgr.GetAPIReader()
	if r.Events == nil {
		r.Events = mgr.GetEventRecorder(EventSource)
	}
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
		csr, ok := o.(*certificatesv1.CertificateSigningRequest)
		return ok && csr.Spec.SignerName == SignerName
	})
	return ctrl.NewControllerManagedBy(mgr).Named("csrsigner").
		For(&certificatesv1.CertificateSigningRequest{}, builder.WithPredicates(ours)).
		Complete(r)
}

// Reconcile approves or denies one CSR, then signs it if approved.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	csr := &certificatesv1.CertificateSigningRequest{}
	if err := r.Client.Get(ctx, req.NamespacedName, csr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if csr.Spec.SignerName != SignerName || len(csr.Status.Certificate) > 0 || hasCondition(csr, certificatesv1.CertificateDenied) ||
		hasCondition(csr, certificatesv1.CertificateFailed) {
		return ctrl.Result{}, nil
	}
	if !hasCondition(csr, certificatesv1.CertificateApproved) {
		cluster, reason, err := r.review(ctx, csr)
		if err != nil {
			return ctrl.Result{}, err
		}
		cond := certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "MeshfedHubApproved",
			Message: fmt.Sprintf("etcd client certificate for the agent of cluster %q", cluster), LastUpdateTime: metav1.Now(),
		}
		if reason != "" {
			cond.Type, cond.Reason, cond.Message = certificatesv1.CertificateDenied, "MeshfedHubDenied", reason
		}
		csr.Status.Conditions = append(csr.Status.Conditions, cond)
		if err := r.Client.SubResource("approval").Update(ctx, csr); err != nil {
			return ctrl.Result{}, err
		}
		decisions.WithLabelValues(string(cond.Type)).Inc()
		if reason != "" && r.Events != nil {
			// A denial is final and happens once per CSR: whoever waits on the CSR
			// (meshfedctl cluster join) sees why in kubectl describe.
			r.Events.Eventf(csr, nil, corev1.EventTypeWarning, eventReasonDenied, "Review", "%s", reason)
		}
		log.Info("reviewed etcd client CSR", "csr", csr.Name, "decision", cond.Type, "reason", cond.Message)
		return ctrl.Result{}, nil // the update brings the CSR back for signing
	}

	parsed, err := pki.ParseCSR(csr.Spec.Request)
	if err != nil {
		return ctrl.Result{}, r.fail(ctx, csr, err.Error())
	}
	// Someone else may have approved the CSR: whatever the approval, this signer
	// issues nothing but clusters' etcd users (never etcd's root).
	if _, _, ok := hubinfo.ParseEtcdUser(parsed.Subject.CommonName); !ok {
		return ctrl.Result{}, r.fail(ctx, csr, fmt.Sprintf("common name %q is not the etcd user of a cluster: this signer signs nothing else",
			parsed.Subject.CommonName))
	}
	lifetime, limit := DefaultLifetime, MaxLifetime
	if r.Lifetime > 0 {
		lifetime, limit = r.Lifetime, r.Lifetime
	}
	if s := csr.Spec.ExpirationSeconds; s != nil {
		lifetime = min(time.Duration(*s)*time.Second, limit)
	}
	cert, err := r.CA.SignCSR(parsed, pki.ClientTemplate(parsed.Subject.CommonName), lifetime)
	if err != nil {
		return ctrl.Result{}, r.fail(ctx, csr, err.Error())
	}
	csr.Status.Certificate = cert
	if err := r.Client.Status().Update(ctx, csr); err != nil {
		return ctrl.Result{}, err
	}
	log.Info("signed etcd client certificate", "csr", csr.Name, "user", parsed.Subject.CommonName, "lifetime", lifetime)
	return ctrl.Result{}, nil
}

// review returns the cluster the CSR is for, and a reason to deny it ("" to approve).
func (r *Reconciler) review(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) (cluster, deny string, err error) {
	parsed, perr := pki.ParseCSR(csr.Spec.Request)
	if perr != nil {
		return "", fmt.Sprintf("spec.request is not a PEM CSR: %v", perr), nil
	}
	if err := parsed.CheckSignature(); err != nil {
		return "", fmt.Sprintf("CSR signature does not verify: %v", err), nil
	}
	cluster, registration, ok := hubinfo.ParseEtcdUser(parsed.Subject.CommonName)
	if !ok {
		return "", fmt.Sprintf("common name %q is not the etcd user of a cluster (want %q)", parsed.Subject.CommonName,
			hubinfo.EtcdUser("<cluster>", "<registration>")), nil
	}
	if !onlyCommonName(parsed) {
		return cluster, errOnlyCommonName, nil
	}
	mc := &v1.MeshCluster{}
	err = r.Client.Get(ctx, client.ObjectKey{Name: cluster}, mc)
	if r.apiReader != nil && (apierrors.IsNotFound(err) || (err == nil && !currentRegistration(mc, registration))) {
		// The cache may not yet have seen a MeshCluster created or registered again
		// just before the CSR, and a denial is final: ask the API server before denying.
		err = r.apiReader.Get(ctx, client.ObjectKey{Name: cluster}, mc)
	}
	if apierrors.IsNotFound(err) {
		return cluster, fmt.Sprintf("cluster %q is not registered: create its MeshCluster first", cluster), nil
	} else if err != nil {
		return "", "", err
	}
	if !currentRegistration(mc, registration) {
		if mc.Spec.Revoked {
			return cluster, fmt.Sprintf("cluster %q is revoked: run meshfedctl cluster register to register it again", cluster), nil
		}
		return cluster, fmt.Sprintf("common name %q is not the etcd user of cluster %q's current registration (%q): "+
			"credentials of earlier registrations are never issued again; run meshfedctl cluster register",
			parsed.Subject.CommonName, cluster, hubinfo.EtcdUser(cluster, mc.Spec.Registration)), nil
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: csr.Spec.Username, Groups: csr.Spec.Groups, UID: csr.Spec.UID, Extra: extra(csr.Spec.Extra),
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group: v1.GroupVersion.Group, Resource: "meshclusters", Verb: "update", Name: cluster,
		},
	}}
	if err := r.Client.Create(ctx, sar); err != nil {
		return "", "", fmt.Errorf("review CSR %s: %w", csr.Name, err)
	}
	if !sar.Status.Allowed {
		return cluster, fmt.Sprintf("user %q may not update MeshCluster %q, so may not obtain its credentials", csr.Spec.Username, cluster), nil
	}
	return cluster, "", nil
}

// currentRegistration reports whether registration is mc's current one, and mc not
// revoked.
func currentRegistration(mc *v1.MeshCluster, registration string) bool {
	return !mc.Spec.Revoked && mc.DeletionTimestamp.IsZero() && mc.Spec.Registration == registration
}

const errOnlyCommonName = "the CSR may hold only a common name"

// onlyCommonName reports whether the CSR asks for nothing but a common name: the
// signer copies nothing else, and a CSR that asks for more is a mistake or a probe.
func onlyCommonName(csr *x509.CertificateRequest) bool {
	s := csr.Subject
	return len(s.Country)+len(s.Organization)+len(s.OrganizationalUnit)+len(s.Locality)+len(s.Province)+
		len(s.StreetAddress)+len(s.PostalCode)+len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.URIs)+len(csr.EmailAddresses) == 0
}

func (r *Reconciler) fail(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, msg string) error {
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue, Reason: "SigningFailed", Message: msg,
		LastUpdateTime: metav1.Now(),
	})
	return errors.Join(r.Client.Status().Update(ctx, csr))
}

func hasCondition(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func extra(in map[string]certificatesv1.ExtraValue) map[string]authorizationv1.ExtraValue {
	out := make(map[string]authorizationv1.ExtraValue, len(in))
	for k, v := range in {
		out[k] = authorizationv1.ExtraValue(v)
	}
	return out
}
