package view

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/embedetcd"
	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

func traffic(ns, name, gs string) *model.TrafficPolicy {
	return &model.TrafficPolicy{Namespace: ns, Name: name, GlobalService: gs, LoadBalancer: model.LoadBalancer{Policy: model.LoadBalancerRoundRobin}}
}

func authz(ns, name, gs string) *model.AuthorizationPolicy {
	return &model.AuthorizationPolicy{Namespace: ns, Name: name, GlobalService: gs, Action: model.ActionDeny,
		Rules: []model.AuthorizationRule{{From: []model.AuthorizationSource{{Clusters: []string{"staging"}}}}}}
}

func names[R any](recs []*R, name func(*R) string) []string {
	out := []string{}
	for _, r := range recs {
		out = append(out, name(r))
	}
	return out
}

// The View imports traffic and authorization policies from a real store: the
// accessors find them by global service, a record the API server would refuse is
// never served, deletes go, every change is notified with the policy's key, and the
// View's digest equals the store's throughout.
func TestPolicyRecordsFromTheStore(t *testing.T) {
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
	put := func(key string, rec any) {
		t.Helper()
		data, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, key, string(data)); err != nil {
			t.Fatal(err)
		}
	}
	put(keyspace.TrafficPolicy("shop", "cart"), traffic("shop", "cart", "cart"))
	put(keyspace.TrafficPolicy("shop", "b-cart"), traffic("shop", "b-cart", "cart")) // conflicts: the first by name wins
	put(keyspace.TrafficPolicy("shop", "web"), traffic("shop", "web", "web"))
	put(keyspace.AuthorizationPolicy("shop", "no-staging"), authz("shop", "no-staging", "payments"))
	put(keyspace.AuthorizationPolicy("shop", "posture"), &model.AuthorizationPolicy{Namespace: "shop", Name: "posture", DefaultAction: model.ActionDeny})
	put(keyspace.AuthorizationPolicy("other", "posture"), &model.AuthorizationPolicy{Namespace: "other", Name: "posture", DefaultAction: model.ActionAllow})
	// Forged: a split to a subset the policy does not define.
	forged := traffic("shop", "forged", "cart")
	forged.Routes = []model.Route{{Name: "r", Split: []model.WeightedSubset{{Subset: "nowhere", Weight: 100}}}}
	put(keyspace.TrafficPolicy("shop", "forged"), forged)

	v, _ := newView()
	var mu sync.Mutex
	var notified []keyspace.Key
	defer v.Subscribe(func(k keyspace.Key) { mu.Lock(); notified = append(notified, k); mu.Unlock() })()
	r, err := kvstore.NewReader(kvstore.ReaderOptions[model.Record]{Client: cli, Prefix: keyspace.Root, Decode: v.Decode, Observer: v})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Run(runCtx) }() //nolint:errcheck
	defer func() { stop(); <-done }()
	if err := v.WaitLive(ctx); err != nil {
		t.Fatal(err)
	}
	inSync := func() {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, "the View's digest to equal the store's", func() error {
			d, err := v.Digest()
			if err != nil {
				return err
			}
			want, err := kvstore.DigestAt(ctx, cli, keyspace.Root, d.Revision, 0)
			if err != nil {
				return err
			}
			if d.Served != want {
				return fmt.Errorf("view %v, store %v at revision %d", d.Served, want, d.Revision)
			}
			return nil
		})
	}
	inSync()

	if p := v.TrafficPolicy("shop", "cart"); p == nil || p.Name != "b-cart" {
		t.Errorf("TrafficPolicy(shop, cart) = %+v, want b-cart (first by name)", p)
	}
	if p := v.TrafficPolicy("shop", "nothing"); p != nil {
		t.Errorf("TrafficPolicy of a service no policy names = %+v", p)
	}
	tpName := func(p *model.TrafficPolicy) string { return p.Namespace + "/" + p.Name }
	if got, want := names(v.TrafficPolicies(), tpName), []string{"shop/b-cart", "shop/cart", "shop/web"}; !slices.Equal(got, want) {
		t.Errorf("TrafficPolicies = %v, want %v (the forged one refused)", got, want)
	}
	apName := func(p *model.AuthorizationPolicy) string { return p.Namespace + "/" + p.Name }
	if got, want := names(v.AuthorizationPolicies("shop", "payments"), apName), []string{"shop/no-staging", "shop/posture"}; !slices.Equal(got, want) {
		t.Errorf("AuthorizationPolicies(shop, payments) = %v, want %v", got, want)
	}
	if got, want := names(v.AuthorizationPolicies("shop", "cart"), apName), []string{"shop/posture"}; !slices.Equal(got, want) {
		t.Errorf("AuthorizationPolicies(shop, cart) = %v, want %v (namespace-wide only)", got, want)
	}
	if got := len(v.AllAuthorizationPolicies()); got != 3 {
		t.Errorf("AllAuthorizationPolicies has %d, want 3", got)
	}

	mu.Lock()
	notified = nil
	mu.Unlock()
	if _, err := cli.Delete(ctx, keyspace.TrafficPolicy("shop", "b-cart")); err != nil {
		t.Fatal(err)
	}
	put(keyspace.AuthorizationPolicy("shop", "no-staging"), authz("shop", "no-staging", "cart")) // retargeted
	testutil.Eventually(t, 10*time.Second, "the delete and the retarget to be notified and applied", func() error {
		mu.Lock()
		got := slices.Clone(notified)
		mu.Unlock()
		want := []keyspace.Key{
			{Kind: keyspace.KindTrafficPolicy, Namespace: "shop", Name: "b-cart"},
			{Kind: keyspace.KindAuthorizationPolicy, Namespace: "shop", Name: "no-staging"},
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("notified %v, want %v", got, want)
		}
		if p := v.TrafficPolicy("shop", "cart"); p == nil || p.Name != "cart" {
			return fmt.Errorf("TrafficPolicy(shop, cart) = %+v, want cart", p)
		}
		if got := names(v.AuthorizationPolicies("shop", "payments"), apName); !slices.Equal(got, []string{"shop/posture"}) {
			return fmt.Errorf("AuthorizationPolicies(shop, payments) = %v", got)
		}
		return nil
	})
	inSync()

	// What an agent saves and restores holds the policies too.
	recs := v.Records()
	for _, key := range []string{keyspace.TrafficPolicy("shop", "cart"), keyspace.AuthorizationPolicy("shop", "posture")} {
		if recs[key] == nil {
			t.Errorf("Records lacks %s", key)
		}
	}
}
