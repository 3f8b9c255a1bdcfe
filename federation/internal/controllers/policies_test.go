package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

func globalSvc(name string) *v1.GlobalService {
	return &v1.GlobalService{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1.GlobalServiceSpec{Ports: []v1.GlobalServicePort{{Name: "grpc", Port: 8080, Protocol: v1.ProtocolGRPC}}}}
}

// canary is docs/api.md's canary: retries on UNAVAILABLE, a 5% split to version=v2 in
// the clusters listed.
func canary(name string, clusters ...v1.ClusterName) *v1.TrafficPolicy {
	return &v1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1.TrafficPolicySpec{
		GlobalService: "cart",
		Subsets:       []v1.Subset{{Name: "v2", Clusters: clusters, Labels: map[string]string{"version": "v2"}}},
		Routes: []v1.TrafficRoute{{
			Name:    "all",
			Retries: &v1.RetryPolicy{Attempts: 3},
			Fault:   &v1.FaultInjection{Abort: &v1.FaultAbort{Percent: intstr.FromString("0.5"), Code: "Unavailable"}},
			Split:   []v1.WeightedSubset{{Subset: "", Weight: 95}, {Subset: "v2", Weight: 5}},
		}},
	}}
}

// canaryRecord is canary's record with every default resolved.
func canaryRecord(name string, clusters ...string) *model.TrafficPolicy {
	return &model.TrafficPolicy{Namespace: ns, Name: name, GlobalService: "cart",
		LoadBalancer: model.LoadBalancer{Policy: "RoundRobin"},
		Subsets:      []model.Subset{{Name: "v2", Clusters: clusters, Labels: map[string]string{"version": "v2"}}},
		Routes: []model.Route{{
			Name:    "all",
			Retries: &model.Retries{Attempts: 3, On: []string{"Unavailable"}, BackoffBase: duration(25 * time.Millisecond), BackoffMax: duration(250 * time.Millisecond)},
			Fault:   &model.Fault{Abort: &model.FaultAbort{PerMillion: 5000, Code: "Unavailable"}},
			Split:   []model.WeightedSubset{{Subset: "", Weight: 95}, {Subset: "v2", Weight: 5}},
		}},
	}
}

// policyConds checks a policy's status: Accepted and ResolvedRefs with the given
// status and reason, Programmed Unknown/NotReported, all at the object's generation,
// and a message of ResolvedRefs containing msg.
func policyConds(s v1.PolicyStatus, gen int64, accepted, refs metav1.ConditionStatus, acceptedReason, refsReason, msg string) (bool, string) {
	problem := ""
	if c := meta.FindStatusCondition(s.Conditions, v1.ConditionResolvedRefs); c != nil && !strings.Contains(c.Message, msg) {
		problem = fmt.Sprintf("ResolvedRefs message %q does not contain %q", c.Message, msg)
	}
	return all(
		observed(s.ObservedGeneration, gen),
		cond(s.Conditions, v1.ConditionAccepted, accepted, acceptedReason, gen),
		cond(s.Conditions, v1.ConditionResolvedRefs, refs, refsReason, gen),
		cond(s.Conditions, v1.ConditionProgrammed, metav1.ConditionUnknown, v1.ReasonNotReported, gen),
		problem,
	)
}

// TestPolicyReconcilers runs the TrafficPolicy and AuthorizationPolicy reconcilers,
// the Collector and Ready against a real kube-apiserver and etcd.
func TestPolicyReconcilers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	checkLeaks(t)
	e := newHubEnv(t)
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	e.create(t, meshCluster("beta", "us-east", "us-east-1a"))
	e.create(t, globalSvc("cart"))
	e.startManager()

	tp := canary("cart", "beta", "gamma")
	step("traffic policy naming an unregistered cluster", func(t *testing.T) {
		e.create(t, tp)
		e.waitPolicyRecord(t, keyspace.TrafficPolicy(ns, "cart"), canaryRecord("cart", "beta", "gamma"))
		waitObject(t, e, tp, "Accepted, ResolvedRefs False naming gamma", func(o *v1.TrafficPolicy) (bool, string) {
			return policyConds(o.Status, o.Generation, metav1.ConditionTrue, metav1.ConditionFalse, v1.ReasonAccepted, v1.ReasonUnknownCluster,
				"subsets name clusters that are not registered: gamma")
		})
		e.waitEvent(t, tp, corev1.EventTypeWarning, v1.ReasonUnknownCluster)
		if len(tp.Status.Clusters) != 0 {
			t.Errorf("status.clusters = %v before any agent reports", tp.Status.Clusters)
		}
		if got := promtest.ToFloat64(policyResolved.WithLabelValues("TrafficPolicy", ns, "cart")); got != 0 {
			t.Errorf("policy_resolved_refs = %v, want 0", got)
		}
	})
	step("the cluster registered", func(t *testing.T) {
		e.create(t, meshCluster("gamma", "eu-west", "eu-west-1a"))
		waitObject(t, e, tp, "ResolvedRefs True", func(o *v1.TrafficPolicy) (bool, string) {
			return policyConds(o.Status, o.Generation, metav1.ConditionTrue, metav1.ConditionTrue, v1.ReasonAccepted, v1.ReasonResolvedRefs, "")
		})
		e.waitEvent(t, tp, corev1.EventTypeNormal, v1.ReasonResolvedRefs)
		if got := promtest.ToFloat64(policyAccepted.WithLabelValues("TrafficPolicy", ns, "cart")); got != 1 {
			t.Errorf("policy_accepted = %v, want 1", got)
		}
	})
	step("a second policy of the service comes first by name", func(t *testing.T) {
		first := canary("a-cart", "beta")
		e.create(t, first)
		e.waitPolicyRecord(t, keyspace.TrafficPolicy(ns, "a-cart"), canaryRecord("a-cart", "beta"))
		e.waitGone(t, keyspace.TrafficPolicy(ns, "cart"))
		waitObject(t, e, tp, "Conflicted", func(o *v1.TrafficPolicy) (bool, string) {
			return policyConds(o.Status, o.Generation, metav1.ConditionFalse, metav1.ConditionTrue, v1.ReasonConflicted, v1.ReasonResolvedRefs, "")
		})
		e.waitEvent(t, tp, corev1.EventTypeWarning, v1.ReasonConflicted)
		e.deleteAndWait(t, first)
		e.waitGone(t, keyspace.TrafficPolicy(ns, "a-cart"))
		e.waitPolicyRecord(t, keyspace.TrafficPolicy(ns, "cart"), canaryRecord("cart", "beta", "gamma"))
		waitObject(t, e, tp, "Accepted again", func(o *v1.TrafficPolicy) (bool, string) {
			return policyConds(o.Status, o.Generation, metav1.ConditionTrue, metav1.ConditionTrue, v1.ReasonAccepted, v1.ReasonResolvedRefs, "")
		})
	})
	step("an update the hub cannot serve", func(t *testing.T) {
		update(t, e, tp, func(o *v1.TrafficPolicy) {
			o.Spec.Routes[0].Match.Headers = []v1.HeaderMatch{{Name: "x-tenant", Regex: ptr.To("(?<=a)b")}}
		})
		e.waitGone(t, keyspace.TrafficPolicy(ns, "cart"))
		waitObject(t, e, tp, "Invalid", func(o *v1.TrafficPolicy) (bool, string) {
			c := meta.FindStatusCondition(o.Status.Conditions, v1.ConditionAccepted)
			if c != nil && !strings.Contains(c.Message, `header "x-tenant": regex`) {
				return false, "Accepted message does not name the header: " + c.Message
			}
			return policyConds(o.Status, o.Generation, metav1.ConditionFalse, metav1.ConditionTrue, v1.ReasonInvalid, v1.ReasonResolvedRefs, "")
		})
		update(t, e, tp, func(o *v1.TrafficPolicy) { o.Spec.Routes[0].Match.Headers = nil })
		e.waitPolicyRecord(t, keyspace.TrafficPolicy(ns, "cart"), canaryRecord("cart", "beta", "gamma"))
	})

	// "Nobody from cluster staging may call payments", and the namespace denies by default.
	noStaging := &v1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "no-staging", Namespace: ns}, Spec: v1.AuthorizationPolicySpec{
		GlobalService: "payments", Action: v1.AuthorizationDeny,
		Rules: []v1.AuthorizationRule{{From: []v1.AuthorizationSource{{Clusters: []v1.ClusterName{"beta"}}}}},
	}}
	posture := &v1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "posture", Namespace: ns},
		Spec: v1.AuthorizationPolicySpec{DefaultAction: v1.AuthorizationDeny}}
	step("authorization policy of a missing global service", func(t *testing.T) {
		e.create(t, noStaging)
		e.create(t, posture)
		e.waitPolicyRecord(t, keyspace.AuthorizationPolicy(ns, "no-staging"), &model.AuthorizationPolicy{Namespace: ns, Name: "no-staging",
			GlobalService: "payments", Action: "Deny", Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Clusters: []string{"beta"}}}}}})
		e.waitPolicyRecord(t, keyspace.AuthorizationPolicy(ns, "posture"), &model.AuthorizationPolicy{Namespace: ns, Name: "posture", DefaultAction: "Deny"})
		waitObject(t, e, noStaging, "GlobalServiceNotFound", func(o *v1.AuthorizationPolicy) (bool, string) {
			return policyConds(o.Status, o.Generation, metav1.ConditionTrue, metav1.ConditionFalse, v1.ReasonAccepted, v1.ReasonGlobalServiceNotFound,
				"GlobalService shop/payments does not exist")
		})
		e.waitEvent(t, noStaging, corev1.EventTypeWarning, v1.ReasonGlobalServiceNotFound)
		waitObject(t, e, posture, "namespace posture accepted", func(o *v1.AuthorizationPolicy) (bool, string) {
			return policyConds(o.Status, o.Generation, metav1.ConditionTrue, metav1.ConditionTrue, v1.ReasonAccepted, v1.ReasonResolvedRefs, "")
		})
		e.create(t, globalSvc("payments"))
		waitObject(t, e, noStaging, "ResolvedRefs True", func(o *v1.AuthorizationPolicy) (bool, string) {
			return policyConds(o.Status, o.Generation, metav1.ConditionTrue, metav1.ConditionTrue, v1.ReasonAccepted, v1.ReasonResolvedRefs, "")
		})
	})
	step("collector and ready", func(t *testing.T) {
		e.put(t, keyspace.TrafficPolicy(ns, "orphan"), canaryRecord("orphan"))
		e.put(t, keyspace.AuthorizationPolicy(ns, "orphan"), &model.AuthorizationPolicy{Namespace: ns, Name: "orphan", DefaultAction: "Allow"})
		c := &Collector{Client: e.kube, KV: e.etcd, Auth: e.etcd}
		if n, err := c.Collect(e.ctx); err != nil || n != 2 {
			t.Fatalf("Collect = %d, %v; want the 2 orphan policies", n, err)
		}
		e.waitGone(t, keyspace.TrafficPolicy(ns, "orphan"))
		// A store rebuilt: Ready writes every policy before its marker.
		for _, k := range []string{keyspace.TrafficPolicy(ns, "cart"), keyspace.AuthorizationPolicy(ns, "posture"), keyspace.HubReady()} {
			if _, err := e.etcd.Delete(e.ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		r := &Ready{Client: e.kube, KV: e.etcd, Auth: e.etcd, Clock: clocktesting.NewFakePassiveClock(time.Now())}
		if wrote, err := r.ensure(e.ctx, time.Now()); err != nil || !wrote {
			t.Fatalf("Ready.ensure = %v, %v", wrote, err)
		}
		e.waitPolicyRecord(t, keyspace.TrafficPolicy(ns, "cart"), canaryRecord("cart", "beta", "gamma"))
		e.waitPolicyRecord(t, keyspace.AuthorizationPolicy(ns, "posture"), &model.AuthorizationPolicy{Namespace: ns, Name: "posture", DefaultAction: "Deny"})
	})
	step("delete", func(t *testing.T) {
		e.deleteAndWait(t, tp)
		e.deleteAndWait(t, noStaging)
		e.waitGone(t, keyspace.TrafficPolicy(ns, "cart"))
		e.waitGone(t, keyspace.AuthorizationPolicy(ns, "no-staging"))
	})
}

func TestPerMillion(t *testing.T) {
	for in, want := range map[string]int32{"0": 0, "100": 1_000_000, "0.5": 5000, "10": 100_000, "99.9999": 999_999, "100.0": 1_000_000, "5.25": 52_500} {
		if got, err := perMillion(intstr.FromString(in)); err != nil || got != want {
			t.Errorf("perMillion(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if got, err := perMillion(intstr.FromInt32(7)); err != nil || got != 70_000 {
		t.Errorf("perMillion(7) = %d, %v", got, err)
	}
	for _, bad := range []string{"", "100.1", "1.00001", "-1", "x", "1.-5", "101"} {
		if got, err := perMillion(intstr.FromString(bad)); err == nil {
			t.Errorf("perMillion(%q) = %d, want an error", bad, got)
		}
	}
}
