package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// waitPolicyRecord is waitRecord for policy records, whose generation is the
// object's: it must be set, and is not compared.
func (e *hubEnv) waitPolicyRecord(t *testing.T, key string, want model.Record) {
	t.Helper()
	testutil.Eventually(t, waitFor, "record at "+key, testutil.Check(func() (bool, string) {
		resp, err := e.etcd.Get(e.ctx, key)
		if err != nil {
			return false, err.Error()
		}
		if len(resp.Kvs) == 0 {
			return false, "no such key"
		}
		got, err := model.Decode(key, resp.Kvs[0].Value)
		if err != nil {
			return false, fmt.Sprintf("stored value does not decode: %v", err)
		}
		switch r := got.(type) {
		case *model.TrafficPolicy:
			if r.Generation <= 0 {
				return false, "record without generation"
			}
		case *model.AuthorizationPolicy:
			if r.Generation <= 0 {
				return false, "record without generation"
			}
		}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(model.TrafficPolicy{}, "Generation"),
			cmpopts.IgnoreFields(model.AuthorizationPolicy{}, "Generation")); diff != "" {
			return false, "(-want +got):\n" + diff
		}
		return true, ""
	}))
}

// programmed checks a policy's Programmed condition (status and reason at gen, a
// message containing msg) and status.clusters.
func programmed(s v1.PolicyStatus, gen int64, status metav1.ConditionStatus, reason, msg string, clusters ...v1.ClusterProgrammed) (bool, string) {
	problem := ""
	c := meta.FindStatusCondition(s.Conditions, v1.ConditionProgrammed)
	if c != nil && !strings.Contains(c.Message, msg) {
		problem = fmt.Sprintf("Programmed message %q does not contain %q", c.Message, msg)
	}
	got := slices.Clone(s.Clusters)
	for i := range got {
		got[i].Message = "" // checked by msg
	}
	if !slices.Equal(got, clusters) {
		problem = fmt.Sprintf("status.clusters = %+v, want %+v", s.Clusters, clusters)
	}
	return all(cond(s.Conditions, v1.ConditionProgrammed, status, reason, gen), problem)
}

// TestPolicyProgrammed: the hub turns the connected clusters' programmed reports into
// a policy's status.clusters and Programmed condition, with Events and gauges,
// against a real kube-apiserver and etcd.
func TestPolicyProgrammed(t *testing.T) {
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
	for _, c := range []string{"alpha", "beta", "gamma"} {
		e.create(t, meshCluster(c, "us-east", "us-east-1a"))
	}
	e.create(t, globalSvc("cart"))
	e.startManager()
	tp := canary("cart")
	e.create(t, tp)
	report := func(cluster, name string, gen int64, state, msg string) {
		e.put(t, keyspace.ClusterProgrammed(cluster), &model.Programmed{Cluster: cluster, Policies: []model.PolicyProgrammed{
			{Ref: model.PolicyRef{Kind: model.PolicyKindTraffic, Namespace: ns, Name: name, Generation: gen}, State: state, Message: msg, Node: "proxy-1 (us-east/us-east-1a)"},
		}})
	}
	gauge := func(state string) float64 {
		return promtest.ToFloat64(policyProgrammedClusters.WithLabelValues("TrafficPolicy", ns, "cart", state))
	}

	step("no report", func(t *testing.T) {
		waitObject(t, e, tp, "Programmed NotReported", func(o *v1.TrafficPolicy) (bool, string) {
			return programmed(o.Status, o.Generation, metav1.ConditionUnknown, v1.ReasonNotReported, "no connected cluster")
		})
	})
	gen := tp.Generation
	step("one cluster programmed, one pending, one not connected", func(t *testing.T) {
		for _, c := range []string{"alpha", "beta"} {
			e.put(t, keyspace.ClusterHeartbeat(c), &model.Heartbeat{Time: time.Now(), TTL: 60, Agent: c})
		}
		report("alpha", "cart", gen, model.StateProgrammed, "")
		report("beta", "cart", gen, model.StatePending, "")
		report("gamma", "cart", gen, model.StateRefused, "not connected: not heard")
		waitObject(t, e, tp, "Programmed Pending on beta", func(o *v1.TrafficPolicy) (bool, string) {
			return programmed(o.Status, gen, metav1.ConditionUnknown, v1.ReasonPending, "waiting for the proxies of beta",
				v1.ClusterProgrammed{Cluster: "alpha", Generation: gen, Programmed: true}, v1.ClusterProgrammed{Cluster: "beta", Generation: gen})
		})
	})
	step("every reporting cluster programmed", func(t *testing.T) {
		report("beta", "cart", gen, model.StateProgrammed, "")
		waitObject(t, e, tp, "Programmed True", func(o *v1.TrafficPolicy) (bool, string) {
			return programmed(o.Status, gen, metav1.ConditionTrue, v1.ReasonProgrammed, "alpha, beta",
				v1.ClusterProgrammed{Cluster: "alpha", Generation: gen, Programmed: true}, v1.ClusterProgrammed{Cluster: "beta", Generation: gen, Programmed: true})
		})
		e.waitEvent(t, tp, corev1.EventTypeNormal, v1.ReasonProgrammed)
		if got := gauge(model.StateProgrammed); got != 2 {
			t.Errorf("programmed clusters gauge = %v, want 2", got)
		}
	})
	const nack = `error parsing "ClusterResource" response: resource "outbound|8080||cart.shop.svc.clusterset.local": outlier_detection.max_ejection_percent = 101; must be <= 100`
	step("a cluster's proxy refuses", func(t *testing.T) {
		report("beta", "cart", gen, model.StateRefused, nack)
		waitObject(t, e, tp, "Programmed False naming beta and the NACK", func(o *v1.TrafficPolicy) (bool, string) {
			if ok, why := programmed(o.Status, gen, metav1.ConditionFalse, v1.ReasonRefused, "refused in beta",
				v1.ClusterProgrammed{Cluster: "alpha", Generation: gen, Programmed: true}, v1.ClusterProgrammed{Cluster: "beta", Generation: gen}); !ok {
				return ok, why
			}
			c := meta.FindStatusCondition(o.Status.Conditions, v1.ConditionProgrammed)
			if !strings.Contains(c.Message, "max_ejection_percent = 101") || !strings.Contains(o.Status.Clusters[1].Message, "proxy-1") {
				return false, fmt.Sprintf("the refusal is not shown: %q, %q", c.Message, o.Status.Clusters[1].Message)
			}
			return true, ""
		})
		e.waitEvent(t, tp, corev1.EventTypeWarning, v1.ReasonRefused)
		if got := gauge(model.StateRefused); got != 1 {
			t.Errorf("refused clusters gauge = %v, want 1", got)
		}
	})
	step("a new generation waits for the clusters to report it", func(t *testing.T) {
		update(t, e, tp, func(o *v1.TrafficPolicy) { o.Spec.Routes[0].Retries.Attempts = 2 })
		next := tp.Generation
		waitObject(t, e, tp, "Programmed Pending on the new generation", func(o *v1.TrafficPolicy) (bool, string) {
			return programmed(o.Status, next, metav1.ConditionUnknown, v1.ReasonPending, "alpha, beta",
				v1.ClusterProgrammed{Cluster: "alpha", Generation: gen}, v1.ClusterProgrammed{Cluster: "beta", Generation: gen})
		})
		report("alpha", "cart", next, model.StateProgrammed, "")
		report("beta", "cart", next, model.StateProgrammed, "")
		waitObject(t, e, tp, "Programmed True at the new generation", func(o *v1.TrafficPolicy) (bool, string) {
			return programmed(o.Status, next, metav1.ConditionTrue, v1.ReasonProgrammed, "",
				v1.ClusterProgrammed{Cluster: "alpha", Generation: next, Programmed: true}, v1.ClusterProgrammed{Cluster: "beta", Generation: next, Programmed: true})
		})
	})
	step("a cluster that stops reporting the policy is dropped", func(t *testing.T) {
		e.put(t, keyspace.ClusterProgrammed("beta"), &model.Programmed{Cluster: "beta"})
		waitObject(t, e, tp, "beta dropped", func(o *v1.TrafficPolicy) (bool, string) {
			return programmed(o.Status, tp.Generation, metav1.ConditionTrue, v1.ReasonProgrammed, "alpha",
				v1.ClusterProgrammed{Cluster: "alpha", Generation: tp.Generation, Programmed: true})
		})
	})
}
