package kvstore

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// digestOf computes a Digest from scratch, adding versions in the given order.
func digestOf(keys []string, versions map[string]int64) Digest {
	var d Digest
	for _, k := range keys {
		d.Add(k, versions[k])
	}
	return d
}

func TestDigestIsOrderIndependentAndIncremental(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		versions := map[string]int64{}
		var d Digest // kept incrementally through puts, updates and deletes
		for range 1 + rng.IntN(60) {
			key := fmt.Sprintf("/p/k%02d", rng.IntN(40))
			if old, ok := versions[key]; ok {
				d.Remove(key, old)
				if rng.IntN(3) == 0 { // delete
					delete(versions, key)
					continue
				}
			}
			rev := int64(1 + rng.IntN(1000))
			versions[key] = rev
			d.Add(key, rev)
		}
		keys := slices.Sorted(maps.Keys(versions))
		sorted := digestOf(keys, versions)
		rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		if shuffled := digestOf(keys, versions); shuffled != sorted {
			t.Fatalf("round %d: digest depends on order: %v vs %v", round, shuffled, sorted)
		}
		if d != sorted {
			t.Fatalf("round %d: incremental %v, from scratch %v", round, d, sorted)
		}
		if d.Keys != int64(len(versions)) {
			t.Fatalf("round %d: %d keys counted, %d held", round, d.Keys, len(versions))
		}
		back, err := ParseDigest(d.String())
		if err != nil || back != d {
			t.Fatalf("round %d: ParseDigest(%q) = %v, %v", round, d.String(), back, err)
		}
	}
}

func TestDigestTellsVersionsApart(t *testing.T) {
	base := map[string]int64{"/p/a": 5, "/p/b": 7}
	want := digestOf([]string{"/p/a", "/p/b"}, base)
	for name, other := range map[string]map[string]int64{
		"another revision":  {"/p/a": 5, "/p/b": 8},
		"a key missing":     {"/p/a": 5},
		"a key renamed":     {"/p/a": 5, "/p/c": 7},
		"revisions swapped": {"/p/a": 7, "/p/b": 5},
		"an extra key":      {"/p/a": 5, "/p/b": 7, "/p/c": 1},
	} {
		if got := digestOf(slices.Sorted(maps.Keys(other)), other); got == want {
			t.Errorf("%s: same digest %v", name, got)
		}
	}
	// Removing what was added gives the empty digest back.
	d := want
	d.Remove("/p/a", 5)
	d.Remove("/p/b", 7)
	if d != (Digest{}) {
		t.Errorf("after removing everything: %v", d)
	}
	for _, bad := range []string{"", "12", "x/0000000000000000", "1/00", "-1/0000000000000000", "1/zz00000000000000"} {
		if _, err := ParseDigest(bad); err == nil {
			t.Errorf("ParseDigest(%q) accepted", bad)
		}
	}
}

// versionRecorder is a recorder that is a VersionObserver: it keeps a digest of
// the versions delivered, pins it at every OnRevision, and on a Resync prunes at
// OnSynced what the list did not deliver again, as view.View does.
type versionRecorder struct {
	*recorder
	mu       sync.Mutex
	versions map[string]int64
	digest   Digest
	rev      int64
	pinned   Digest
	stale    map[string]bool
	resyncs  int
}

func newVersionRecorder() *versionRecorder {
	return &versionRecorder{recorder: newRecorder(), versions: map[string]int64{}, stale: map[string]bool{}}
}

func (v *versionRecorder) OnVersion(key string, modRev int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.stale, key)
	if old, ok := v.versions[key]; ok {
		v.digest.Remove(key, old)
		delete(v.versions, key)
	}
	if modRev != 0 {
		v.versions[key] = modRev
		v.digest.Add(key, modRev)
	}
}

func (v *versionRecorder) OnRevision(rev int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rev, v.pinned = rev, v.digest
}

func (v *versionRecorder) OnResync() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.resyncs++
	for key := range v.versions {
		v.stale[key] = true
	}
	for key := range v.snapshot() {
		v.stale[key] = true
	}
}

func (v *versionRecorder) OnSynced() {
	v.mu.Lock()
	for key := range v.stale {
		if old, ok := v.versions[key]; ok {
			v.digest.Remove(key, old)
			delete(v.versions, key)
		}
		v.recorder.OnDelete(key)
	}
	clear(v.stale)
	v.mu.Unlock()
	v.recorder.OnSynced()
}

func (v *versionRecorder) at() (int64, Digest) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.rev, v.pinned
}

// corrupt changes the recorder's state behind the Reader's back: one key lost, one
// invented.
func (v *versionRecorder) corrupt(lost, invented string) {
	v.recorder.mu.Lock()
	defer v.recorder.mu.Unlock()
	delete(v.recorder.state, lost)
	v.recorder.state[invented] = "invented"
}

func newVersionReader(t *testing.T, c ReadClient, prefix string) (*Reader[string], *versionRecorder) {
	t.Helper()
	rec := newVersionRecorder()
	r, err := NewReader(ReaderOptions[string]{Client: c, Prefix: prefix, Decode: decodeString, Observer: rec,
		RetryBaseDelay: 20 * time.Millisecond, RetryMaxDelay: time.Second, PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	return r, rec
}

// waitDigestMatches waits until the observer's pinned digest equals the store's at
// the same revision.
func waitDigestMatches(t *testing.T, rec *versionRecorder, c *clientv3.Client, prefix string) {
	t.Helper()
	testutil.Eventually(t, waitFor, "observer's digest to equal the store's at its revision", testutil.Check(func() (bool, string) {
		rev, d := rec.at()
		if rev == 0 {
			return false, "no revision yet"
		}
		store, err := DigestAt(testContext(t), c, prefix, rev, 4)
		if err != nil {
			return false, err.Error()
		}
		return store == d, fmt.Sprintf("at revision %d: observer %v, store %v", rev, d, store)
	}))
}

// The digest a VersionObserver keeps from a Reader's deliveries equals DigestAt of
// the store at the revision the Reader reports, through puts, updates and deletes,
// with paged lists and reads.
func TestReaderDigestEqualsStore(t *testing.T) {
	_, c := startEtcd(t)
	const prefix = "/digest/"
	seed(t, c, prefix, 10)
	mustPut(t, c, "/digest-other/k", "noise")
	r, rec := newVersionReader(t, c, prefix)
	testutil.Run(t, "reader", r.Run)
	waitMirrors(t, rec.recorder, c, prefix)
	waitDigestMatches(t, rec, c, prefix)

	changeWhileCut(t, c, prefix) // every kind of change, live this time
	waitMirrors(t, rec.recorder, c, prefix)
	waitDigestMatches(t, rec, c, prefix)
	if rev, d := rec.at(); d.Keys != int64(len(groundTruth(t, c, prefix))) {
		t.Errorf("at revision %d the digest counts %d keys, etcd holds %d", rev, d.Keys, len(groundTruth(t, c, prefix)))
	}
}

// Resync delivers every key again, even those the Reader knows it delivered, and
// the Observer prunes what the list did not deliver: an Observer that lost a key
// and invented another behind the Reader's back ends equal to the store.
func TestReaderResync(t *testing.T) {
	_, c := startEtcd(t)
	const prefix = "/resync/"
	seed(t, c, prefix, 10)
	r, rec := newVersionReader(t, c, prefix)
	testutil.Run(t, "reader", r.Run)
	waitMirrors(t, rec.recorder, c, prefix)
	syncs := rec.syncs()

	rec.corrupt(prefix+"k03", prefix+"invented")
	if d := diff(rec.snapshot(), groundTruth(t, c, prefix)); d == "" {
		t.Fatal("corrupting the observer changed nothing")
	}
	r.Resync()
	waitMirrors(t, rec.recorder, c, prefix)
	testutil.Eventually(t, waitFor, "the resync's list to complete", testutil.Check(func() (bool, string) {
		return rec.syncs() > syncs, fmt.Sprintf("%d lists", rec.syncs())
	}))
	// Every key was delivered a second time: the Reader forgot its dedupe state.
	for key, value := range groundTruth(t, c, prefix) {
		rec.recorder.mu.Lock()
		n := rec.delivered[key+"="+value]
		rec.recorder.mu.Unlock()
		if n != 2 {
			t.Errorf("%s=%s delivered %d times, want 2 (the first list and the resync)", key, value, n)
		}
	}
	if rec.resyncs != 1 {
		t.Errorf("OnResync called %d times, want 1", rec.resyncs)
	}
	waitDigestMatches(t, rec, c, prefix)

	// The watch goes on after a resync.
	mustPut(t, c, prefix+"k11", "after-resync")
	waitMirrors(t, rec.recorder, c, prefix)
	waitDigestMatches(t, rec, c, prefix)
}

// BenchmarkDigestAt measures the store's side of a check: a keys-only read of
// 100,000 keys (paths as long as meshfed's service keys) at one revision.
func BenchmarkDigestAt(b *testing.B) {
	srv, err := startBenchEtcd(b)
	if err != nil {
		b.Fatal(err)
	}
	c, err := srv.Client()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const prefix = "/meshfed/v1/"
	ctx := b.Context()
	for i := 0; i < 100_000; i += 100 {
		ops := make([]clientv3.Op, 0, 100)
		for j := i; j < i+100; j++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%sclusters/c%03d/services/shop/svc-%05d", prefix, j%100, j), `{"endpoints":[]}`))
		}
		if _, err := c.Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
	}
	resp, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		d, err := DigestAt(ctx, c, prefix, resp.Header.Revision, 0)
		if err != nil || d.Keys != 100_000 {
			b.Fatalf("digest %v, %v", d, err)
		}
	}
}

// BenchmarkDigestAdd measures the hash of one version.
func BenchmarkDigestAdd(b *testing.B) {
	var d Digest
	for i := range b.N {
		d.Add("/meshfed/v1/clusters/c042/services/shop/svc-12345", int64(i))
	}
}
