package view

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

func newAgentView() (*View, *clocktesting.FakePassiveClock) {
	clk := clocktesting.NewFakePassiveClock(t0)
	return New(Options{Clock: clk, Self: "a"}), clk
}

// A restored view serves (HasSynced) before the store answers, but is not live; the
// first complete list replaces it: keys the store confirmed stay, others go.
func TestRestoreThenLive(t *testing.T) {
	v, _ := newAgentView()
	kept, gone := keyspace.ServiceEndpoints("b", "shop", "cart"), keyspace.ServiceEndpoints("b", "shop", "old")
	records := map[string]model.Record{
		keyspace.ClusterInfo("b"):              info("b", "us"),
		keyspace.ClusterHeartbeat("b"):         heartbeat("b"),
		kept:                                   endpoints("shop", "cart", true),
		gone:                                   endpoints("shop", "old", true),
		keyspace.GlobalService("shop", "cart"): global("shop", "cart"),
	}
	if !v.Restore(Restored{SavedAt: t0.Add(-time.Minute)}, records) {
		t.Fatal("Restore refused on a fresh view")
	}
	if !v.HasSynced() || v.HasLive() {
		t.Fatalf("after Restore: HasSynced %v HasLive %v, want true false", v.HasSynced(), v.HasLive())
	}
	if got, serving := v.RestoredFrom(); !serving || got.Keys != len(records) {
		t.Fatalf("RestoredFrom = %+v, %v", got, serving)
	}
	b, _ := v.Cluster("b")
	if len(b.Services) != 2 || b.Heartbeat == nil || !b.LastHeartbeat.IsZero() {
		t.Fatalf("restored cluster b = %+v: want 2 services, a heartbeat never seen written", b)
	}
	// The store's list: b's info, heartbeat and one service; the other is gone.
	v.OnUpsert(keyspace.ClusterInfo("b"), info("b", "us"))
	v.OnUpsert(keyspace.ClusterHeartbeat("b"), heartbeat("b"))
	v.OnUpsert(kept, endpoints("shop", "cart", false))
	v.OnUpsert(keyspace.GlobalService("shop", "cart"), global("shop", "cart"))
	v.OnSynced()
	if !v.HasLive() {
		t.Fatal("not live after the store's list")
	}
	b, _ = v.Cluster("b")
	if _, ok := b.Services[NamespacedName{"shop", "old"}]; ok || len(b.Services) != 1 {
		t.Fatalf("after the list, b's services = %v: want only shop/cart", b.Services)
	}
	if _, serving := v.RestoredFrom(); serving {
		t.Fatal("RestoredFrom still serving after the list")
	}
	if v.Restore(Restored{}, records) {
		t.Fatal("Restore accepted on a live view")
	}
}

// Self's services come from its informers once they synced, whatever the store says;
// PublishedServices still tells what the store holds.
func TestLocalServices(t *testing.T) {
	v, _ := newAgentView()
	key := keyspace.ServiceEndpoints("a", "shop", "cart")
	v.OnUpsert(key, endpoints("shop", "cart", true))
	v.OnSynced()
	var notified []keyspace.Key
	defer v.Subscribe(func(k keyspace.Key) { notified = append(notified, k) })()

	v.LocalUpsert(key, endpoints("shop", "cart", false, false))
	if a, _ := v.Cluster("a"); len(a.Services[NamespacedName{"shop", "cart"}].Endpoints) != 1 {
		t.Fatal("informers' record served before LocalSynced: a partial set could drop services")
	}
	v.LocalSynced()
	a, _ := v.Cluster("a")
	if got := len(a.Services[NamespacedName{"shop", "cart"}].Endpoints); got != 2 {
		t.Fatalf("after LocalSynced, a's shop/cart has %d endpoints, want the informers' 2", got)
	}
	v.LocalDelete(key)
	if a, _ := v.Cluster("a"); len(a.Services) != 0 {
		t.Fatalf("LocalDelete left %v", a.Services)
	}
	if diff := cmp.Diff([]string{key}, v.PublishedServices("a")); diff != "" {
		t.Fatalf("PublishedServices must be the store's (-want +got):\n%s", diff)
	}
	if len(notified) != 2 {
		t.Fatalf("subscribers heard %d changes, want 2 (LocalSynced, LocalDelete)", len(notified))
	}
	if _, ok := v.Records()[key]; !ok {
		t.Fatal("Records lacks the store's record of a's service")
	}
}

// Self exists even when the store knows nothing of it yet.
func TestLocalServicesWithoutStore(t *testing.T) {
	v, _ := newAgentView()
	v.LocalUpsert(keyspace.ServiceEndpoints("a", "shop", "cart"), endpoints("shop", "cart", true))
	v.LocalSynced()
	if _, ok := v.Cluster("a"); !ok {
		t.Fatal("Cluster(self) missing")
	}
	if cs := v.Clusters(); len(cs) != 1 || len(cs[0].Services) != 1 {
		t.Fatalf("Clusters = %+v", cs)
	}
}

// An agent's view counts the hub as unreachable until told otherwise, and Offline
// adds up the outages within a window.
func TestOffline(t *testing.T) {
	v, clk := newAgentView()
	if v.HubReachable() {
		t.Fatal("an agent's view starts with the hub unreachable")
	}
	clk.SetTime(t0.Add(2 * time.Second))
	v.SetHubReachable(true) // outage [t0, t0+2s]
	clk.SetTime(t0.Add(12 * time.Second))
	v.SetHubReachable(true)
	clk.SetTime(t0.Add(14 * time.Second))
	v.SetHubReachable(false) // a probe gives up at 14s: the outage counts from the last read, 12s
	v.SetHubReachable(false)
	clk.SetTime(t0.Add(17 * time.Second))
	for _, tc := range []struct {
		from, to time.Duration
		want     time.Duration
	}{
		{0, 17 * time.Second, 7 * time.Second},
		{time.Second, 3 * time.Second, time.Second},
		{3 * time.Second, 12 * time.Second, 0},
		{13 * time.Second, 20 * time.Second, 7 * time.Second}, // ongoing: counts up to "to"
	} {
		if got := v.Offline(t0.Add(tc.from), t0.Add(tc.to)); got != tc.want {
			t.Errorf("Offline(%v, %v) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
	hub, _ := newView()
	if !hub.HubReachable() || hub.Offline(t0, t0.Add(time.Hour)) != 0 {
		t.Fatal("the hub's own view keeps no outages")
	}
}

func TestWaitLive(t *testing.T) {
	v, _ := newAgentView()
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := v.WaitLive(ctx); err == nil {
		t.Fatal("WaitLive returned before any list")
	}
	v.OnSynced()
	if err := v.WaitLive(context.Background()); err != nil {
		t.Fatal(err)
	}
}
