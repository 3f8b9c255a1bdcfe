package controllers

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// TestPublishedDataCondition: the condition and the gauge from a list of rejections,
// as a View reports them for every cluster.
func TestPublishedDataCondition(t *testing.T) {
	all := []view.Rejection{
		{Cluster: "beta", Reason: "UndeclaredZone", Count: 3, Key: "/meshfed/clusters/beta/services/shop/cart", Detail: `zone "evil-zone-9" is not one of beta's`},
		{Cluster: "alpha", Reason: "Loopback", Count: 1, Key: "k", Detail: "d"},
		{Cluster: "beta", Reason: "AddressOutOfRange", Count: 200, Key: "/meshfed/clusters/beta/services/shop/cart", Detail: "endpoint 192.0.2.10 is outside 10.250.0.0/16"},
		{Cluster: "beta", Reason: "Duplicate", Count: 0}, // nothing refused: not a problem
	}
	tests := map[string]struct {
		cluster     string
		status      metav1.ConditionStatus
		reason      string
		contains    []string
		notContains []string
	}{
		"valid": {cluster: "gamma", status: metav1.ConditionTrue, reason: v1.ReasonPublishedDataValid},
		"one reason": {cluster: "alpha", status: metav1.ConditionFalse, reason: "Loopback",
			contains: []string{"1 refused for Loopback, e.g. k: d"}, notContains: []string{"also"}},
		"the largest reason with an example, the others counted": {cluster: "beta", status: metav1.ConditionFalse, reason: "AddressOutOfRange",
			contains: []string{"200 refused for AddressOutOfRange", "/meshfed/clusters/beta/services/shop/cart: endpoint 192.0.2.10 is outside 10.250.0.0/16",
				"also 3 for UndeclaredZone"},
			notContains: []string{"Duplicate", "evil-zone-9"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := publishedDataCondition(rejectionsOf(tc.cluster, all), 7)
			if c.Type != v1.ConditionPublishedDataValid || c.Status != tc.status || c.Reason != tc.reason || c.ObservedGeneration != 7 {
				t.Fatalf("condition %+v, want %s/%s at generation 7", c, tc.status, tc.reason)
			}
			for _, s := range tc.contains {
				if !strings.Contains(c.Message, s) {
					t.Errorf("message %q does not contain %q", c.Message, s)
				}
			}
			for _, s := range tc.notContains {
				if strings.Contains(c.Message, s) {
					t.Errorf("message %q contains %q", c.Message, s)
				}
			}
		})
	}

	t.Run("the gauge follows the latest rejections", func(t *testing.T) {
		var g rejectedGauge
		g.set("beta", rejectionsOf("beta", all))
		if got := promtest.ToFloat64(hubRejected.WithLabelValues("beta", "AddressOutOfRange")); got != 200 {
			t.Errorf("AddressOutOfRange = %v, want 200", got)
		}
		g.set("beta", rejectionsOf("beta", all[:1]))
		if n := promtest.CollectAndCount(hubRejected); n != 1 {
			t.Errorf("%d series after the out-of-range records went, want 1 (UndeclaredZone)", n)
		}
		g.forget("beta")
		if n := promtest.CollectAndCount(hubRejected); n != 0 {
			t.Errorf("%d series after the cluster went, want 0", n)
		}
	})

	t.Run("Events", func(t *testing.T) {
		valid := publishedDataCondition(nil, 1)
		bad := publishedDataCondition(rejectionsOf("beta", all), 1)
		worse := publishedDataCondition(rejectionsOf("beta", all[:1]), 1)
		for _, tc := range []struct {
			prev *metav1.Condition
			next metav1.Condition
			want bool
		}{{nil, valid, false}, {nil, bad, true}, {&valid, bad, true}, {&bad, bad, false}, {&bad, worse, true}, {&bad, valid, true}} {
			if got := clusterEvents[v1.ConditionPublishedDataValid](tc.prev, tc.next); got != tc.want {
				t.Errorf("%v -> %s/%s: Event %v, want %v", tc.prev, tc.next.Status, tc.next.Reason, got, tc.want)
			}
		}
	})
}

// TestHostnameOwner: the oldest claimant owns a hostname, ties broken by namespace
// and name, and the loser's condition names the owner.
func TestHostnameOwner(t *testing.T) {
	at := func(sec int) metav1.Time { return metav1.NewTime(time.Date(2026, 1, 1, 0, 0, sec, 0, time.UTC)) }
	gs := func(namespace, name string, created metav1.Time) *v1.GlobalService {
		return &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, CreationTimestamp: created}}
	}
	tests := []struct{ a, b *v1.GlobalService }{
		{gs("z", "z", at(1)), gs("a", "a", at(2))}, // older wins over name
		{gs("a", "z", at(1)), gs("b", "a", at(1))}, // then namespace
		{gs("a", "a", at(1)), gs("a", "b", at(1))}, // then name
	}
	for _, tc := range tests {
		if !claimsFirst(tc.a, tc.b) || claimsFirst(tc.b, tc.a) {
			t.Errorf("%s/%s (%v) should claim before %s/%s (%v)", tc.a.Namespace, tc.a.Name, tc.a.CreationTimestamp, tc.b.Namespace, tc.b.Name, tc.b.CreationTimestamp)
		}
	}
	owner, loser := gs("shop", "cart", at(1)), gs("evil", "cart", at(5))
	c := hostnameCondition(loser, "cart.example", owner)
	if c.Status != metav1.ConditionTrue || c.Reason != v1.ReasonHostnameInUse || !strings.Contains(c.Message, "shop/cart") {
		t.Errorf("loser's condition %+v should be True/%s naming shop/cart", c, v1.ReasonHostnameInUse)
	}
	if diff := cmp.Diff(metav1.ConditionFalse, hostnameCondition(owner, "cart.example", nil).Status); diff != "" {
		t.Errorf("owner's HostnameConflict: %s", diff)
	}
	if !conflictStartedOrEnded(nil, c) || conflictStartedOrEnded(nil, hostnameCondition(owner, "cart.example", nil)) {
		t.Error("a new GlobalService should announce a conflict and not the lack of one")
	}
}
