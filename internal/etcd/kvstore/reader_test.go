package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshfed/meshfed/internal/dev/testutil"
)

// newStringReader returns a Reader of prefix through c that records into a
// new recorder, with short retry delays.
func newStringReader(t *testing.T, c ReadClient, prefix string, pageSize int64) (*Reader[string], *recorder) {
	t.Helper()
	rec := newRecorder()
	r, err := NewReader(ReaderOptions[string]{
		Client:         c,
		Prefix:         prefix,
		Decode:         decodeString,
		Observer:       rec,
		RetryBaseDelay: 20 * time.Millisecond,
		RetryMaxDelay:  time.Second,
		PageSize:       pageSize,
	})
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	return r, rec
}

// changeWhileCut makes every kind of change a disconnected reader must catch
// up with, writing a unique value each time, plus noise outside the prefix.
// The prefix holds k00..k09 before.
func changeWhileCut(t *testing.T, c *clientv3.Client, prefix string) {
	t.Helper()
	mustPut(t, c, prefix+"k00", "v1-k00")
	mustPut(t, c, prefix+"k00", "v2-k00") // updated twice: only the last counts
	mustPut(t, c, prefix+"k01", "v1-k01")
	mustDelete(t, c, prefix+"k02")
	mustDelete(t, c, prefix+"k03")
	mustDelete(t, c, prefix+"k04")
	mustPut(t, c, prefix+"k04", "v1-k04") // deleted and re-created
	mustPut(t, c, prefix+"k10", "v0-k10") // new
	mustPut(t, c, prefix+"k11", "v0-k11")
	mustDelete(t, c, prefix+"k11") // created and deleted while cut: never seen
	// A sibling whose name extends the prefix's last segment is not ours.
	mustPut(t, c, prefix[:len(prefix)-1]+"-other/k00", "noise")
}

func seed(t *testing.T, c *clientv3.Client, prefix string, n int) {
	t.Helper()
	for i := range n {
		key := fmt.Sprintf("%sk%02d", prefix, i)
		mustPut(t, c, key, "v0-"+key[len(prefix):])
	}
}

// Acceptance (a): a reader cut off from etcd while keys change ends with
// exactly etcd's state, without a duplicate delivery.
func TestReaderSurvivesDisconnect(t *testing.T) {
	srv, direct := startEtcd(t)
	px := newProxy(t, srv.Endpoints()[0])
	viaProxy := newClient(t, px.URL())
	const prefix = "/test/disconnect/"
	seed(t, direct, prefix, 10)

	r, rec := newStringReader(t, viaProxy, prefix, 0)
	testutil.Run(t, "reader", r.Run)
	waitMirrors(t, rec, direct, prefix)

	if n := px.Cut(); n == 0 {
		t.Fatal("cut closed no connection: the reader was not connected through the proxy")
	}
	changeWhileCut(t, direct, prefix)
	px.Restore()

	waitMirrors(t, rec, direct, prefix)
	if d := rec.duplicates(); len(d) > 0 {
		t.Fatalf("delivered more than once: %v", d)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, key := range []string{"k02", "k03"} {
		if rec.deletes[prefix+key] != 1 {
			t.Errorf("OnDelete(%s) called %d times, want 1", key, rec.deletes[prefix+key])
		}
	}
	// k11 lived only while the reader was cut off. A resumed watch replays
	// its creation and deletion; a re-list never sees it. Either way, the
	// observer is told of its deletion exactly as often as of its creation.
	if got, want := rec.deletes[prefix+"k11"], rec.delivered[prefix+"k11=v0-k11"]; got != want {
		t.Errorf("k11: %d deletes for %d creations", got, want)
	}
}

// Acceptance (b): as (a), but the reader's watch position is compacted away
// while it is cut off, which forces the re-list, mark-stale and prune path.
func TestReaderRelistsAfterCompaction(t *testing.T) {
	srv, direct := startEtcd(t)
	px := newProxy(t, srv.Endpoints()[0])
	viaProxy := newClient(t, px.URL())
	const prefix = "/test/compaction/"
	seed(t, direct, prefix, 10)

	// A small page size makes the re-list span several pages.
	r, rec := newStringReader(t, viaProxy, prefix, 3)
	testutil.Run(t, "reader", r.Run)
	waitMirrors(t, rec, direct, prefix)
	relists := func() float64 { return promtest.ToFloat64(relistsTotal.WithLabelValues(prefix, reasonCompacted)) }
	before := relists()

	px.Cut()
	changeWhileCut(t, direct, prefix)
	resp, err := direct.Get(testContext(t), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("get revision: %v", err)
	}
	if _, err := direct.Compact(testContext(t), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact: %v", err)
	}
	px.Restore()

	waitMirrors(t, rec, direct, prefix)
	testutil.Eventually(t, waitFor, "a re-list after compaction", testutil.Check(func() (bool, string) {
		got := relists() - before
		return got >= 1, fmt.Sprintf("%v compaction re-lists", got)
	}))

	if d := rec.duplicates(); len(d) > 0 {
		t.Fatalf("delivered more than once: %v", d)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.synced < 2 {
		t.Errorf("OnSynced called %d times, want one per list (>= 2)", rec.synced)
	}
	// Unchanged keys are in the re-list at their old ModRevision: not
	// delivered again (the duplicates check), and still present.
	if rec.state[prefix+"k05"] != "v0-k05" {
		t.Errorf("unchanged key lost: %q", rec.state[prefix+"k05"])
	}
}

// A list larger than a page is read at one revision and delivered whole.
func TestReaderPaginatedList(t *testing.T) {
	_, direct := startEtcd(t)
	const prefix = "/test/pages/"
	seed(t, direct, prefix, 25)
	r, rec := newStringReader(t, direct, prefix, 4)
	testutil.Run(t, "reader", r.Run)
	waitMirrors(t, rec, direct, prefix)
	testutil.Eventually(t, waitFor, "OnSynced", testutil.Check(func() (bool, string) { return rec.syncs() >= 1, "not synced" }))

	// The watch picks up where the list left off.
	mustPut(t, direct, prefix+"k99", "v0-k99")
	mustDelete(t, direct, prefix+"k00")
	waitMirrors(t, rec, direct, prefix)
	if d := rec.duplicates(); len(d) > 0 {
		t.Fatalf("delivered more than once: %v", d)
	}
}

type endpoint struct {
	Port int `json:"port"`
}

func decodeEndpoint(_ string, value []byte) (endpoint, error) {
	var e endpoint
	if err := json.Unmarshal(value, &e); err != nil {
		return endpoint{}, fmt.Errorf("decode endpoint: %w", err)
	}
	if e.Port == 0 {
		return endpoint{}, errors.New("decode endpoint: port is required")
	}
	return e, nil
}

// Acceptance (e): a malformed value is skipped and counted; the key keeps its
// last good value, other keys are untouched, and a re-list neither prunes it
// nor counts it again.
func TestReaderSkipsMalformedValues(t *testing.T) {
	srv, direct := startEtcd(t)
	px := newProxy(t, srv.Endpoints()[0])
	viaProxy := newClient(t, px.URL())
	const prefix = "/test/malformed/"
	mustPut(t, direct, prefix+"a", `{"port":1}`)
	mustPut(t, direct, prefix+"b", `{"port":2}`)
	mustPut(t, direct, prefix+"bad-from-start", `not json`)

	var (
		state   = newRecorder()
		decoded = func(key string, e endpoint) { state.OnUpsert(key, fmt.Sprint(e.Port)) }
	)
	r, err := NewReader(ReaderOptions[endpoint]{
		Client:         viaProxy,
		Prefix:         prefix,
		Decode:         decodeEndpoint,
		Observer:       ObserverFuncs[endpoint]{Upsert: decoded, Delete: state.OnDelete, Synced: state.OnSynced},
		RetryBaseDelay: 20 * time.Millisecond,
		RetryMaxDelay:  time.Second,
	})
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	// Counters are process-wide: count from here (tests may run with -count).
	base := promtest.ToFloat64(decodeErrorsTotal.WithLabelValues(prefix))
	decodeErrors := func() float64 { return promtest.ToFloat64(decodeErrorsTotal.WithLabelValues(prefix)) - base }
	testutil.Run(t, "reader", r.Run)

	want := map[string]string{prefix + "a": "1", prefix + "b": "2"}
	expect := func(what string, errors float64) {
		t.Helper()
		testutil.Eventually(t, waitFor, what, testutil.Check(func() (bool, string) {
			d := diff(state.snapshot(), want)
			return d == "" && decodeErrors() == errors, fmt.Sprintf("state diff %q, %v decode errors (want %v)", d, decodeErrors(), errors)
		}))

	}
	expect("initial list without the malformed key", 1)

	mustPut(t, direct, prefix+"a", `{"port":`)
	expect("malformed update skipped, good value kept", 2)

	// Force a re-list (compaction while cut off): the malformed versions are
	// not decoded again, and a is not pruned.
	px.Cut()
	mustPut(t, direct, prefix+"c", `{"port":3}`)
	// Compacting at the latest revision removes the reader's resume point
	// only if something was written after the first missed revision.
	mustPut(t, direct, "/test/noise", "x")
	resp, err := direct.Compact(testContext(t), mustRevision(t, direct))
	if err != nil || resp == nil {
		t.Fatalf("compact: %v", err)
	}
	px.Restore()
	want[prefix+"c"] = "3"
	testutil.Eventually(t, waitFor, "re-list", testutil.Check(func() (bool, string) {
		return state.syncs() >= 2, fmt.Sprintf("%d syncs", state.syncs())
	}))

	expect("re-list keeps the good value of a malformed key", 2)

	mustPut(t, direct, prefix+"a", `{"port":10}`)
	want[prefix+"a"] = "10"
	expect("a good value after a malformed one is delivered", 2)

	mustDelete(t, direct, prefix+"a")
	mustDelete(t, direct, prefix+"bad-from-start")
	delete(want, prefix+"a")
	expect("a deleted", 2)
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.deletes[prefix+"bad-from-start"] != 0 {
		t.Error("OnDelete for a key whose value was never delivered")
	}
	if state.deletes[prefix+"b"] != 0 || state.deletes[prefix+"a"] != 1 {
		t.Errorf("deletes = %v, want only a, once", state.deletes)
	}
}

func mustRevision(t *testing.T, c *clientv3.Client) int64 {
	t.Helper()
	resp, err := c.Get(testContext(t), "/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("get revision: %v", err)
	}
	return resp.Header.Revision
}

// failingReadClient fails every List and counts the attempts.
type failingReadClient struct {
	gets chan struct{}
}

func (f *failingReadClient) Get(context.Context, string, ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	f.gets <- struct{}{}
	return nil, errors.New("etcd unreachable")
}

func (f *failingReadClient) Watch(context.Context, string, ...clientv3.OpOption) clientv3.WatchChan {
	panic("watch without a successful list")
}

// Failed lists are retried after exponentially growing delays measured on the
// injected clock: the reader never busy-loops.
func TestReaderBacksOffOnListErrors(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	client := &failingReadClient{gets: make(chan struct{}, 100)}
	r, err := NewReader(ReaderOptions[string]{
		Client:         client,
		Prefix:         "/test/backoff/",
		Decode:         decodeString,
		Observer:       ObserverFuncs[string]{},
		Clock:          clk,
		RetryBaseDelay: time.Second,
		RetryMaxDelay:  4 * time.Second,
	})
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	testutil.Run(t, "reader", r.Run)

	attempt := func(n int) {
		t.Helper()
		select {
		case <-client.gets:
		case <-time.After(waitFor):
			t.Fatalf("list attempt %d did not happen", n)
		}
	}
	noAttempt := func(n int) {
		t.Helper()
		select {
		case <-client.gets:
			t.Fatalf("list attempt %d happened before its delay passed", n)
		default:
		}
	}
	waitTimer := func() {
		t.Helper()
		testutil.Eventually(t, waitFor, "reader to wait on the clock", testutil.Check(func() (bool, string) { return clk.HasWaiters(), "no timer" }))
	}

	attempt(1)
	// Delays (without jitter): 1s, 2s, 4s, 4s. Jitter adds up to 10%.
	for i, delay := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		waitTimer()
		clk.Step(delay - time.Millisecond)
		noAttempt(i + 2)
		clk.Step(delay/10 + 2*time.Millisecond)
		attempt(i + 2)
	}
}

func TestNewReaderValidates(t *testing.T) {
	ok := ReaderOptions[string]{Client: &failingReadClient{}, Prefix: "/p/", Decode: decodeString, Observer: ObserverFuncs[string]{}}
	for name, mutate := range map[string]func(*ReaderOptions[string]){
		"no client":   func(o *ReaderOptions[string]) { o.Client = nil },
		"no prefix":   func(o *ReaderOptions[string]) { o.Prefix = "" },
		"no decode":   func(o *ReaderOptions[string]) { o.Decode = nil },
		"no observer": func(o *ReaderOptions[string]) { o.Observer = nil },
	} {
		o := ok
		mutate(&o)
		if _, err := NewReader(o); err == nil {
			t.Errorf("%s: NewReader succeeded", name)
		}
	}
	ok.Client = &failingReadClient{gets: make(chan struct{}, 1)}
	r, err := NewReader(ok)
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Run(ctx); err != nil {
		t.Fatalf("Run with a done context: %v", err)
	}
	if err := r.Run(ctx); err == nil {
		t.Fatal("second Run succeeded")
	}
}

func TestObserverFuncsSkipsNil(t *testing.T) {
	var o Observer[int] = ObserverFuncs[int]{}
	o.OnUpsert("k", 1)
	o.OnDelete("k")
	o.OnSynced()
}
