package clusteragent

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// The leader renews at two thirds of the certificate's life, and at once when the
// hub's record is of another certificate (or there is none) once the view is synced;
// never because of the record before the view is synced.
func TestRenewalDue(t *testing.T) {
	ca, err := pki.NewCA("etcd-ca", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func() (*x509.Certificate, string) {
		certPEM, _, err := ca.Issue(pki.ClientTemplate(hubinfo.EtcdUser("alpha", "")), 3*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := pki.ParseCert(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		return cert, string(certPEM)
	}
	cur, curPEM := issue()
	_, otherPEM := issue()
	life := cur.NotAfter.Sub(cur.NotBefore)
	renewAt := cur.NotAfter.Add(-life / 3)
	recorded := &model.EtcdCert{Cert: curPEM, NotAfter: cur.NotAfter, CSRDigest: "d"}
	for name, tc := range map[string]struct {
		rec    *model.EtcdCert
		synced bool
		now    time.Time
		want   bool
	}{
		"recorded, fresh":                    {recorded, true, cur.NotBefore.Add(time.Minute), false},
		"recorded, just before two thirds":   {recorded, true, renewAt.Add(-time.Nanosecond), false},
		"recorded, at two thirds":            {recorded, true, renewAt, true},
		"recorded, expired":                  {recorded, true, cur.NotAfter.Add(time.Hour), true},
		"no record, synced":                  {nil, true, cur.NotBefore.Add(time.Minute), true},
		"no record, not synced":              {nil, false, cur.NotBefore.Add(time.Minute), false},
		"not synced, at two thirds":          {nil, false, renewAt, true},
		"record of another certificate":      {&model.EtcdCert{Cert: otherPEM, CSRDigest: "d"}, true, cur.NotBefore.Add(time.Minute), true},
		"record that does not parse":         {&model.EtcdCert{Cert: "junk", CSRDigest: "d"}, true, cur.NotBefore.Add(time.Minute), true},
		"record of another, view not synced": {&model.EtcdCert{Cert: otherPEM, CSRDigest: "d"}, false, cur.NotBefore.Add(time.Minute), false},
	} {
		t.Run(name, func(t *testing.T) {
			got, why := renewalDue(cur, tc.rec, tc.synced, tc.now)
			if got != tc.want || (got && why == "") {
				t.Errorf("renewalDue = %v (%q), want %v", got, why, tc.want)
			}
		})
	}
}
