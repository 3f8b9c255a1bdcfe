package etcdmaint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshfed/meshfed/internal/dev/testutil"
	"github.com/meshfed/meshfed/internal/etcd/embedetcd"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// etcdServer starts a real embedded etcd with the given quota (0: default) and no
// auto-compaction, as an external etcd would be, and returns a client of it.
func etcdServer(t *testing.T, quota int64) (*embedetcd.Server, *clientv3.Client) {
	t.Helper()
	s, err := embedetcd.Start(ctx(t), embedetcd.Options{
		DataDir: t.TempDir(), UnsafeNoFsync: true, ZapLogger: zap.NewNop(), QuotaBackendBytes: quota,
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(s.Close)
	c, err := s.Client()
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return s, c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// events records the reasons of the Events a Maintainer records.
type events struct {
	mu      sync.Mutex
	reasons []string
	notes   []string
}

func (e *events) Eventf(_, _ runtime.Object, _, reason, _, note string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reasons = append(e.reasons, reason)
	e.notes = append(e.notes, fmt.Sprintf(note, args...))
}

func (e *events) has(reason string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Contains(e.reasons, reason)
}

func newMaintainer(t *testing.T, s *embedetcd.Server, c *clientv3.Client, mutate func(*Options)) (*Maintainer, *events) {
	t.Helper()
	ev := &events{}
	o := Options{
		Client: c, Endpoints: s.Endpoints(), Logger: testr.New(t),
		Recorder: ev, Regarding: &corev1.ObjectReference{Kind: "ConfigMap", Namespace: "meshfed-system", Name: "meshfed-hub"},
	}
	if mutate != nil {
		mutate(&o)
	}
	m, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m, ev
}

func dbStatus(t *testing.T, c *clientv3.Client, s *embedetcd.Server) *clientv3.StatusResponse {
	t.Helper()
	st, err := c.Status(ctx(t), s.Endpoints()[0])
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

func isNoSpace(err error) bool {
	return errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrGRPCNoSpace)
}

// value is a distinct value of n bytes for (key, round).
func value(key string, round, n int) string {
	prefix := fmt.Sprintf("%s@%d:", key, round)
	return prefix + strings.Repeat("x", n-len(prefix))
}

// checkLatest fails unless every key holds exactly its value in want, or its
// value in ambiguous: a write that returned NOSPACE may have been applied (etcd
// applies it, then reports the quota exceeded), so its key may hold either.
func checkLatest(t *testing.T, c *clientv3.Client, prefix string, want, ambiguous map[string]string) {
	t.Helper()
	resp, err := c.Get(ctx(t), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("get %s: %v", prefix, err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	if len(got) != len(want) {
		t.Fatalf("%d keys under %s, want %d", len(got), prefix, len(want))
	}
	for k, v := range want {
		if got[k] != v && (ambiguous == nil || got[k] != ambiguous[k]) {
			t.Fatalf("key %s holds %.20q..., want %.20q...", k, got[k], v)
		}
	}
}

// An etcd with a deliberately small quota is written until it raises NOSPACE; one
// maintenance check compacts, defragments and disarms it: writes succeed again,
// the latest value of every key written before the alarm is intact, and the
// database shrank.
func TestNoSpaceRecovery(t *testing.T) {
	const quota = 16 << 20
	s, c := etcdServer(t, quota)
	m, ev := newMaintainer(t, s, c, nil)

	// 20 keys rewritten with 64 KiB values: history, not live data, fills the
	// quota (live data is 1.3 MiB).
	latest, ambiguous := map[string]string{}, map[string]string{}
	var round int
	for full := false; !full; round++ {
		if round > 1000 {
			t.Fatal("no NOSPACE after 1000 rounds")
		}
		for i := range 20 {
			k := fmt.Sprintf("/meshfed/v1/k%02d", i)
			v := value(k, round, 64<<10)
			_, err := c.Put(ctx(t), k, v)
			if isNoSpace(err) {
				ambiguous[k] = v
				full = true
				break
			}
			if err != nil {
				t.Fatalf("put: %v", err)
			}
			latest[k] = v
		}
	}
	alarms, err := c.AlarmList(ctx(t))
	if err != nil || len(alarms.Alarms) != 1 || alarms.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Fatalf("alarms = %v, %v; want one NOSPACE", alarms, err)
	}
	if _, err := c.Put(ctx(t), "/meshfed/v1/after", "x"); !isNoSpace(err) {
		t.Fatalf("put under NOSPACE: err = %v, want no space", err)
	}
	before := dbStatus(t, c, s)
	recovered := promtest.ToFloat64(recoveries.WithLabelValues("ok"))
	t.Logf("NOSPACE after %d rounds: db %s (in use %s), quota %s", round, mib(before.DbSize), mib(before.DbSizeInUse), mib(quota))

	start := time.Now()
	if err := m.Check(ctx(t)); err != nil {
		t.Fatalf("Check: %v", err)
	}
	t.Logf("recovery took %s", time.Since(start).Round(time.Millisecond))

	if alarms, err := c.AlarmList(ctx(t)); err != nil || len(alarms.Alarms) != 0 {
		t.Fatalf("alarms after recovery = %v, %v; want none", alarms.Alarms, err)
	}
	checkLatest(t, c, "/meshfed/v1/k", latest, ambiguous)
	if _, err := c.Put(ctx(t), "/meshfed/v1/after", "x"); err != nil {
		t.Fatalf("put after recovery: %v", err)
	}
	after := dbStatus(t, c, s)
	t.Logf("db %s -> %s", mib(before.DbSize), mib(after.DbSize))
	if after.DbSize >= before.DbSize/2 {
		t.Errorf("db size %s after recovery, want under half of %s", mib(after.DbSize), mib(before.DbSize))
	}
	if got := promtest.ToFloat64(recoveries.WithLabelValues("ok")) - recovered; got != 1 {
		t.Errorf("ok recoveries counted %v, want 1", got)
	}
	if got := promtest.ToFloat64(alarmsActive.WithLabelValues("NOSPACE")); got != 0 {
		t.Errorf("NOSPACE alarms gauge %v after recovery, want 0", got)
	}
	for _, r := range []string{ReasonNoSpace, ReasonDefragmented, ReasonNoSpaceRecovered} {
		if !ev.has(r) {
			t.Errorf("no %s Event; got %v", r, ev.reasons)
		}
	}
}

// When live data alone fills the quota, recovery leaves the alarm raised (it
// would come back at the next write) and says so, and keeps every key.
func TestNoSpaceLiveDataFull(t *testing.T) {
	const quota = 16 << 20
	s, c := etcdServer(t, quota)
	m, ev := newMaintainer(t, s, c, nil)
	latest := map[string]string{}
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("no NOSPACE after 1000 keys")
		}
		k := fmt.Sprintf("/meshfed/v1/k%04d", i)
		v := value(k, 0, 64<<10)
		_, err := c.Put(ctx(t), k, v)
		if isNoSpace(err) {
			// It may have been applied: keep it out of the comparison.
			if _, err := c.Delete(ctx(t), k); err != nil {
				t.Fatalf("delete under NOSPACE: %v", err)
			}
			break
		}
		if err != nil {
			t.Fatalf("put: %v", err)
		}
		latest[k] = v
	}
	if err := m.Check(ctx(t)); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if alarms, err := c.AlarmList(ctx(t)); err != nil || len(alarms.Alarms) != 1 {
		t.Fatalf("alarms = %v, %v; want NOSPACE still raised", alarms, err)
	}
	if !ev.has(ReasonQuotaExhausted) {
		t.Errorf("no %s Event; got %v", ReasonQuotaExhausted, ev.reasons)
	}
	checkLatest(t, c, "/meshfed/v1/k", latest, nil)

	// Deleting data (allowed under NOSPACE) lets the next check disarm.
	// etcd checks the quota against the size of the last committed batch, so
	// a fast writer overshoots it: keep 100 keys (6.4 MiB), delete the rest.
	if _, err := c.Delete(ctx(t), "/meshfed/v1/k0100", clientv3.WithRange("/meshfed/v1/l")); err != nil {
		t.Fatalf("delete under NOSPACE: %v", err)
	}
	for k := range latest {
		if k >= "/meshfed/v1/k0100" {
			delete(latest, k)
		}
	}
	if err := m.Check(ctx(t)); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if alarms, err := c.AlarmList(ctx(t)); err != nil || len(alarms.Alarms) != 0 {
		t.Fatalf("alarms after deleting data = %v, %v; want none", alarms, err)
	}
	checkLatest(t, c, "/meshfed/v1/k", latest, nil)
}

// External mode: each tick compacts to the revision the previous tick saw, so
// history older than one interval goes and history younger stays.
func TestCompactTick(t *testing.T) {
	s, c := etcdServer(t, 0)
	m, _ := newMaintainer(t, s, c, func(o *Options) { o.CompactInterval = 5 * time.Minute })
	put := func(k, v string) int64 {
		t.Helper()
		resp, err := c.Put(ctx(t), k, v)
		if err != nil {
			t.Fatalf("put: %v", err)
		}
		return resp.Header.Revision
	}
	get := func(rev int64) error {
		_, err := c.Get(ctx(t), "/a", clientv3.WithRev(rev))
		return err
	}

	r1 := put("/a", "1")
	if err := m.CompactTick(ctx(t)); err != nil { // observes r1, compacts nothing
		t.Fatalf("tick 1: %v", err)
	}
	if err := get(r1 - 1); err != nil {
		t.Fatalf("first tick compacted: get at %d: %v", r1-1, err)
	}
	r2 := put("/a", "2")
	put("/b", "1")
	if err := m.CompactTick(ctx(t)); err != nil { // compacts to r1
		t.Fatalf("tick 2: %v", err)
	}
	if err := get(r1 - 1); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("get at %d after compaction to %d: err = %v, want ErrCompacted", r1-1, r1, err)
	}
	for _, rev := range []int64{r1, r2} {
		if err := get(rev); err != nil {
			t.Fatalf("get at %d, younger than one interval: %v", rev, err)
		}
	}
	if got := promtest.ToFloat64(compactedRevision); got != float64(r1) {
		t.Errorf("compacted revision gauge %v, want %d", got, r1)
	}
	put("/a", "3")
	if err := m.CompactTick(ctx(t)); err != nil { // compacts to r2+1
		t.Fatalf("tick 3: %v", err)
	}
	if err := get(r2); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("get at %d: err = %v, want ErrCompacted", r2, err)
	}
	checkLatest(t, c, "/", map[string]string{"/a": "3", "/b": "1"}, nil)
}

// The loop, driven by an injected clock: it checks at start, and compacts on its
// interval.
func TestStartCompactsOnInterval(t *testing.T) {
	s, c := etcdServer(t, 0)
	clk := clocktesting.NewFakeClock(time.Now())
	m, _ := newMaintainer(t, s, c, func(o *Options) {
		o.CompactInterval = 5 * time.Minute
		o.CheckInterval = time.Hour
		o.Clock = clk
	})
	first, err := c.Put(ctx(t), "/a", "1")
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	ep := s.Endpoints()[0]
	testutil.Run(t, "maintainer", m.Start)
	testutil.Eventually(t, 10*time.Second, "the first check reported the db size", func() error {
		if promtest.ToFloat64(dbSize.WithLabelValues(ep)) <= 0 {
			return errors.New("db size gauge unset")
		}
		return nil
	})
	// Each step is one compaction tick; the second one compacts to what the
	// first saw. A tick the loop has not yet taken is not lost, only merged
	// with the next, so step until the history is gone.
	n := 1
	testutil.Eventually(t, 30*time.Second, "history before the first tick compacted", func() error {
		n++
		if _, err := c.Put(ctx(t), "/a", fmt.Sprint(n)); err != nil {
			return err
		}
		clk.Step(5 * time.Minute)
		_, err := c.Get(ctx(t), "/a", clientv3.WithRev(first.Header.Revision))
		if !errors.Is(err, rpctypes.ErrCompacted) {
			return fmt.Errorf("get at %d: err = %v, want ErrCompacted", first.Header.Revision, err)
		}
		return nil
	})
	checkLatest(t, c, "/a", map[string]string{"/a": fmt.Sprint(n)}, nil)
}

// fragment writes and deletes data, compacts physically, and returns the status:
// a database file mostly free pages. keep is written and left in place.
func fragment(t *testing.T, s *embedetcd.Server, c *clientv3.Client, keep map[string]string) *clientv3.StatusResponse {
	t.Helper()
	for k, v := range keep {
		if _, err := c.Put(ctx(t), k, v); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	for i := range 64 {
		k := fmt.Sprintf("/tmp/%d", i)
		if _, err := c.Put(ctx(t), k, value(k, 0, 256<<10)); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	resp, err := c.Delete(ctx(t), "/tmp/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := c.Compact(ctx(t), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact: %v", err)
	}
	// bbolt frees the compacted pages only at a later commit, once no read
	// transaction can still see them: write until it does.
	var st *clientv3.StatusResponse
	testutil.Eventually(t, 10*time.Second, "compacted pages reported free", func() error {
		if _, err := c.Put(ctx(t), "/commit", "x"); err != nil {
			return err
		}
		st = dbStatus(t, c, s)
		if st.DbSizeInUse > st.DbSize/4 {
			return fmt.Errorf("db %s, in use %s", mib(st.DbSize), mib(st.DbSizeInUse))
		}
		return nil
	})
	return st
}

// Defragmentation runs when the free pages pass both thresholds, not before: the
// database shrinks and every live key stays.
func TestDefragWhenFragmented(t *testing.T) {
	s, c := etcdServer(t, 0)
	keep := map[string]string{"/meshfed/v1/x": "1", "/meshfed/v1/y": value("y", 0, 100<<10)}
	before := fragment(t, s, c, keep)
	t.Logf("fragmented: db %s, in use %s", mib(before.DbSize), mib(before.DbSizeInUse))
	ep := s.Endpoints()[0]
	defragged := func() float64 { return promtest.ToFloat64(defrags.WithLabelValues(ep, "fragmented", "ok")) }
	base := defragged()

	// Free space under DefragMinFreeBytes: left alone.
	m, ev := newMaintainer(t, s, c, func(o *Options) { o.DefragMinFreeBytes = 1 << 30 })
	if err := m.Check(ctx(t)); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if st := dbStatus(t, c, s); st.DbSize != before.DbSize || defragged() != base || ev.has(ReasonDefragmented) {
		t.Fatalf("defragmented below the threshold: db %s -> %s", mib(before.DbSize), mib(st.DbSize))
	}

	m, ev = newMaintainer(t, s, c, func(o *Options) { o.DefragMinFreeBytes = 4 << 20 })
	start := time.Now()
	if err := m.Check(ctx(t)); err != nil {
		t.Fatalf("Check: %v", err)
	}
	took := time.Since(start)
	after := dbStatus(t, c, s)
	t.Logf("defragmented in %s: db %s -> %s", took.Round(time.Millisecond), mib(before.DbSize), mib(after.DbSize))
	if after.DbSize >= before.DbSize/2 {
		t.Errorf("db %s after defragmentation, want under half of %s", mib(after.DbSize), mib(before.DbSize))
	}
	if defragged() != base+1 || !ev.has(ReasonDefragmented) {
		t.Errorf("defragmentation not reported: counter %v (was %v), events %v", defragged(), base, ev.reasons)
	}
	if got := promtest.ToFloat64(dbSize.WithLabelValues(ep)); got != float64(after.DbSize) {
		t.Errorf("db size gauge %v, want %d", got, after.DbSize)
	}
	checkLatest(t, c, "/meshfed/v1/", keep, nil)

	// Nothing left to reclaim: the next check does not defragment again.
	if err := m.Check(ctx(t)); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if defragged() != base+1 {
		t.Errorf("defragmented again with nothing to reclaim")
	}
}

func TestOptionsChecked(t *testing.T) {
	s, c := etcdServer(t, 0)
	for name, mutate := range map[string]func(*Options){
		"no client":             func(o *Options) { o.Client = nil },
		"no endpoints":          func(o *Options) { o.Endpoints = nil },
		"negative interval":     func(o *Options) { o.CompactInterval = -time.Second },
		"ratio 1":               func(o *Options) { o.DefragMinRatio = 1 },
		"recorder, nothing re.": func(o *Options) { o.Regarding = nil },
	} {
		t.Run(name, func(t *testing.T) {
			o := Options{Client: c, Endpoints: s.Endpoints(), Recorder: &events{}, Regarding: &corev1.ObjectReference{}}
			mutate(&o)
			if _, err := New(o); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}
