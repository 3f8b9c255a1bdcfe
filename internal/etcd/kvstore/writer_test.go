package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// countingKV wraps a real client, counting writes and failing chosen ones.
type countingKV struct {
	KV
	puts, deletes atomic.Int64

	mu sync.Mutex
	// failPuts is how many more Puts of a key fail before one succeeds.
	failPuts map[string]int
}

func (c *countingKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	c.mu.Lock()
	if c.failPuts[key] > 0 {
		c.failPuts[key]--
		c.mu.Unlock()
		return nil, errors.New("injected put failure")
	}
	c.mu.Unlock()
	c.puts.Add(1)
	return c.KV.Put(ctx, key, val, opts...)
}

func (c *countingKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	c.deletes.Add(1)
	return c.KV.Delete(ctx, key, opts...)
}

// startWriter runs w until cleanup, then closes it.
func startWriter(t *testing.T, w *Writer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("writer Run: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Errorf("writer Close: %v", err)
		}
	})
}

func newWriter(t *testing.T, opts WriterOptions) *Writer {
	t.Helper()
	if opts.RetryBaseDelay == 0 {
		opts.RetryBaseDelay = 10 * time.Millisecond
		opts.RetryMaxDelay = 200 * time.Millisecond
	}
	if opts.Name == "" {
		opts.Name = t.Name()
	}
	w, err := NewWriter(opts)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	return w
}

// flush waits until every update made so far is in etcd: MarkSynced without
// a SyncedKey is a pure barrier.
func flush(t *testing.T, w *Writer) {
	t.Helper()
	w.MarkSynced()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := w.WaitSynced(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// Acceptance (c): a burst of updates to one key is merged: etcd ends with the
// final value after fewer Puts than updates, and an unchanged value is not
// written again.
func TestWriterMergesBurst(t *testing.T) {
	_, direct := startEtcd(t)
	kv := &countingKV{KV: direct}
	w := newWriter(t, WriterOptions{Client: kv})
	const key = "/test/burst/k"

	// Queued before Run: exactly one Put.
	for i := range 1000 {
		w.Upsert(key, fmt.Appendf(nil, "before-%d", i))
	}
	startWriter(t, w)
	flush(t, w)
	if got := groundTruth(t, direct, key)[key]; got != "before-999" {
		t.Fatalf("after the first burst etcd holds %q", got)
	}
	if n := kv.puts.Load(); n != 1 {
		t.Fatalf("%d Puts for a burst queued before Run, want 1", n)
	}

	// While running: merged with whatever is in flight.
	for i := range 1000 {
		w.Upsert(key, fmt.Appendf(nil, "during-%d", i))
	}
	flush(t, w)
	if got := groundTruth(t, direct, key)[key]; got != "during-999" {
		t.Fatalf("after the second burst etcd holds %q", got)
	}
	puts := kv.puts.Load() - 1
	t.Logf("%d Puts for 1000 updates while running", puts)
	if puts >= 1000 {
		t.Fatalf("%d Puts for 1000 updates: not merged", puts)
	}

	// The same value again is not written.
	before := kv.puts.Load()
	w.Upsert(key, []byte("during-999"))
	flush(t, w)
	if n := kv.puts.Load() - before; n != 0 {
		t.Fatalf("%d Puts for an unchanged value", n)
	}

	w.Delete(key)
	flush(t, w)
	if got := groundTruth(t, direct, key); len(got) != 0 {
		t.Fatalf("after Delete etcd holds %v", got)
	}
}

// Failed writes are retried with backoff until they succeed, and counted.
func TestWriterRetriesFailedWrites(t *testing.T) {
	_, direct := startEtcd(t)
	const key = "/test/retry/k"
	kv := &countingKV{KV: direct, failPuts: map[string]int{key: 3}}
	w := newWriter(t, WriterOptions{Client: kv})
	errorsBefore := promtest.ToFloat64(writeErrorsTotal.WithLabelValues(t.Name(), opPut))
	startWriter(t, w)

	w.Upsert(key, []byte("v"))
	flush(t, w)
	if got := groundTruth(t, direct, key)[key]; got != "v" {
		t.Fatalf("etcd holds %q after retries", got)
	}
	if n := promtest.ToFloat64(writeErrorsTotal.WithLabelValues(t.Name(), opPut)) - errorsBefore; n != 3 {
		t.Fatalf("%v write errors counted, want 3", n)
	}
}

// Acceptance (f): the synced marker is written only after every key queued
// before MarkSynced, even when one of them needs retries.
func TestWriterSyncedMarkerAfterInitialSet(t *testing.T) {
	_, direct := startEtcd(t)
	const prefix = "/test/synced/"
	const marker = prefix + "synced"
	kv := &countingKV{KV: direct, failPuts: map[string]int{prefix + "k07": 5}}
	w := newWriter(t, WriterOptions{Client: kv, SyncedKey: marker})

	// Record every change under the prefix from before the first write.
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	watch := direct.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(mustRevision(t, direct)+1))

	initial := map[string]bool{}
	for i := range 50 {
		key := fmt.Sprintf("%sk%02d", prefix, i)
		initial[key] = true
		w.Upsert(key, []byte("v"))
	}
	w.Upsert(marker, []byte("must be ignored"))
	w.MarkSynced()
	w.Upsert(prefix+"after", []byte("v")) // not waited for
	startWriter(t, w)

	wctx, wcancel := context.WithTimeout(context.Background(), waitFor)
	defer wcancel()
	if err := w.WaitSynced(wctx); err != nil {
		t.Fatalf("WaitSynced: %v", err)
	}

	seen := map[string]bool{}
	for len(seen) < len(initial) || !seen[marker] {
		var resp clientv3.WatchResponse
		select {
		case resp = <-watch:
		case <-time.After(waitFor):
			t.Fatalf("timed out reading the watch; seen %d keys", len(seen))
		}
		if err := resp.Err(); err != nil {
			t.Fatalf("watch: %v", err)
		}
		for _, ev := range resp.Events {
			key := string(ev.Kv.Key)
			if ev.Type != mvccpb.PUT {
				t.Fatalf("unexpected %v of %s", ev.Type, key)
			}
			if key == marker {
				if missing := len(initial) - countSeen(seen, initial); missing > 0 {
					t.Fatalf("synced marker written before %d of the initial keys", missing)
				}
				var m syncedMarker
				if err := json.Unmarshal(ev.Kv.Value, &m); err != nil || m.SyncedAt.IsZero() {
					t.Fatalf("marker value %q: %v", ev.Kv.Value, err)
				}
			}
			seen[key] = true
		}
	}
}

func countSeen(seen, want map[string]bool) int {
	n := 0
	for k := range want {
		if seen[k] {
			n++
		}
	}
	return n
}

// leaseOf returns the lease key is bound to, or 0 if key is absent.
func leaseOf(t *testing.T, c *clientv3.Client, key string) clientv3.LeaseID {
	t.Helper()
	resp, err := c.Get(testContext(t), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

// Acceptance (d): lease-bound keys vanish when their lease is revoked, and the
// writer restores them, marker last, under a new lease.
func TestWriterRestoresKeysAfterLeaseLoss(t *testing.T) {
	_, direct := startEtcd(t)
	const prefix = "/test/lease/"
	keys := []string{prefix + "heartbeat", prefix + "services/a", prefix + "services/b"}
	const marker = prefix + "synced"
	w := newWriter(t, WriterOptions{Client: direct, LeaseTTL: 5 * time.Second, SyncedKey: marker})
	for _, k := range keys {
		w.Upsert(k, []byte("v-"+k))
	}
	w.MarkSynced()
	startWriter(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := w.WaitSynced(ctx); err != nil {
		t.Fatalf("WaitSynced: %v", err)
	}
	oldLease := leaseOf(t, direct, marker)
	for _, k := range append(keys, marker) {
		if got := leaseOf(t, direct, k); got == 0 || got != oldLease {
			t.Fatalf("%s bound to lease %x, want %x (non-zero)", k, got, oldLease)
		}
	}

	watch := direct.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(mustRevision(t, direct)+1))
	if _, err := direct.Revoke(testContext(t), oldLease); err != nil {
		t.Fatalf("revoke: %v", err)
	}

	// Every key is deleted with the lease, then put again under a new one;
	// the marker comes back only after all the others.
	deleted, restored := map[string]bool{}, map[string]bool{}
	for len(restored) < len(keys)+1 {
		var resp clientv3.WatchResponse
		select {
		case resp = <-watch:
		case <-ctx.Done():
			t.Fatalf("timed out: deleted %v, restored %v", deleted, restored)
		}
		for _, ev := range resp.Events {
			key := string(ev.Kv.Key)
			switch ev.Type {
			case mvccpb.DELETE:
				deleted[key] = true
			case mvccpb.PUT:
				if !deleted[key] {
					t.Fatalf("%s put again before its lease was revoked", key)
				}
				if key == marker && len(restored) != len(keys) {
					t.Fatalf("marker restored before the other keys: %v", restored)
				}
				if l := clientv3.LeaseID(ev.Kv.Lease); l == 0 || l == oldLease {
					t.Fatalf("%s restored with lease %x", key, l)
				}
				restored[key] = true
			}
		}
	}
	if len(deleted) != len(keys)+1 {
		t.Fatalf("revoking the lease deleted %v", deleted)
	}
	if err := w.WaitSynced(ctx); err != nil {
		t.Fatalf("WaitSynced after restore: %v", err)
	}
}

// Close revokes the lease with RevokeOnClose: every key goes at once.
func TestWriterCloseRevokesLease(t *testing.T) {
	_, direct := startEtcd(t)
	const key = "/test/revoke/k"
	w := newWriter(t, WriterOptions{Client: direct, LeaseTTL: 30 * time.Second, RevokeOnClose: true})
	w.Upsert(key, []byte("v"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	flush(t, w)
	if leaseOf(t, direct, key) == 0 {
		t.Fatal("key not bound to a lease")
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := groundTruth(t, direct, key); len(got) != 0 {
		t.Fatalf("after Close with RevokeOnClose etcd holds %v", got)
	}
	w.Upsert(key, []byte("after close")) // ignored, must not panic
}

// Without RevokeOnClose the lease outlives Close, so a successor can take the
// keys over before they expire.
func TestWriterCloseKeepsLease(t *testing.T) {
	_, direct := startEtcd(t)
	const key = "/test/orphan/k"
	w := newWriter(t, WriterOptions{Client: direct, LeaseTTL: 30 * time.Second})
	w.Upsert(key, []byte("v"))
	startWriter(t, w)
	flush(t, w)
	lease := leaseOf(t, direct, key)
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ttl, err := direct.TimeToLive(testContext(t), lease)
	if err != nil {
		t.Fatalf("TimeToLive: %v", err)
	}
	if ttl.TTL <= 0 || groundTruth(t, direct, key)[key] != "v" {
		t.Fatalf("after Close without RevokeOnClose: lease TTL %d, key %v", ttl.TTL, groundTruth(t, direct, key))
	}
}

func TestNewWriterValidates(t *testing.T) {
	if _, err := NewWriter(WriterOptions{}); err == nil {
		t.Error("NewWriter without a client succeeded")
	}
	if _, err := NewWriter(WriterOptions{Client: &countingKV{}, LeaseTTL: time.Second}); err == nil {
		t.Error("NewWriter with a lease but no session client succeeded")
	}
	w, err := NewWriter(WriterOptions{Client: &countingKV{}})
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close before Run: %v", err)
	}
	if err := w.Run(context.Background()); err == nil {
		t.Fatal("Run after Close succeeded")
	}
}

// A writer partitioned from etcd for longer than its lease TTL loses its keys
// with the lease; once the partition heals it writes the current desired
// state, including updates made while cut off, under a new lease, then the
// marker.
func TestWriterSurvivesPartition(t *testing.T) {
	srv, direct := startEtcd(t)
	px := newProxy(t, srv.Endpoints()[0])
	viaProxy := newClient(t, px.URL())
	const prefix = "/test/partition/"
	const marker = prefix + "synced"
	w := newWriter(t, WriterOptions{
		Client:       viaProxy,
		LeaseTTL:     2 * time.Second, // etcd's minimum, so the test is short
		SyncedKey:    marker,
		WriteTimeout: time.Second,
	})
	w.Upsert(prefix+"k1", []byte("v1"))
	w.Upsert(prefix+"k2", []byte("v2"))
	w.MarkSynced()
	startWriter(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := w.WaitSynced(ctx); err != nil {
		t.Fatalf("WaitSynced: %v", err)
	}

	px.Cut()
	w.Delete(prefix + "k1")
	w.Upsert(prefix+"k3", []byte("v3"))
	testutil.Eventually(t, waitFor, "the lease to expire while cut off", testutil.Check(func() (bool, string) {
		got := groundTruth(t, direct, prefix)
		return len(got) == 0, fmt.Sprintf("still present: %v", got)
	}))

	px.Restore()

	want := map[string]string{prefix + "k2": "v2", prefix + "k3": "v3"}
	testutil.Eventually(t, waitFor, "the desired state under a new lease", testutil.Check(func() (bool, string) {
		got := groundTruth(t, direct, prefix)
		if _, ok := got[marker]; !ok {
			return false, fmt.Sprintf("no marker yet: %v", got)
		}
		delete(got, marker)
		d := diff(got, want)
		return d == "", d
	}))

	lease := leaseOf(t, direct, marker)
	for k := range want {
		if got := leaseOf(t, direct, k); got != lease || got == 0 {
			t.Errorf("%s bound to lease %x, marker to %x", k, got, lease)
		}
	}
	if err := w.WaitSynced(ctx); err != nil {
		t.Fatalf("WaitSynced after the partition: %v", err)
	}
}

// OnWritten is called once per acknowledged Put, with the value etcd then holds, and
// never for a delete.
func TestWriterOnWritten(t *testing.T) {
	_, direct := startEtcd(t)
	type call struct{ key, value, inStore string }
	var (
		mu    sync.Mutex
		calls []call
	)
	w := newWriter(t, WriterOptions{Client: direct, OnWritten: func(key string, value []byte) {
		// Called after the Put returned: etcd holds the value.
		got := groundTruth(t, direct, key)[key]
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{key, string(value), got})
	}})
	startWriter(t, w)
	const key = "/test/onwritten/k"
	w.Upsert(key, []byte("v1"))
	flush(t, w)
	w.Upsert(key, []byte("v1")) // unchanged: no Put, no call
	w.Delete(key)
	flush(t, w)

	mu.Lock()
	defer mu.Unlock()
	if want := []call{{key, "v1", "v1"}}; !slices.Equal(calls, want) {
		t.Errorf("OnWritten calls %+v, want %+v", calls, want)
	}
}
