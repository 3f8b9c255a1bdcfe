package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

func TestIntermediateCondition(t *testing.T) {
	ca, err := pki.NewCA("root", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := pki.ClientTemplate("intermediate")
	chain, _, err := ca.Issue(tmpl, 3*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := pki.ParseCert(chain)
	signed := &model.Intermediate{Chain: string(chain), NotAfter: cert.NotAfter, CSRDigest: "d"}
	life := cert.NotAfter.Sub(cert.NotBefore)
	for name, tc := range map[string]struct {
		cluster    view.Cluster
		now        time.Time
		wantSet    bool
		wantStatus metav1.ConditionStatus
		wantReason string
	}{
		"mesh CA not in use": {cluster: view.Cluster{}, now: cert.NotBefore},
		"pending": {cluster: view.Cluster{IntermediateCSR: &model.IntermediateCSR{}}, now: cert.NotBefore,
			wantSet: true, wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonIntermediatePending},
		"valid": {cluster: view.Cluster{Intermediate: signed}, now: cert.NotBefore.Add(life / 2),
			wantSet: true, wantStatus: metav1.ConditionTrue, wantReason: v1.ReasonIntermediateValid},
		"expiring": {cluster: view.Cluster{Intermediate: signed}, now: cert.NotAfter.Add(-life / 4),
			wantSet: true, wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonIntermediateExpiring},
		"expired": {cluster: view.Cluster{Intermediate: signed}, now: cert.NotAfter.Add(time.Second),
			wantSet: true, wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonIntermediateExpired},
		"garbage": {cluster: view.Cluster{Intermediate: &model.Intermediate{Chain: "x"}}, now: cert.NotBefore,
			wantSet: true, wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonIntermediateInvalid},
	} {
		t.Run(name, func(t *testing.T) {
			cond, set := intermediateCondition(tc.cluster, tc.now, 7)
			if set != tc.wantSet {
				t.Fatalf("set = %v, want %v", set, tc.wantSet)
			}
			if set && (cond.Status != tc.wantStatus || cond.Reason != tc.wantReason || cond.ObservedGeneration != 7) {
				t.Errorf("condition = %+v, want %s/%s", cond, tc.wantStatus, tc.wantReason)
			}
		})
	}
}
