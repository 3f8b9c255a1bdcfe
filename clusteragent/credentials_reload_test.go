package clusteragent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshfed/meshfed/internal/creds/agentcreds"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
)

// A renewed certificate of the same registration is taken in place; a Secret with a
// new registration's certificate ends reload with errRegisteredAgain, so that the
// agent restarts and connects as the new registration's user (its open connections
// stay the old user's, which etcd refuses).
func TestReloadRestartsOnNewRegistration(t *testing.T) {
	ca, err := pki.NewCA("etcd-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	reg := hubinfo.NewRegistration()
	issue := func(registration string) agentcreds.Credentials {
		certPEM, keyPEM, err := ca.Issue(pki.ClientTemplate(hubinfo.EtcdUser("alpha", registration)), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return agentcreds.Credentials{Cluster: "alpha", Etcd: etcdconn.Credentials{
			Endpoints: []string{"https://127.0.0.1:2379"}, CA: ca.CertPEM, Cert: certPEM, Key: keyPEM}}
	}
	cur := issue(reg)
	pair, err := etcdconn.NewKeyPair(cur.Etcd.Cert, cur.Etcd.Key)
	if err != nil {
		t.Fatal(err)
	}
	kube := fake.NewClientset(cur.Secret("agents"))
	clk := clocktesting.NewFakeClock(time.Now())
	c := &credentials{cluster: "alpha", namespace: "agents", kube: kube, pair: pair, clock: clk, log: logr.Discard()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.reload(ctx) }()

	store := func(creds agentcreds.Credentials) {
		if _, err := kube.CoreV1().Secrets("agents").Update(ctx, creds.Secret("agents"), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tick := func() {
		testutil.Eventually(t, 10*time.Second, "reload's ticker", func() error {
			if !clk.HasWaiters() {
				return errors.New("no ticker yet")
			}
			return nil
		})
		clk.Step(credentialsPoll)
	}

	renewed := issue(reg)
	store(renewed)
	tick()
	renewedCert, _ := renewed.Certificate()
	testutil.Eventually(t, 10*time.Second, "the renewal taken in place", func() error {
		if !pair.Leaf().Equal(renewedCert) {
			return errors.New("still the first certificate")
		}
		return nil
	})

	store(issue(hubinfo.NewRegistration()))
	tick()
	select {
	case err := <-done:
		if !errors.Is(err, errRegisteredAgain) {
			t.Errorf("reload returned %v, want errRegisteredAgain", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reload kept running with a new registration's certificate in the Secret")
	}
	if !pair.Leaf().Equal(renewedCert) {
		t.Error("the connection's certificate changed to another registration's")
	}
}
