package view

import (
	"errors"
	"fmt"
	"testing"

	"github.com/meshfed/meshfed/internal/etcd/keyspace"
	"github.com/meshfed/meshfed/internal/etcd/kvstore"
	"github.com/meshfed/meshfed/internal/etcd/model"
)

// feed delivers rec at key in version rev as a Reader does (nil: a value that does
// not decode).
func feed(v *View, key string, rec model.Record, rev int64) {
	if rec != nil {
		v.OnUpsert(key, rec)
	}
	v.OnVersion(key, rev)
}

func mustDigest(t *testing.T, v *View) Digest {
	t.Helper()
	d, err := v.Digest()
	if err != nil {
		t.Fatalf("Digest: %v", err)
	}
	return d
}

func TestDigestCoversWhatIsServed(t *testing.T) {
	v, _ := newView()
	if _, err := v.Digest(); !errors.Is(err, ErrNotLive) {
		t.Fatalf("before the first list: %v, want ErrNotLive", err)
	}
	store := map[string]int64{}
	put := func(key string, rec model.Record, rev int64) {
		feed(v, key, rec, rev)
		store[key] = rev
	}
	svc := keyspace.ServiceEndpoints("alpha", "shop", "cart")
	put(keyspace.ClusterInfo("alpha"), info("alpha", "eu"), 2)
	put(keyspace.ClusterHeartbeat("alpha"), heartbeat("a"), 3)
	put(svc, endpoints("shop", "cart", true), 4)
	put(keyspace.ServiceEndpoints("alpha", "shop", "bad"), nil, 5) // never decoded: served as nothing
	put(keyspace.GlobalService("shop", "cart"), global("shop", "cart"), 6)
	put(keyspace.Policy("shop", "p"), policy("shop", "p"), 7)
	v.OnSynced()
	if _, err := v.Digest(); !errors.Is(err, ErrChanging) {
		t.Fatalf("before OnRevision: %v, want ErrChanging", err)
	}
	v.OnRevision(7)

	want := func() kvstore.Digest {
		var d kvstore.Digest
		for k, rev := range store {
			d.Add(k, rev)
		}
		return d
	}
	d := mustDigest(t, v)
	if d.Revision != 7 || d.Served != want() || d.Imported != want() {
		t.Fatalf("digest %+v, want served and imported %v at 7", d, want())
	}

	// An update, a malformed update (the last good value stays served) and a delete.
	put(svc, endpoints("shop", "cart", false), 8)
	put(keyspace.GlobalService("shop", "cart"), nil, 9)
	v.OnDelete(keyspace.Policy("shop", "p"))
	v.OnVersion(keyspace.Policy("shop", "p"), 0)
	delete(store, keyspace.Policy("shop", "p"))
	v.OnRevision(10)
	if d := mustDigest(t, v); d.Served != want() || d.Imported != want() {
		t.Fatalf("after changes: %+v, want %v", d, want())
	}

	// A record lost behind the Reader's back shows in Served, not in Imported.
	v.mu.Lock()
	v.apply(keyspace.Key{Kind: keyspace.KindServiceEndpoints, Cluster: "alpha", Namespace: "shop", Name: "cart"}, nil, false)
	d = mustDigest(t, v)
	if d.Imported != want() || d.Served == want() || d.Served.Keys != want().Keys-1 {
		t.Fatalf("after losing a record: %+v, want imported %v and served one key short", d, want())
	}

	// A resync delivers everything again, and what it does not deliver goes.
	v.mu.Lock()
	v.apply(keyspace.Key{Kind: keyspace.KindGlobalService, Namespace: "shop", Name: "invented"}, global("shop", "invented"), false)
	v.OnResync()
	for key, rev := range store {
		var rec model.Record
		switch key {
		case svc:
			rec = endpoints("shop", "cart", false)
		case keyspace.ClusterInfo("alpha"):
			rec = info("alpha", "eu")
		case keyspace.ClusterHeartbeat("alpha"):
			rec = heartbeat("a")
		}
		feed(v, key, rec, rev) // the malformed ones again without a value
	}
	v.OnSynced()
	v.OnRevision(10)
	d = mustDigest(t, v)
	if d.Served != want() || d.Imported != want() {
		t.Fatalf("after the resync: %+v, want %v", d, want())
	}
	if len(v.GlobalServices()) != 1 || v.GlobalServices()[0].Name != "cart" {
		t.Errorf("global services after the resync: %v, want the last good shop/cart only", v.GlobalServices())
	}
	if c, _ := v.Cluster("alpha"); c.Services[NamespacedName{"shop", "cart"}] == nil {
		t.Error("the lost service did not come back")
	}
}

// BenchmarkDigest100k measures a View's Digest over 100 clusters of 1,000 services.
func BenchmarkDigest100k(b *testing.B) {
	v, _ := newView()
	rev := int64(0)
	for c := range 100 {
		cluster := fmt.Sprintf("c%03d", c)
		for s := range 1000 {
			rev++
			name := fmt.Sprintf("svc-%04d", s)
			feed(v, keyspace.ServiceEndpoints(cluster, "shop", name), endpoints("shop", name, true), rev)
		}
	}
	v.OnSynced()
	v.OnRevision(rev)
	b.ResetTimer()
	for range b.N {
		d, err := v.Digest()
		if err != nil || d.Served.Keys != 100_000 || d.Served != d.Imported {
			b.Fatalf("%+v %v", d, err)
		}
	}
}
