package view

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newView() (*View, *clocktesting.FakePassiveClock) {
	clk := clocktesting.NewFakePassiveClock(t0)
	return New(Options{Clock: clk}), clk
}

func info(cluster, region string) *model.ClusterInfo {
	return &model.ClusterInfo{Name: cluster, Region: region, Zones: []string{region + "-a"}, Network: "default"}
}

func heartbeat(agent string) *model.Heartbeat {
	return &model.Heartbeat{Time: t0.Add(-time.Hour), TTL: 10, Agent: agent}
}

func endpoints(ns, name string, ready ...bool) *model.ServiceEndpoints {
	s := &model.ServiceEndpoints{Namespace: ns, Name: name, Ports: []model.ServicePort{{Name: "http", Port: 80}}}
	for i, r := range ready {
		s.Endpoints = append(s.Endpoints, model.Endpoint{Address: fmt.Sprintf("10.0.0.%d", i+1), Ready: r, Serving: r})
	}
	return s
}

func global(ns, name string) *model.GlobalService {
	return &model.GlobalService{Namespace: ns, Name: name, Hostname: name + "." + ns + ".global",
		Service: &model.ServiceRef{Namespace: ns, Name: name}, Ports: []model.GlobalPort{{Port: 80, Protocol: "TCP"}}}
}

func policy(ns, name string) *model.Policy {
	return &model.Policy{Namespace: ns, Name: name, LocalityPreference: "Zone", MinHealthyPercent: 70,
		DemoteAfter: metav1.Duration{Duration: 30 * time.Second}, DropAfter: metav1.Duration{Duration: 10 * time.Minute}}
}

// Every kind of record lands where it belongs, replaces the previous value of its key,
// and goes again when its key is deleted.
func TestUpsertAndDeleteEveryKind(t *testing.T) {
	tests := map[string]struct {
		key    string
		first  model.Record
		second model.Record
		// get returns what the View holds for key, nil if nothing.
		get func(v *View) model.Record
	}{
		"cluster info": {
			key: keyspace.ClusterInfo("east-1"), first: info("east-1", "us-east"), second: info("east-1", "us-east-2"),
			get: func(v *View) model.Record {
				if c, ok := v.Cluster("east-1"); ok && c.Info != nil {
					return c.Info
				}
				return nil
			},
		},
		"heartbeat": {
			key: keyspace.ClusterHeartbeat("east-1"), first: heartbeat("agent-1"), second: heartbeat("agent-2"),
			get: func(v *View) model.Record {
				if c, ok := v.Cluster("east-1"); ok && c.Heartbeat != nil {
					return c.Heartbeat
				}
				return nil
			},
		},
		"synced": {
			key: keyspace.ClusterSynced("east-1"), first: &model.Synced{SyncedAt: t0}, second: &model.Synced{SyncedAt: t0.Add(time.Minute)},
			get: func(v *View) model.Record {
				if c, ok := v.Cluster("east-1"); ok && c.Synced != nil {
					return c.Synced
				}
				return nil
			},
		},
		"service endpoints": {
			key: keyspace.ServiceEndpoints("east-1", "shop", "cart"), first: endpoints("shop", "cart", true), second: endpoints("shop", "cart", true, false),
			get: func(v *View) model.Record {
				if c, ok := v.Cluster("east-1"); ok && c.Services[NamespacedName{"shop", "cart"}] != nil {
					return c.Services[NamespacedName{"shop", "cart"}]
				}
				return nil
			},
		},
		"global service": {
			key: keyspace.GlobalService("shop", "cart"), first: global("shop", "cart"),
			second: func() *model.GlobalService { g := global("shop", "cart"); g.Policy = "p"; return g }(),
			get: func(v *View) model.Record {
				for _, g := range v.GlobalServices() {
					if g.Namespace == "shop" && g.Name == "cart" {
						return &g
					}
				}
				return nil
			},
		},
		"policy": {
			key: keyspace.Policy("shop", "p"), first: policy("shop", "p"),
			second: func() *model.Policy { p := policy("shop", "p"); p.LocalityPreference = "Region"; return p }(),
			get: func(v *View) model.Record {
				if p, ok := v.Policy("shop", "p"); ok {
					return p
				}
				return nil
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			v, _ := newView()
			if got := tc.get(v); got != nil {
				t.Fatalf("empty View holds %#v", got)
			}
			v.OnUpsert(tc.key, tc.first)
			if diff := cmp.Diff(tc.first, tc.get(v)); diff != "" {
				t.Fatalf("after the first upsert (-want +got):\n%s", diff)
			}
			v.OnUpsert(tc.key, tc.second)
			if diff := cmp.Diff(tc.second, tc.get(v)); diff != "" {
				t.Fatalf("after the second upsert (-want +got):\n%s", diff)
			}
			v.OnDelete(tc.key)
			if got := tc.get(v); got != nil {
				t.Fatalf("after delete the View still holds %#v", got)
			}
			// Deleting what is gone is harmless.
			v.OnDelete(tc.key)
			if got := tc.get(v); got != nil {
				t.Fatalf("after a second delete the View holds %#v", got)
			}
			if cs := v.Clusters(); len(cs) != 0 {
				t.Fatalf("View holds clusters %v after every record was deleted", cs)
			}
		})
	}
}

// A cluster's entry appears with its first record, whichever kind, stays while any
// record remains, and goes with the last one.
func TestClusterLifecycle(t *testing.T) {
	records := map[string]struct {
		key string
		rec model.Record
	}{
		"info":      {keyspace.ClusterInfo("east-1"), info("east-1", "us-east")},
		"heartbeat": {keyspace.ClusterHeartbeat("east-1"), heartbeat("agent-1")},
		"synced":    {keyspace.ClusterSynced("east-1"), &model.Synced{SyncedAt: t0}},
		"service":   {keyspace.ServiceEndpoints("east-1", "shop", "cart"), endpoints("shop", "cart", true)},
		"service 2": {keyspace.ServiceEndpoints("east-1", "shop", "web"), endpoints("shop", "web", false)},
	}
	for first, r := range records {
		t.Run("created by "+first, func(t *testing.T) {
			v, _ := newView()
			v.OnUpsert(r.key, r.rec)
			c, ok := v.Cluster("east-1")
			if !ok {
				t.Fatalf("no cluster entry after upserting its %s", first)
			}
			if c.Name != "east-1" {
				t.Fatalf("cluster entry named %q", c.Name)
			}
			if c.Services == nil {
				t.Fatal("cluster entry has a nil Services map")
			}
			v.OnDelete(r.key)
			if c, ok := v.Cluster("east-1"); ok {
				t.Fatalf("cluster entry %+v remains after its only record was deleted", c)
			}
		})
	}

	t.Run("removed with the last record", func(t *testing.T) {
		v, _ := newView()
		for _, r := range records {
			v.OnUpsert(r.key, r.rec)
		}
		for name, r := range records {
			if _, ok := v.Cluster("east-1"); !ok {
				t.Fatalf("cluster entry gone before %s was deleted", name)
			}
			v.OnDelete(r.key)
		}
		if _, ok := v.Cluster("east-1"); ok {
			t.Fatal("cluster entry remains after every record was deleted")
		}
	})

	t.Run("delete of an unknown cluster creates nothing", func(t *testing.T) {
		v, _ := newView()
		for _, r := range records {
			v.OnDelete(r.key)
		}
		if cs := v.Clusters(); len(cs) != 0 {
			t.Fatalf("deletes created clusters %+v", cs)
		}
	})

	t.Run("clusters are independent", func(t *testing.T) {
		v, _ := newView()
		v.OnUpsert(keyspace.ClusterInfo("east-1"), info("east-1", "us-east"))
		v.OnUpsert(keyspace.ClusterInfo("east-10"), info("east-10", "us-east"))
		v.OnDelete(keyspace.ClusterInfo("east-1"))
		if _, ok := v.Cluster("east-1"); ok {
			t.Fatal("east-1 remains")
		}
		if c, ok := v.Cluster("east-10"); !ok || c.Info == nil {
			t.Fatalf("east-10 lost with east-1: %+v, %v", c, ok)
		}
	})

	t.Run("global records make no cluster", func(t *testing.T) {
		v, _ := newView()
		v.OnUpsert(keyspace.GlobalService("shop", "cart"), global("shop", "cart"))
		v.OnUpsert(keyspace.Policy("shop", "p"), policy("shop", "p"))
		if cs := v.Clusters(); len(cs) != 0 {
			t.Fatalf("global records created clusters %+v", cs)
		}
	})
}

// LastHeartbeat is when this process saw the heartbeat, by its own clock, never the
// time the agent wrote into it; it outlives the heartbeat so that a lapse can be told
// from "never connected".
func TestLastHeartbeat(t *testing.T) {
	v, clk := newView()
	key := keyspace.ClusterHeartbeat("east-1")

	v.OnUpsert(keyspace.ClusterInfo("east-1"), info("east-1", "us-east"))
	c, _ := v.Cluster("east-1")
	if !c.LastHeartbeat.IsZero() || c.Connected() {
		t.Fatalf("before any heartbeat: LastHeartbeat %v, Connected %v", c.LastHeartbeat, c.Connected())
	}

	clk.SetTime(t0.Add(time.Minute))
	v.OnUpsert(key, heartbeat("agent-1")) // the record says t0-1h; the View must not care
	c, _ = v.Cluster("east-1")
	if !c.LastHeartbeat.Equal(t0.Add(time.Minute)) || !c.Connected() {
		t.Fatalf("after a heartbeat: LastHeartbeat %v, Connected %v; want %v, true", c.LastHeartbeat, c.Connected(), t0.Add(time.Minute))
	}

	clk.SetTime(t0.Add(2 * time.Minute))
	v.OnUpsert(keyspace.ClusterSynced("east-1"), &model.Synced{SyncedAt: t0})
	v.OnUpsert(keyspace.ServiceEndpoints("east-1", "shop", "cart"), endpoints("shop", "cart", true))
	v.OnUpsert(keyspace.ClusterInfo("east-1"), info("east-1", "us-east"))
	c, _ = v.Cluster("east-1")
	if !c.LastHeartbeat.Equal(t0.Add(time.Minute)) {
		t.Fatalf("other records moved LastHeartbeat to %v", c.LastHeartbeat)
	}

	clk.SetTime(t0.Add(3 * time.Minute))
	v.OnUpsert(key, heartbeat("agent-2"))
	c, _ = v.Cluster("east-1")
	if !c.LastHeartbeat.Equal(t0.Add(3*time.Minute)) || c.Heartbeat.Agent != "agent-2" {
		t.Fatalf("after a renewed heartbeat: LastHeartbeat %v, agent %q", c.LastHeartbeat, c.Heartbeat.Agent)
	}

	clk.SetTime(t0.Add(4 * time.Minute))
	v.OnDelete(key)
	c, _ = v.Cluster("east-1")
	if c.Connected() || c.Heartbeat != nil {
		t.Fatalf("after the heartbeat was deleted: Connected %v, Heartbeat %+v", c.Connected(), c.Heartbeat)
	}
	if !c.LastHeartbeat.Equal(t0.Add(3 * time.Minute)) {
		t.Fatalf("deleting the heartbeat changed LastHeartbeat to %v, want %v", c.LastHeartbeat, t0.Add(3*time.Minute))
	}
}

func TestEndpointsCount(t *testing.T) {
	tests := map[string]struct {
		services           []*model.ServiceEndpoints
		wantTotal, wantRdy int
	}{
		"none":             {nil, 0, 0},
		"service, no ends": {[]*model.ServiceEndpoints{endpoints("shop", "cart")}, 0, 0},
		"one service":      {[]*model.ServiceEndpoints{endpoints("shop", "cart", true, false, true)}, 3, 2},
		"several services": {[]*model.ServiceEndpoints{endpoints("shop", "cart", true, false), endpoints("shop", "web", false), endpoints("db", "pg", true)}, 4, 2},
		"nothing ready":    {[]*model.ServiceEndpoints{endpoints("shop", "cart", false, false)}, 2, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			v, _ := newView()
			v.OnUpsert(keyspace.ClusterInfo("east-1"), info("east-1", "us-east"))
			for _, s := range tc.services {
				v.OnUpsert(keyspace.ServiceEndpoints("east-1", s.Namespace, s.Name), s)
			}
			c, _ := v.Cluster("east-1")
			total, ready := c.Endpoints()
			if total != tc.wantTotal || ready != tc.wantRdy {
				t.Fatalf("Endpoints() = %d, %d; want %d, %d", total, ready, tc.wantTotal, tc.wantRdy)
			}
		})
	}
}

func TestSynced(t *testing.T) {
	v, _ := newView()
	if v.HasSynced() {
		t.Fatal("a new View says it has synced")
	}

	// WaitSynced gives up with the context's cause.
	cause := errors.New("test gave up")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	if err := v.WaitSynced(ctx); !errors.Is(err, cause) {
		t.Fatalf("WaitSynced on a cancelled context = %v, want %v", err, cause)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelShort()
	if err := v.WaitSynced(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitSynced past its deadline = %v, want DeadlineExceeded", err)
	}

	// Records alone do not make a View synced: only a completed list does.
	v.OnUpsert(keyspace.ClusterInfo("east-1"), info("east-1", "us-east"))
	if v.HasSynced() {
		t.Fatal("an upsert made the View synced")
	}

	// A waiter blocked before the list completes is released by it.
	waited := make(chan error, 1)
	go func() { waited <- v.WaitSynced(context.Background()) }()
	select {
	case err := <-waited:
		t.Fatalf("WaitSynced returned %v before OnSynced", err)
	case <-time.After(20 * time.Millisecond):
	}
	v.OnSynced()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("WaitSynced = %v after OnSynced", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitSynced still blocked after OnSynced")
	}
	if !v.HasSynced() {
		t.Fatal("HasSynced false after OnSynced")
	}

	// Every re-list calls OnSynced again; the View stays synced and does not panic.
	v.OnSynced()
	v.OnSynced()
	if err := v.WaitSynced(context.Background()); err != nil {
		t.Fatalf("WaitSynced on a synced View = %v, want nil", err)
	}
	// (With a context that is done as well, WaitSynced may return either: its select
	// has two ready cases. Every caller treats a done context as "stop" anyway.)
}

func TestSubscribe(t *testing.T) {
	v, _ := newView()
	var mu sync.Mutex
	var gotA, gotB []keyspace.Key
	unsubA := v.Subscribe(func(k keyspace.Key) { mu.Lock(); gotA = append(gotA, k); mu.Unlock() })
	unsubB := v.Subscribe(func(k keyspace.Key) { mu.Lock(); gotB = append(gotB, k); mu.Unlock() })
	defer unsubB()

	must := func(key string) keyspace.Key {
		k, err := keyspace.Parse(key)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	infoKey, svcKey := keyspace.ClusterInfo("east-1"), keyspace.ServiceEndpoints("east-1", "shop", "cart")
	gsKey, polKey := keyspace.GlobalService("shop", "cart"), keyspace.Policy("shop", "p")
	v.OnUpsert(infoKey, info("east-1", "us-east"))
	v.OnUpsert(svcKey, endpoints("shop", "cart", true))
	v.OnUpsert(gsKey, global("shop", "cart"))
	v.OnUpsert(polKey, policy("shop", "p"))
	v.OnDelete(svcKey)
	v.OnDelete(keyspace.ClusterHeartbeat("west-1")) // a delete of something unknown is still a change to report
	// Keys outside the layout are dropped without a notification.
	v.OnUpsert("/meshfed/v1/clusters/east-1/status", info("east-1", "x"))
	v.OnDelete("/elsewhere")
	v.OnSynced() // not a change of any key

	want := []keyspace.Key{must(infoKey), must(svcKey), must(gsKey), must(polKey), must(svcKey), must(keyspace.ClusterHeartbeat("west-1"))}
	mu.Lock()
	if diff := cmp.Diff(want, gotA); diff != "" {
		t.Errorf("subscriber A saw (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, gotB); diff != "" {
		t.Errorf("subscriber B saw (-want +got):\n%s", diff)
	}
	mu.Unlock()

	unsubA()
	unsubA() // idempotent
	v.OnUpsert(infoKey, info("east-1", "us-east-2"))
	mu.Lock()
	defer mu.Unlock()
	if len(gotA) != len(want) {
		t.Errorf("subscriber A was called after unsubscribing: %v", gotA[len(want):])
	}
	if len(gotB) != len(want)+1 {
		t.Errorf("subscriber B saw %d changes, want %d: unsubscribing A must not affect B", len(gotB), len(want)+1)
	}
}

// Subscribers run after the change is applied and outside the View's lock: they may
// read the View (and subscribe or unsubscribe) from the callback.
func TestSubscriberMayReadTheView(t *testing.T) {
	v, _ := newView()
	seen := make(chan bool, 1)
	var unsub func()
	unsub = v.Subscribe(func(k keyspace.Key) {
		c, ok := v.Cluster(k.Cluster)
		_ = v.Clusters()
		_ = v.PublishedServices(k.Cluster)
		unsub()
		seen <- ok && c.Info != nil
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.OnUpsert(keyspace.ClusterInfo("east-1"), info("east-1", "us-east"))
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("OnUpsert deadlocked: the subscriber is called under the View's lock")
	}
	if !<-seen {
		t.Fatal("the subscriber did not see the change it was told about")
	}
}

func TestPublishedServices(t *testing.T) {
	v, _ := newView()
	if got := v.PublishedServices("east-1"); got != nil {
		t.Fatalf("PublishedServices of an unknown cluster = %v, want nil", got)
	}
	v.OnUpsert(keyspace.ClusterInfo("east-1"), info("east-1", "us-east"))
	if got := v.PublishedServices("east-1"); len(got) != 0 {
		t.Fatalf("PublishedServices of a cluster without services = %v", got)
	}
	for _, nn := range []NamespacedName{{"shop", "web"}, {"db", "pg"}, {"shop", "cart"}} {
		v.OnUpsert(keyspace.ServiceEndpoints("east-1", nn.Namespace, nn.Name), endpoints(nn.Namespace, nn.Name, true))
	}
	v.OnUpsert(keyspace.ServiceEndpoints("west-1", "shop", "cart"), endpoints("shop", "cart", true))
	want := []string{
		keyspace.ServiceEndpoints("east-1", "db", "pg"),
		keyspace.ServiceEndpoints("east-1", "shop", "cart"),
		keyspace.ServiceEndpoints("east-1", "shop", "web"),
	}
	if diff := cmp.Diff(want, v.PublishedServices("east-1")); diff != "" {
		t.Fatalf("PublishedServices (-want +got):\n%s", diff)
	}
	v.OnDelete(keyspace.ServiceEndpoints("east-1", "shop", "cart"))
	want = slices.Delete(want, 1, 2)
	if diff := cmp.Diff(want, v.PublishedServices("east-1")); diff != "" {
		t.Fatalf("PublishedServices after a delete (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{keyspace.ServiceEndpoints("west-1", "shop", "cart")}, v.PublishedServices("west-1")); diff != "" {
		t.Fatalf("PublishedServices of west-1 (-want +got):\n%s", diff)
	}
}

func TestAccessorsSort(t *testing.T) {
	v, _ := newView()
	for _, c := range []string{"west-1", "east-1", "east-10", "central"} {
		v.OnUpsert(keyspace.ClusterInfo(c), info(c, "r"))
	}
	for _, nn := range []NamespacedName{{"shop", "web"}, {"db", "pg"}, {"shop", "cart"}, {"shop-eu", "a"}} {
		v.OnUpsert(keyspace.GlobalService(nn.Namespace, nn.Name), global(nn.Namespace, nn.Name))
		v.OnUpsert(keyspace.Policy(nn.Namespace, nn.Name), policy(nn.Namespace, nn.Name))
	}
	var clusters, globals, policies []string
	for _, c := range v.Clusters() {
		clusters = append(clusters, c.Name)
	}
	for _, g := range v.GlobalServices() {
		globals = append(globals, g.String())
	}
	for _, p := range v.Policies() {
		policies = append(policies, p.Namespace+"/"+p.Name)
	}
	if want := []string{"central", "east-1", "east-10", "west-1"}; !slices.Equal(clusters, want) {
		t.Errorf("Clusters() order %v, want %v", clusters, want)
	}
	want := []string{"db/pg", "shop-eu/a", "shop/cart", "shop/web"}
	if !slices.Equal(globals, want) {
		t.Errorf("GlobalServices() order %v, want %v", globals, want)
	}
	if !slices.Equal(policies, want) {
		t.Errorf("Policies() order %v, want %v", policies, want)
	}
}

// The maps and slices accessors return are the caller's own: changing them leaves the
// View as it was. (The records they point to are shared and never mutated: see the
// package doc.)
func TestAccessorResultsAreCopies(t *testing.T) {
	populated := func() *View {
		v, _ := newView()
		v.OnUpsert(keyspace.ClusterInfo("east-1"), info("east-1", "us-east"))
		v.OnUpsert(keyspace.ClusterHeartbeat("east-1"), heartbeat("agent-1"))
		v.OnUpsert(keyspace.ServiceEndpoints("east-1", "shop", "cart"), endpoints("shop", "cart", true))
		v.OnUpsert(keyspace.ServiceEndpoints("east-1", "shop", "web"), endpoints("shop", "web", true))
		v.OnUpsert(keyspace.ClusterInfo("west-1"), info("west-1", "us-west"))
		v.OnUpsert(keyspace.GlobalService("shop", "cart"), global("shop", "cart"))
		v.OnUpsert(keyspace.GlobalService("shop", "web"), global("shop", "web"))
		v.OnUpsert(keyspace.Policy("shop", "a"), policy("shop", "a"))
		v.OnUpsert(keyspace.Policy("shop", "b"), policy("shop", "b"))
		return v
	}
	type snapshot struct {
		Clusters  []Cluster
		Globals   []model.GlobalService
		Policies  []*model.Policy
		Published []string
	}
	snap := func(v *View) snapshot {
		return snapshot{v.Clusters(), v.GlobalServices(), v.Policies(), v.PublishedServices("east-1")}
	}
	tests := map[string]func(v *View){
		"Cluster: delete from Services": func(v *View) {
			c, _ := v.Cluster("east-1")
			delete(c.Services, NamespacedName{"shop", "cart"})
		},
		"Cluster: add to Services": func(v *View) {
			c, _ := v.Cluster("east-1")
			c.Services[NamespacedName{"shop", "new"}] = endpoints("shop", "new", true)
		},
		"Cluster: overwrite fields": func(v *View) {
			c, _ := v.Cluster("east-1")
			c.Info, c.Heartbeat, c.LastHeartbeat, c.Services = nil, nil, time.Time{}, nil
		},
		"Clusters: clear Services and fields": func(v *View) {
			cs := v.Clusters()
			for i := range cs {
				clear(cs[i].Services)
				cs[i].Name, cs[i].Info = "renamed", nil
			}
		},
		"Clusters: reorder": func(v *View) {
			cs := v.Clusters()
			slices.Reverse(cs)
			cs[0] = Cluster{}
		},
		"GlobalServices: change elements": func(v *View) {
			gs := v.GlobalServices()
			gs[0].Hostname, gs[0].Policy, gs[0].Service = "hijacked", "other", nil
			gs[1] = model.GlobalService{}
		},
		"Policies: replace elements": func(v *View) {
			ps := v.Policies()
			ps[0] = nil
			slices.Reverse(ps)
		},
		"PublishedServices: change elements": func(v *View) {
			keys := v.PublishedServices("east-1")
			keys[0] = "x"
			slices.Reverse(keys)
		},
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			v := populated()
			before := snap(v)
			mutate(v)
			if diff := cmp.Diff(before, snap(v)); diff != "" {
				t.Fatalf("mutating a result changed the View (-before +after):\n%s", diff)
			}
		})
	}
}

// OnUpsert and OnDelete ignore keys outside the layout rather than panic: a Reader
// decodes before it calls them, so such a key is a caller's bug, not a reason to crash.
func TestIgnoresUnknownKeys(t *testing.T) {
	v, _ := newView()
	for _, key := range []string{"", "/meshfed/v2/clusters/a/info", keyspace.ClustersPrefix(), "/meshfed/v1/clusters/A/info"} {
		v.OnUpsert(key, info("a", "r"))
		v.OnDelete(key)
	}
	if cs, gs, ps := v.Clusters(), v.GlobalServices(), v.Policies(); len(cs)+len(gs)+len(ps) != 0 {
		t.Fatalf("unknown keys changed the View: %v %v %v", cs, gs, ps)
	}
	// The trust bundle is a valid key the View does not hold; it changes nothing.
	v.OnDelete(keyspace.TrustBundle())
	if cs := v.Clusters(); len(cs) != 0 {
		t.Fatalf("trust bundle delete changed the View: %v", cs)
	}
}

// Readers, writers and subscribers may run concurrently (run with -race).
func TestConcurrentUse(t *testing.T) {
	v := New(Options{}) // the real clock: the default must work
	stop := v.Subscribe(func(keyspace.Key) { _ = v.Clusters() })
	defer stop()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			cluster := fmt.Sprintf("c-%d", w)
			for i := range 200 {
				key := keyspace.ServiceEndpoints(cluster, "shop", fmt.Sprintf("s-%d", i%7))
				v.OnUpsert(key, endpoints("shop", fmt.Sprintf("s-%d", i%7), i%2 == 0))
				v.OnUpsert(keyspace.ClusterHeartbeat(cluster), heartbeat("a"))
				if i%3 == 0 {
					v.OnDelete(key)
				}
			}
		})
		wg.Go(func() {
			for range 200 {
				for _, c := range v.Clusters() {
					c.Endpoints()
					_ = v.PublishedServices(c.Name)
				}
				_ = v.GlobalServices()
				_, _ = v.Policy("shop", "p")
			}
		})
	}
	wg.Wait()
	for _, c := range v.Clusters() {
		if c.LastHeartbeat.IsZero() {
			t.Errorf("cluster %s has a heartbeat but no LastHeartbeat with the default clock", c.Name)
		}
	}
}

// TestReadOnlyClustersAreNotWrittenAfter: the maps ReadOnlyClusters shares with the
// View keep what they held when lent, whatever the View is told after.
func TestReadOnlyClustersAreNotWrittenAfter(t *testing.T) {
	v, _ := newView()
	v.OnUpsert(keyspace.ClusterInfo("east-1"), info("east-1", "us-east"))
	v.OnUpsert(keyspace.ServiceEndpoints("east-1", "shop", "cart"), endpoints("shop", "cart", true))
	lent := v.ReadOnlyClusters()
	before := maps.Clone(lent[0].Services)
	v.OnUpsert(keyspace.ServiceEndpoints("east-1", "shop", "web"), endpoints("shop", "web", true))
	v.OnUpsert(keyspace.ServiceEndpoints("east-1", "shop", "cart"), endpoints("shop", "cart", false))
	v.OnDelete(keyspace.ServiceEndpoints("east-1", "shop", "cart"))
	if !maps.Equal(lent[0].Services, before) {
		t.Fatalf("a lent map changed: %v, was %v", lent[0].Services, before)
	}
	if now := v.ReadOnlyClusters(); len(now[0].Services) != 1 {
		t.Fatalf("the View holds %d services, want 1 (web)", len(now[0].Services))
	}
}
