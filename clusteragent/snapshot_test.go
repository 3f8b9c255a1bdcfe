package clusteragent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

// fleetRecords is a federation of clusters × services × endpoints with random
// addresses, which compress poorly: enough for several chunks.
func fleetRecords(clusters, services, endpoints int) map[string]model.Record {
	r := rand.New(rand.NewPCG(1, 2))
	out := map[string]model.Record{keyspace.TrustBundle(): &model.TrustBundle{TrustDomain: "meshfed.local",
		Roots: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}
	for c := range clusters {
		name := fmt.Sprintf("c%03d", c)
		out[keyspace.ClusterInfo(name)] = &model.ClusterInfo{Name: name, Region: "r", Zones: []string{"r-a"}, Network: "default"}
		out[keyspace.ClusterHeartbeat(name)] = &model.Heartbeat{Time: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), TTL: 15, Agent: name}
		for s := range services {
			rec := &model.ServiceEndpoints{Namespace: "shop", Name: fmt.Sprintf("svc%03d", s),
				Ports: []model.ServicePort{{Name: "grpc", Port: 8080}}}
			for range endpoints {
				rec.Endpoints = append(rec.Endpoints, model.Endpoint{
					Address: fmt.Sprintf("10.%d.%d.%d", r.IntN(256), r.IntN(256), r.IntN(256)), Zone: "r-a", Ready: true,
					Ports: []model.EndpointPort{{Name: "grpc", Port: 8080}}})
			}
			out[keyspace.ServiceEndpoints(name, rec.Namespace, rec.Name)] = rec
		}
	}
	return out
}

func TestSnapshotRoundTrip(t *testing.T) {
	records := fleetRecords(3, 4, 5)
	data, err := encodeSnapshot(records)
	if err != nil {
		t.Fatal(err)
	}
	again, err := encodeSnapshot(records)
	if err != nil || string(again) != string(data) {
		t.Fatal("encodeSnapshot is not deterministic: every save would rewrite the snapshot")
	}
	got, bad, err := decodeSnapshot(data)
	if err != nil || bad != 0 || len(got) != len(records) {
		t.Fatalf("decodeSnapshot: %d records, %d bad, %v; want %d", len(got), bad, err, len(records))
	}
}

// A record that no longer decodes is dropped, the rest restored.
func TestSnapshotDropsBadRecords(t *testing.T) {
	records := fleetRecords(1, 1, 1)
	records[keyspace.ServiceEndpoints("c000", "shop", "bad")] = &model.ServiceEndpoints{Namespace: "shop", Name: "other"}
	data, err := encodeSnapshot(records)
	if err != nil {
		t.Fatal(err)
	}
	got, bad, err := decodeSnapshot(data)
	if err != nil || bad != 1 || len(got) != len(records)-1 {
		t.Fatalf("decodeSnapshot: %d records, %d bad, %v", len(got), bad, err)
	}
}

// TestSnapshotInMemberCluster saves a snapshot large enough for several chunks in a
// real API server, loads it back, replaces it by a smaller one (its stale chunks go),
// and refuses a torn one.
func TestSnapshotInMemberCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	cp := localkube.ForTest(t, "member")[0]
	kube := kubernetes.NewForConfigOrDie(cp.Config)
	ctx := context.Background()
	const ns = "meshfed-system"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	big := fleetRecords(20, 20, 25) // 10,000 endpoints
	data, err := encodeSnapshot(big)
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 16 << 10 // production's 900 KiB holds ~100,000 endpoints
	if len(data) <= 2*chunk {
		t.Fatalf("test snapshot is %d bytes: too small for several chunks", len(data))
	}
	savedAt := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	if err := saveSnapshot(ctx, kube, ns, data, chunk, len(big), savedAt); err != nil {
		t.Fatal(err)
	}
	info, got, bad, err := loadSnapshot(ctx, kube, ns)
	if err != nil || bad != 0 || len(got) != len(big) || !info.SavedAt.Equal(savedAt) {
		t.Fatalf("loadSnapshot: %d records (want %d), %d bad, savedAt %v, %v", len(got), len(big), bad, info.SavedAt, err)
	}
	t.Logf("%d records, %d bytes compressed, %d chunks", len(big), len(data), (len(data)+chunk-1)/chunk)

	small := fleetRecords(2, 1, 1)
	sdata, _ := encodeSnapshot(small)
	for range 2 { // both sets end up small: no chunk of the big one is left
		if err := saveSnapshot(ctx, kube, ns, sdata, chunk, len(small), savedAt); err != nil {
			t.Fatal(err)
		}
	}
	if _, got, _, err := loadSnapshot(ctx, kube, ns); err != nil || len(got) != len(small) {
		t.Fatalf("after the smaller save: %d records, %v", len(got), err)
	}
	cms, err := kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=view-snapshot"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cms.Items) != 3 { // the header and one chunk per set
		names := []string{}
		for _, cm := range cms.Items {
			names = append(names, cm.Name)
		}
		t.Fatalf("snapshot ConfigMaps %v: stale chunks left", names)
	}

	// A torn snapshot (a chunk from another save) is refused, never half-restored.
	header, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, SnapshotConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	torn, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, chunkName(header.Data[snapKeySet], 0), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	torn.BinaryData[snapChunkData] = data[:100]
	if _, err := kube.CoreV1().ConfigMaps(ns).Update(ctx, torn, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := loadSnapshot(ctx, kube, ns); err == nil {
		t.Fatal("a torn snapshot loaded")
	}
	v := view.New(view.Options{Self: "c000"})
	restoreSnapshot(ctx, kube, ns, v, testr.New(t))
	if v.HasSynced() {
		t.Fatal("a torn snapshot was restored")
	}
}

func TestHeartbeatInterval(t *testing.T) {
	p := func(demote time.Duration) *model.Policy {
		return &model.Policy{DemoteAfter: metav1.Duration{Duration: demote}}
	}
	for _, tc := range []struct {
		ttl      time.Duration
		policies []*model.Policy
		want     time.Duration
	}{
		{15 * time.Second, nil, 5 * time.Second},
		{15 * time.Second, []*model.Policy{p(30 * time.Second)}, 5 * time.Second},
		{15 * time.Second, []*model.Policy{p(30 * time.Second), p(6 * time.Second)}, 2 * time.Second},
		{15 * time.Second, []*model.Policy{p(time.Second)}, 333333333 * time.Nanosecond},
		{15 * time.Second, []*model.Policy{p(100 * time.Millisecond)}, minHeartbeatInterval},
		{3 * time.Second, []*model.Policy{p(0)}, time.Second},
	} {
		if got := heartbeatInterval(tc.ttl, tc.policies); got != tc.want {
			t.Errorf("heartbeatInterval(%v, %d policies) = %v, want %v", tc.ttl, len(tc.policies), got, tc.want)
		}
	}
}

// A snapshot leaves heartbeats out: they change every few seconds, and a restored one
// counts as never seen anyway.
func TestSnapshotRecordsLeaveHeartbeatsOut(t *testing.T) {
	v := view.New(view.Options{})
	for key, rec := range fleetRecords(2, 1, 1) {
		v.OnUpsert(key, rec)
	}
	got := snapshotRecords(v)
	for key := range got {
		if k, _ := keyspace.Parse(key); k.Kind == keyspace.KindClusterHeartbeat {
			t.Fatalf("snapshot holds heartbeat %s", key)
		}
	}
	if _, ok := got[keyspace.ClusterInfo("c000")]; !ok || len(got) != len(v.Records())-2 {
		t.Fatalf("snapshot holds %d of %d records, want all but the 2 heartbeats", len(got), len(v.Records()))
	}
}
