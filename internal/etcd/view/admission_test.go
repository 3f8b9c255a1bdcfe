package view

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/admit"
	"github.com/meshfed/meshfed/internal/etcd/embedetcd"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

func betaInfo(zones ...string) *model.ClusterInfo {
	return &model.ClusterInfo{Name: "beta", Region: "us-east", Zones: zones, Network: "default"}
}

func zonal(name string, zoneOf ...string) *model.ServiceEndpoints {
	s := &model.ServiceEndpoints{Namespace: "shop", Name: name, Ports: []model.ServicePort{{Name: "grpc", Port: 8080}}}
	for i, z := range zoneOf {
		s.Endpoints = append(s.Endpoints, model.Endpoint{Address: fmt.Sprintf("10.250.0.%d", i+1), Zone: z, Ready: true,
			Ports: []model.EndpointPort{{Name: "grpc", Port: 8080}}})
	}
	return s
}

func served(v *View, cluster, name string) []string {
	c, _ := v.Cluster(cluster)
	s := c.Services[NamespacedName{"shop", name}]
	if s == nil {
		return nil
	}
	out := []string{}
	for _, e := range s.Endpoints {
		out = append(out, e.Address+"/"+e.Zone)
	}
	return out
}

func reasons(v *View) map[string]int {
	out := map[string]int{}
	for _, r := range v.Rejections() {
		out[r.Cluster+"/"+r.Reason] = r.Count
		if r.Key == "" || r.Detail == "" {
			panic(fmt.Sprintf("rejection without example: %+v", r))
		}
	}
	return out
}

// A record that arrives before its cluster's info is held as written, and admitted
// when the info arrives; a change of the info admits it again.
func TestAdmissionFollowsTheInfo(t *testing.T) {
	v, _ := newView()
	key := keyspace.ServiceEndpoints("beta", "shop", "cart")
	rec := zonal("cart", "us-east-1b", "evil-zone-9", "us-east-1a", "")
	v.OnUpsert(key, rec)
	if got := served(v, "beta", "cart"); len(got) != 4 {
		t.Fatalf("before beta's info, served %v, want the record as written", got)
	}
	if r := v.Rejections(); len(r) != 0 {
		t.Fatalf("before beta's info, rejections %+v, want none", r)
	}

	v.OnUpsert(keyspace.ClusterInfo("beta"), betaInfo("us-east-1b"))
	if got, want := served(v, "beta", "cart"), []string{"10.250.0.1/us-east-1b", "10.250.0.4/"}; !slices.Equal(got, want) {
		t.Fatalf("after beta's info, served %v, want %v", got, want)
	}
	if got, want := reasons(v), map[string]int{"beta/ZoneNotDeclared": 2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("rejections %v, want %v", got, want)
	}
	c, _ := v.Cluster("beta")
	refused := c.Refused[NamespacedName{"shop", "cart"}]
	if len(refused) != 2 || refused[0].Zone != "evil-zone-9" || refused[1].Zone != "us-east-1a" {
		t.Errorf("Refused %+v, want one rejection per undeclared zone", refused)
	}
	// What the store holds is what the View reports holding: digests and snapshots
	// cover the record as written.
	if got := v.Records()[key]; got != rec {
		t.Errorf("Records()[%s] = %v, want the record as written", key, got)
	}

	v.OnUpsert(keyspace.ClusterInfo("beta"), betaInfo("us-east-1b", "us-east-1a"))
	if got := served(v, "beta", "cart"); len(got) != 3 {
		t.Errorf("after beta declares us-east-1a, served %v, want 3 endpoints", got)
	}
	if got, want := reasons(v), map[string]int{"beta/ZoneNotDeclared": 1}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rejections %v, want %v", got, want)
	}
	v.OnDelete(key)
	if r := v.Rejections(); len(r) != 0 {
		t.Errorf("after the record is deleted, rejections %+v, want none", r)
	}
}

// Records beyond MaxServices, in key order, are not served; one moves in when an
// earlier one goes.
func TestAdmissionServicesLimit(t *testing.T) {
	v, _ := newView()
	info := betaInfo("us-east-1b")
	info.Limits.MaxServices = 2
	v.OnUpsert(keyspace.ClusterInfo("beta"), info)
	for _, name := range []string{"d", "b", "c", "a"} {
		v.OnUpsert(keyspace.ServiceEndpoints("beta", "shop", name), zonal(name, "us-east-1b"))
	}
	names := func() string {
		c, _ := v.Cluster("beta")
		var out []string
		for nn := range c.Services {
			out = append(out, nn.Name)
		}
		slices.Sort(out)
		return strings.Join(out, ",")
	}
	if got := names(); got != "a,b" {
		t.Fatalf("served %s, want a,b", got)
	}
	rs := v.Rejections()
	if len(rs) != 1 || rs[0].Reason != admit.TooManyServices || rs[0].Count != 2 || rs[0].Key != keyspace.ServiceEndpoints("beta", "shop", "c") {
		t.Fatalf("rejections %+v, want TooManyServices 2, e.g. shop/c", rs)
	}
	if got := len(v.PublishedServices("beta")); got != 4 {
		t.Errorf("PublishedServices lists %d keys, want all 4 the store holds", got)
	}
	v.OnDelete(keyspace.ServiceEndpoints("beta", "shop", "a"))
	if got := names(); got != "b,c" {
		t.Errorf("after a is deleted, served %s, want b,c", got)
	}
	v.OnUpsert(keyspace.ServiceEndpoints("beta", "shop", "a"), zonal("a", "us-east-1b"))
	if got := names(); got != "a,b" {
		t.Errorf("after a is back, served %s, want a,b", got)
	}
	info2 := *info
	info2.Limits.MaxServices = 10
	v.OnUpsert(keyspace.ClusterInfo("beta"), &info2)
	if got := names(); got != "a,b,c,d" {
		t.Errorf("after the limit grew, served %s, want every record", got)
	}
	if r := v.Rejections(); len(r) != 0 {
		t.Errorf("rejections %+v, want none", r)
	}
}

// A record of a service whose GlobalService does not name the cluster is reported.
func TestAdmissionUnauthorizedService(t *testing.T) {
	v, _ := newView()
	v.OnUpsert(keyspace.ClusterInfo("beta"), betaInfo("us-east-1b"))
	v.OnUpsert(keyspace.ServiceEndpoints("beta", "shop", "cart"), zonal("cart", "us-east-1b"))
	g := global("shop", "cart")
	g.Clusters = []string{"alpha", "gamma"}
	v.OnUpsert(keyspace.GlobalService("shop", "cart"), g)
	rs := v.Rejections()
	if len(rs) != 1 || rs[0].Reason != admit.ServiceNotAuthorized || !strings.Contains(rs[0].Detail, "alpha, gamma") {
		t.Fatalf("rejections %+v, want ServiceNotAuthorized naming the allowed clusters", rs)
	}
	open := *g
	open.Clusters = nil
	v.OnUpsert(keyspace.GlobalService("shop", "cart"), &open)
	if r := v.Rejections(); len(r) != 0 {
		t.Errorf("once every cluster may serve it, rejections %+v, want none", r)
	}
}

// Self's own services, from its informers, are admitted like everyone's.
func TestAdmissionLocal(t *testing.T) {
	v, _ := newAgentView()
	self := *betaInfo("us-east-1b")
	self.Name = "a"
	v.OnUpsert(keyspace.ClusterInfo("a"), &self)
	v.LocalUpsert(keyspace.ServiceEndpoints("a", "shop", "cart"), zonal("cart", "us-east-1b", "us-east-1z"))
	v.LocalSynced()
	if got := served(v, "a", "cart"); len(got) != 1 {
		t.Errorf("served %v, want the endpoint of the declared zone only", got)
	}
}

// countingDecode counts model.Decode's calls per key while a test runs.
func countingDecode(t *testing.T) func(key string) int {
	var mu sync.Mutex
	calls := map[string]int{}
	decode = func(key string, value []byte) (model.Record, error) {
		mu.Lock()
		calls[key]++
		mu.Unlock()
		return model.Decode(key, value)
	}
	t.Cleanup(func() { decode = model.Decode })
	return func(key string) int {
		mu.Lock()
		defer mu.Unlock()
		return calls[key]
	}
}

// A value over its cluster's MaxValueBytes is never decoded, by the first list,
// watch events or resyncs; what the View held for its key goes; a larger limit
// admits it.
func TestOversizeValueIsNeverDecoded(t *testing.T) {
	decodes := countingDecode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedetcd.Start(ctx, embedetcd.Options{DataDir: t.TempDir(), UnsafeNoFsync: true, ZapLogger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	put := func(key string, rec model.Record) {
		t.Helper()
		data, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, key, string(data)); err != nil {
			t.Fatal(err)
		}
	}
	info := betaInfo("us-east-1b")
	info.Limits.MaxValueBytes = 2000
	put(keyspace.ClusterInfo("beta"), info)
	small, big := keyspace.ServiceEndpoints("beta", "shop", "small"), keyspace.ServiceEndpoints("beta", "shop", "big")
	put(small, zonal("small", "us-east-1b"))
	put(big, zonal("big", "us-east-1b")) // fits at first
	zones := make([]string, 40)
	for i := range zones {
		zones[i] = "us-east-1b"
	}

	v, _ := newView()
	r, err := kvstore.NewReader(kvstore.ReaderOptions[model.Record]{Client: cli, Prefix: keyspace.Root, Decode: v.Decode, Observer: v})
	if err != nil {
		t.Fatal(err)
	}
	v.SetResync(r.Resync)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Run(runCtx) }() //nolint:errcheck
	defer func() { stop(); <-done }()
	if err := v.WaitLive(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the big record to be served while it fits", func() error {
		if served(v, "beta", "big") == nil {
			return fmt.Errorf("not served")
		}
		return nil
	})

	put(big, zonal("big", zones...)) // about 4 KB now
	testutil.Eventually(t, 10*time.Second, "the oversize record to be refused", func() error {
		if got := reasons(v); got["beta/RecordTooLarge"] != 1 || served(v, "beta", "big") != nil {
			return fmt.Errorf("rejections %v, big served %v", got, served(v, "beta", "big"))
		}
		return nil
	})
	before := decodes(big)
	for range 3 {
		n := decodes(small)
		r.Resync()
		testutil.Eventually(t, 10*time.Second, "a resync to decode the small record again", func() error {
			if decodes(small) == n {
				return fmt.Errorf("small decoded %d times", n)
			}
			return nil
		})
	}
	if n := decodes(big) - before; n != 0 {
		t.Errorf("the oversize value was decoded %d times, want never", n)
	}
	if got := reasons(v); got["beta/RecordTooLarge"] != 1 {
		t.Errorf("after resyncs, rejections %v, want RecordTooLarge 1", got)
	}

	// A larger limit judges it again: admitted.
	info.Limits.MaxValueBytes = 100_000
	put(keyspace.ClusterInfo("beta"), info)
	testutil.Eventually(t, 10*time.Second, "the record to be admitted under the larger limit", func() error {
		if got := served(v, "beta", "big"); len(got) != 40 {
			return fmt.Errorf("big serves %d endpoints", len(got))
		}
		if r := v.Rejections(); len(r) != 0 {
			return fmt.Errorf("rejections %+v", r)
		}
		return nil
	})
}
