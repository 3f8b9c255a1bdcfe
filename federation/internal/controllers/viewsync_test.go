package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

func TestViewInSyncCondition(t *testing.T) {
	d := kvstore.Digest{Keys: 3, Sum: 42}
	if c := viewInSyncCondition(7, d, d); c.Status != metav1.ConditionTrue || c.Reason != v1.ReasonViewInSync {
		t.Errorf("equal digests: %+v", c)
	}
	c := viewInSyncCondition(7, kvstore.Digest{Keys: 2, Sum: 40}, d)
	if c.Status != metav1.ConditionFalse || c.Reason != v1.ReasonViewDigestMismatch {
		t.Errorf("different digests: %+v", c)
	}
	want := "at revision 7 the agent serves 2 keys (digest 0000000000000028) where the hub's store holds 3 (digest 000000000000002a); the agent resyncs its view"
	if c.Message != want {
		t.Errorf("message %q, want %q", c.Message, want)
	}
}

// The hub judges an agent's view report against its own store at the reported
// revision: True for the store's digest, False (with an Event and a count) for any
// other, True again for the next good report; Unknown without a report.
func TestViewInSync(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	checkLeaks(t)
	e := newHubEnv(t)
	e.startManager()
	const name = "viewsync-1"
	mc := meshCluster(name, "eu-west", "eu-west-1a")
	e.create(t, mc)
	e.put(t, keyspace.ServiceEndpoints(name, ns, "cart"), serviceEndpoints(ns, "cart", nil, endpoint("10.1.0.1", "eu-west-1a", true)))

	hb := func(report *model.ViewDigest) {
		e.put(t, keyspace.ClusterHeartbeat(name), &model.Heartbeat{Time: time.Now(), TTL: 30, Agent: "a", View: report})
	}
	waitView := func(status metav1.ConditionStatus, reason, inMessage string) {
		t.Helper()
		waitObject(t, e, mc, fmt.Sprintf("ViewInSync %s/%s", status, reason), func(mc *v1.MeshCluster) (bool, string) {
			if p := cond(mc.Status.Conditions, v1.ConditionViewInSync, status, reason, mc.Generation); p != "" {
				return false, p
			}
			for _, c := range mc.Status.Conditions {
				if c.Type == v1.ConditionViewInSync && !contains(c.Message, inMessage) {
					return false, fmt.Sprintf("message %q does not say %q", c.Message, inMessage)
				}
			}
			return true, ""
		})
	}
	// storeNow is the revision the store is at and its digest there.
	storeNow := func() (int64, kvstore.Digest) {
		resp, err := e.etcd.Get(e.ctx, keyspace.Root, clientv3KeysOnly()...)
		if err != nil {
			t.Fatal(err)
		}
		rev := resp.Header.Revision
		d, err := kvstore.DigestAt(e.ctx, e.etcd, keyspace.Root, rev, 2)
		if err != nil {
			t.Fatal(err)
		}
		return rev, d
	}

	hb(nil)
	waitView(metav1.ConditionUnknown, v1.ReasonViewNoReport, "not reported")

	rev, d := storeNow()
	hb(&model.ViewDigest{Revision: rev, Digest: d.String()})
	waitView(metav1.ConditionTrue, v1.ReasonViewInSync, fmt.Sprintf("at revision %d", rev))
	if got := promtest.ToFloat64(hubViewInSync.WithLabelValues(name)); got != 1 {
		t.Errorf("meshfed_hub_cluster_view_in_sync = %v, want 1", got)
	}

	// A view one key short, at the same revision.
	short := d
	short.Remove(keyspace.ServiceEndpoints(name, ns, "cart"), mustModRev(t, e, keyspace.ServiceEndpoints(name, ns, "cart")))
	desyncs := promtest.ToFloat64(hubViewDesyncs.WithLabelValues(name))
	hb(&model.ViewDigest{Revision: rev, Digest: short.String(), Resyncs: 0})
	waitView(metav1.ConditionFalse, v1.ReasonViewDigestMismatch, fmt.Sprintf("at revision %d the agent serves %d keys", rev, d.Keys-1))
	e.waitEvent(t, mc, corev1.EventTypeWarning, v1.ReasonViewDigestMismatch)
	if got := promtest.ToFloat64(hubViewDesyncs.WithLabelValues(name)); got != desyncs+1 {
		t.Errorf("meshfed_hub_cluster_view_desyncs_total = %v, want %v", got, desyncs+1)
	}
	if got := promtest.ToFloat64(hubViewInSync.WithLabelValues(name)); got != 0 {
		t.Errorf("meshfed_hub_cluster_view_in_sync = %v, want 0", got)
	}

	// Healed: a good report at a later revision.
	rev, d = storeNow()
	hb(&model.ViewDigest{Revision: rev, Digest: d.String(), Resyncs: 1})
	waitView(metav1.ConditionTrue, v1.ReasonViewInSync, fmt.Sprintf("at revision %d", rev))
	e.waitEvent(t, mc, corev1.EventTypeNormal, v1.ReasonViewInSync)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func clientv3KeysOnly() []clientv3.OpOption {
	return []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(1)}
}

func mustModRev(t *testing.T, e *hubEnv, key string) int64 {
	t.Helper()
	resp, err := e.etcd.Get(e.ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v (%d keys)", key, err, len(resp.Kvs))
	}
	return resp.Kvs[0].ModRevision
}
