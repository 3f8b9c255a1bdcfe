package kvstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/etcdconn"
)

// storeCheck is how often the tests' readers and writers check the store's
// identity: short, so that the tests are; the default is 5s.
const storeCheck = 200 * time.Millisecond

// agent is what an agent runs against the hub's store in these tests: a
// Writer of its services with a synced marker, a lease-bound heartbeat, and a
// Reader of the whole prefix, all through one client.
type agent struct {
	prefix, marker, heartbeat string
	services, beat            *Writer
	rec                       *recorder
	reader                    *Reader[string]
}

func startAgent(t *testing.T, c *clientv3.Client, prefix string) *agent {
	t.Helper()
	a := &agent{prefix: prefix, marker: prefix + "agent/synced", heartbeat: prefix + "agent/heartbeat"}
	a.services = newWriter(t, WriterOptions{Name: t.Name() + "/services", Client: c, SyncedKey: a.marker, CheckInterval: storeCheck,
		OwnedPrefixes: []string{prefix + "agent/services/"}})
	a.beat = newWriter(t, WriterOptions{Name: t.Name() + "/heartbeat", Client: c, LeaseTTL: 2 * time.Second, CheckInterval: storeCheck})
	a.services.Upsert(prefix+"agent/services/a", []byte("a1"))
	a.services.Upsert(prefix+"agent/services/b", []byte("b1"))
	a.services.MarkSynced()
	a.beat.Upsert(a.heartbeat, []byte("beat"))
	a.rec = newRecorder()
	var err error
	a.reader, err = NewReader(ReaderOptions[string]{
		Client: c, Prefix: prefix, Decode: decodeString, Observer: a.rec,
		RetryBaseDelay: 20 * time.Millisecond, RetryMaxDelay: time.Second, CheckInterval: storeCheck,
	})
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	startWriter(t, a.services)
	startWriter(t, a.beat)
	testutil.Run(t, "reader", a.reader.Run)
	waitSynced(t, a.services)
	return a
}

func waitSynced(t *testing.T, w *Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := w.WaitSynced(ctx); err != nil {
		t.Fatalf("WaitSynced: %v", err)
	}
}

// waitPublished waits until etcd holds exactly the agent's keys as want says
// (the marker with any value, the heartbeat under a live lease).
func (a *agent) waitPublished(t *testing.T, c *clientv3.Client, want map[string]string) {
	t.Helper()
	testutil.Eventually(t, waitFor, "the agent's keys in etcd", testutil.Check(func() (bool, string) {
		got := groundTruth(t, c, a.prefix+"agent/")
		if _, ok := got[a.marker]; !ok {
			return false, "no synced marker"
		}
		delete(got, a.marker)
		if leaseOf(t, c, a.heartbeat) == 0 {
			return false, "heartbeat not bound to a lease"
		}
		d := diff(got, want)
		return d == "", d
	}))
}

// Issue 9 item 3: the hub's etcd loses its data and a new, empty cluster
// answers on the same address. Without any restart, the writers republish
// everything (services, heartbeat under a new lease, synced marker last) and
// the reader ends with exactly the new store's keys, applying new writes
// whose ModRevisions are lower than those it saw in the old store.
func TestStoreReplaced(t *testing.T) {
	e := startRestartableEtcd(t)
	direct := newClient(t, e.clientURL)
	const prefix = "/test/replaced/"
	seed(t, direct, prefix+"hub/", 10)
	for i := range 30 { // history, so that the old revisions are well ahead
		mustPut(t, direct, prefix+"hub/k00", fmt.Sprintf("v%d-k00", i))
	}
	a := startAgent(t, newClient(t, e.clientURL), prefix)
	waitMirrors(t, a.rec, direct, prefix)
	oldID, oldRev := clusterID(t, direct), mustRevision(t, direct)
	relists := promtest.ToFloat64(relistsTotal.WithLabelValues(prefix, reasonClusterChanged))

	e.replaceStore()
	back := time.Now()
	if id := clusterID(t, direct); id == oldID {
		t.Fatalf("the new store has the old cluster ID %x", id)
	}
	// The hub writes its part again, some of it different; all at revisions
	// the reader has seen before.
	mustPut(t, direct, prefix+"hub/k00", "new-k00")
	mustPut(t, direct, prefix+"hub/k10", "new-k10")

	want := map[string]string{prefix + "agent/services/a": "a1", prefix + "agent/services/b": "b1", a.heartbeat: "beat"}
	a.waitPublished(t, direct, want)
	waitSynced(t, a.services)
	waitMirrors(t, a.rec, direct, prefix)
	t.Logf("converged %s after the new store answered", time.Since(back).Round(time.Millisecond))
	if got := a.rec.snapshot()[prefix+"hub/k01"]; got != "" {
		t.Fatalf("the reader kept hub/k01=%q from the old store", got)
	}

	// The watch goes on, from the new history.
	a.services.Upsert(prefix+"agent/services/c", []byte("c1"))
	mustPut(t, direct, prefix+"hub/k11", "new-k11")
	if rev := mustRevision(t, direct); rev >= oldRev {
		t.Fatalf("the new store is at revision %d, not below the old %d: the test proves nothing", rev, oldRev)
	}
	waitMirrors(t, a.rec, direct, prefix)
	if n := promtest.ToFloat64(relistsTotal.WithLabelValues(prefix, reasonClusterChanged)) - relists; n < 1 {
		t.Errorf("%v re-lists for a changed cluster", n)
	}
}

// Issue 9 item 3: the hub's etcd is restored from a backup taken earlier: the
// same cluster, its history back to the backup's revision. Keys written after
// the backup are gone or old again. The writer republishes, and the reader
// ends with the store's state and applies writes whose ModRevisions it has
// seen before, with other values.
func TestStoreRestoredFromBackup(t *testing.T) {
	e := startRestartableEtcd(t)
	direct := newClient(t, e.clientURL)
	const prefix = "/test/restored/"
	seed(t, direct, prefix+"hub/", 5)
	a := startAgent(t, newClient(t, e.clientURL), prefix)
	waitMirrors(t, a.rec, direct, prefix)
	oldID := clusterID(t, direct)

	e.stop()
	backup := e.backup()
	e.start(e.dir)

	// Changes after the backup, by the hub and by the agent.
	for i := range 20 {
		mustPut(t, direct, prefix+"hub/k00", fmt.Sprintf("after-backup-%d", i))
	}
	mustDelete(t, direct, prefix+"hub/k01")
	mustPut(t, direct, prefix+"hub/k10", "after-backup")
	a.services.Upsert(prefix+"agent/services/a", []byte("a2"))
	a.services.Delete(prefix + "agent/services/b") // the backup brings it back
	a.services.Upsert(prefix+"agent/services/c", []byte("c1"))
	flush(t, a.services)
	waitMirrors(t, a.rec, direct, prefix)
	seenRev := mustRevision(t, direct)

	e.stop()
	e.start(backup)
	back := time.Now()
	if id := clusterID(t, direct); id != oldID {
		t.Fatalf("the restored store has cluster ID %x, not the backup's %x", id, oldID)
	}
	if rev := mustRevision(t, direct); rev >= seenRev {
		t.Fatalf("the restored store is at revision %d, not below %d", rev, seenRev)
	}
	// New writes reuse revisions the reader saw, with other values.
	mustPut(t, direct, prefix+"hub/k00", "after-restore")
	mustPut(t, direct, prefix+"hub/k02", "after-restore")

	want := map[string]string{
		prefix + "agent/services/a": "a2", prefix + "agent/services/c": "c1",
		a.heartbeat: "beat",
	}
	a.waitPublished(t, direct, want)
	waitSynced(t, a.services)
	waitMirrors(t, a.rec, direct, prefix)
	t.Logf("converged %s after the restored store answered", time.Since(back).Round(time.Millisecond))
	got := a.rec.snapshot()
	for key, value := range map[string]string{"hub/k00": "after-restore", "hub/k01": "v0-k01", "hub/k02": "after-restore", "hub/k10": ""} {
		if got[prefix+key] != value {
			t.Errorf("reader holds %s=%q, want %q", key, got[prefix+key], value)
		}
	}
	// And goes on watching the restored history.
	mustPut(t, direct, prefix+"hub/k03", "later")
	waitMirrors(t, a.rec, direct, prefix)
}

// etcdconnClient is a client of endpoint with the gRPC settings of the
// clients that agents and the hub use (etcdconn.New, without TLS).
func etcdconnClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:            []string{endpoint},
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		DialOptions:          etcdconn.DialOptions(),
		Logger:               zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("new client of %s: %v", endpoint, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Issue 9 item 2: after the hub's etcd was down long enough for an agent's
// lease to lapse and for its grants to fail ("Lease grant failed, will retry
// … context deadline exceeded"), the agent re-grants its lease and rewrites
// its heartbeat within seconds of etcd being back, not after the ~30s of
// gRPC's default reconnect backoff.
func TestWriterRegrantsLeaseSoonAfterOutage(t *testing.T) {
	e := startRestartableEtcd(t)
	direct := newClient(t, e.clientURL)
	const key = "/test/outage/heartbeat"
	w := newWriter(t, WriterOptions{
		Client:       etcdconnClient(t, e.clientURL),
		LeaseTTL:     2 * time.Second,
		WriteTimeout: 3 * time.Second,
		// The production defaults, which this test is about.
		RetryBaseDelay: 100 * time.Millisecond, RetryMaxDelay: 2 * time.Second,
	})
	w.Upsert(key, []byte("beat"))
	startWriter(t, w)
	flush(t, w)
	before := leaseOf(t, direct, key)
	grantErrors := func() float64 { return promtest.ToFloat64(writeErrorsTotal.WithLabelValues(t.Name(), opLease)) }
	failed := grantErrors()

	// A long outage: gRPC's default reconnect backoff has grown past 10s by
	// the time the writer has failed 5 grants of 3s each.
	e.stop()
	down := time.Now()
	testutil.Eventually(t, 2*waitFor, "lease grants to fail while etcd is down", testutil.Check(func() (bool, string) {
		n := grantErrors() - failed
		return n >= 5, fmt.Sprintf("%v failed grants", n)
	}))
	e.start(e.dir)
	back := time.Now()

	// The old lease outlives the restart (etcd renews every lease when it
	// starts) but nobody keeps it alive: the key must move to a new lease.
	testutil.Eventually(t, 10*time.Second, "the heartbeat under a new lease", testutil.Check(func() (bool, string) {
		l := leaseOf(t, direct, key)
		return l != 0 && l != before, fmt.Sprintf("bound to lease %x (before the outage %x)", l, before)
	}))
	t.Logf("etcd down for %s; heartbeat under a new lease %s after etcd was back", back.Sub(down).Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
	// And it stays: the new lease is kept alive.
	lease := leaseOf(t, direct, key)
	ttl, err := direct.TimeToLive(testContext(t), lease)
	if err != nil || ttl.TTL <= 0 {
		t.Fatalf("lease %x: TTL %v, %v", lease, ttl, err)
	}
}

// TestRequireKeyKeepsWhatIsHeld: a reader that requires a ready marker keeps what it
// holds when the store comes back empty (lost and recreated before its writer wrote
// again), prunes nothing and reports no sync until the marker is back; then it
// mirrors the new store exactly.
func TestRequireKeyKeepsWhatIsHeld(t *testing.T) {
	e := startRestartableEtcd(t)
	direct := newClient(t, e.clientURL)
	const prefix = "/test/require/"
	marker := prefix + "hub/ready"
	seed(t, direct, prefix+"hub/", 5)
	mustPut(t, direct, marker, "yes")
	rec := newRecorder()
	r, err := NewReader(ReaderOptions[string]{Client: newClient(t, e.clientURL), Prefix: prefix, Decode: decodeString,
		Observer: rec, RetryBaseDelay: 20 * time.Millisecond, RetryMaxDelay: 200 * time.Millisecond,
		CheckInterval: 200 * time.Millisecond, RequireKey: marker})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Run(t, "reader", r.Run)
	waitMirrors(t, rec, direct, prefix)
	held := rec.snapshot()
	syncs := rec.syncs()

	e.replaceStore()
	mustPut(t, direct, prefix+"agent/a", "a1") // what comes back first: not the marker
	testutil.Eventually(t, waitFor, "the reader to list the new store", testutil.Check(func() (bool, string) {
		return rec.snapshot()[prefix+"agent/a"] == "a1", "agent/a not delivered"
	}))
	for key, value := range held {
		if rec.snapshot()[key] != value {
			t.Fatalf("%s = %q, want %q still: a store without its marker pruned what was held", key, rec.snapshot()[key], value)
		}
	}
	if rec.syncs() != syncs {
		t.Fatal("a list without the marker reported the store synced")
	}

	mustPut(t, direct, prefix+"hub/k00", "again")
	mustPut(t, direct, marker, "yes")
	waitMirrors(t, rec, direct, prefix)
	if _, ok := rec.snapshot()[prefix+"hub/k01"]; ok {
		t.Fatal("hub/k01 of the old store kept after the marker came back")
	}
}
