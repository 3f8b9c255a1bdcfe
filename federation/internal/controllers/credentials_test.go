package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// CredentialsValid follows the hub's record of the agent's etcd certificate: Pending
// without one, Valid until a quarter of its life is left (after the agent's renewal
// point at a third), Expiring until it expires, then Expired; each state says when
// the next one starts.
func TestCredentialsCondition(t *testing.T) {
	ca, err := pki.NewCA("ca", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.Issue(pki.ClientTemplate("meshfed-agent-alpha"), 4*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := pki.ParseCert(certPEM)
	rec := &model.EtcdCert{Cert: string(certPEM), NotAfter: cert.NotAfter, CSRDigest: "d"}
	life := cert.NotAfter.Sub(cert.NotBefore)
	expiring := cert.NotAfter.Add(-life / 4)
	renewAt := cert.NotAfter.Add(-life / 3)
	for name, tc := range map[string]struct {
		rec    *model.EtcdCert
		now    time.Time
		status metav1.ConditionStatus
		reason string
		next   time.Time
	}{
		"no record":             {nil, cert.NotBefore, metav1.ConditionUnknown, v1.ReasonCredentialsPending, time.Time{}},
		"fresh":                 {rec, cert.NotBefore.Add(time.Minute), metav1.ConditionTrue, v1.ReasonCredentialsValid, expiring},
		"at the renewal point":  {rec, renewAt, metav1.ConditionTrue, v1.ReasonCredentialsValid, expiring},
		"a quarter left":        {rec, expiring, metav1.ConditionFalse, v1.ReasonCredentialsExpiring, cert.NotAfter},
		"expired":               {rec, cert.NotAfter, metav1.ConditionFalse, v1.ReasonCredentialsExpired, time.Time{}},
		"record does not parse": {&model.EtcdCert{Cert: "junk"}, cert.NotBefore, metav1.ConditionFalse, v1.ReasonCredentialsInvalid, time.Time{}},
	} {
		t.Run(name, func(t *testing.T) {
			cond, next := credentialsCondition(tc.rec, tc.now, 3)
			if cond.Type != v1.ConditionCredentialsValid || cond.Status != tc.status || cond.Reason != tc.reason || cond.ObservedGeneration != 3 {
				t.Errorf("condition %+v, want %s/%s at generation 3", cond, tc.status, tc.reason)
			}
			if !next.Equal(tc.next) {
				t.Errorf("next change at %v, want %v", next, tc.next)
			}
		})
	}
}
