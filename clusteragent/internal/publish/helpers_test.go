package publish

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

// waitFor bounds every condition a test waits on: generous, as a loaded CI machine
// can stall an informer for seconds.
const waitFor = 30 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// sinkOp is one call a recordingSink received.
type sinkOp struct {
	Op  string // "upsert", "delete", "synced"
	Key string
}

// recordingSink stands in for the etcd writer (tested against real etcd in
// internal/etcd/kvstore): it keeps the state its calls describe, and every call.
type recordingSink struct {
	// view is told about every change, as a real view would see it in etcd; calls
	// before it was opened are recorded as early.
	view *fakeView

	mu     sync.Mutex
	state  map[string][]byte
	ops    []sinkOp
	early  []sinkOp
	atSync map[string][]byte // state when MarkSynced was called
}

func newRecordingSink(view *fakeView) *recordingSink {
	return &recordingSink{view: view, state: map[string][]byte{}}
}

func (s *recordingSink) record(op sinkOp) {
	s.ops = append(s.ops, op)
	if !s.view.released.Load() {
		s.early = append(s.early, op)
	}
	s.view.apply(op)
}

func (s *recordingSink) Upsert(key string, value []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.record(sinkOp{"upsert", key})
	s.state[key] = value
}

func (s *recordingSink) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.record(sinkOp{"delete", key})
	delete(s.state, key)
}

func (s *recordingSink) MarkSynced() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.record(sinkOp{"synced", ""})
	s.atSync = maps.Clone(s.state)
}

// synced returns the state at MarkSynced, or nil before it.
func (s *recordingSink) synced() map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.atSync
}

func (s *recordingSink) calls() (ops, early []sinkOp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ops), slices.Clone(s.early)
}

func (s *recordingSink) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.state))
}

// value returns the current value of key; nil when the key is not set.
func (s *recordingSink) value(key string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state[key]
}

// histogramCount returns the number of observations of vec's series with the given
// label values (in the order of its labels).
func histogramCount(t *testing.T, vec *prometheus.HistogramVec, labels ...string) uint64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(vec)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			got := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				got = append(got, l.GetValue())
			}
			// Gather sorts labels by name: "cluster" < "stage", the order of the vecs.
			if slices.Equal(got, labels) {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// get decodes the current value of key; nil when the key is not set.
func (s *recordingSink) get(t *testing.T, key string) *model.ServiceEndpoints {
	t.Helper()
	s.mu.Lock()
	v, ok := s.state[key]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	rec, err := model.Decode(key, v)
	if err != nil {
		t.Fatalf("published value of %s does not decode: %v", key, err)
	}
	return rec.(*model.ServiceEndpoints)
}

// fakeView stands in for the view of the hub's etcd (tested in internal/etcd/view).
type fakeView struct {
	mu        sync.Mutex
	globals   []model.GlobalService
	published []string
	traffic   []*model.TrafficPolicy

	waitOnce sync.Once
	waiting  chan struct{} // closed when WaitSynced is first called
	release  chan struct{} // WaitSynced returns once it is closed
	released atomic.Bool
}

func newFakeView(globals []model.GlobalService, published []string) *fakeView {
	return &fakeView{globals: globals, published: published, waiting: make(chan struct{}), release: make(chan struct{})}
}

func (v *fakeView) GlobalServices() []model.GlobalService {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.globals)
}

func (v *fakeView) PublishedServices() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.published)
}

func (v *fakeView) WaitSynced(ctx context.Context) error {
	v.waitOnce.Do(func() { close(v.waiting) })
	select {
	case <-v.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TrafficPolicies makes fakeView a policyView.
func (v *fakeView) TrafficPolicies() []*model.TrafficPolicy {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.traffic)
}

func (v *fakeView) setTraffic(tps ...*model.TrafficPolicy) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.traffic = tps
}

func (v *fakeView) setGlobals(globals []model.GlobalService) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.globals = globals
}

// apply updates PublishedServices after a Sink call.
func (v *fakeView) apply(op sinkOp) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch op.Op {
	case "upsert":
		if !slices.Contains(v.published, op.Key) {
			v.published = append(v.published, op.Key)
		}
	case "delete":
		v.published = slices.DeleteFunc(v.published, func(k string) bool { return k == op.Key })
	}
}

// open releases WaitSynced.
func (v *fakeView) open() {
	v.released.Store(true)
	close(v.release)
}

// describe summarises a record for failure messages.
func describe(rec *model.ServiceEndpoints) string {
	if rec == nil {
		return "<not published>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "exportedBy=%v endpoints=[", rec.ExportedBy)
	for i, e := range rec.Endpoints {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s(zone=%q ready=%t serving=%t terminating=%t ref=%s ports=%v)", e.Address, e.Zone, e.Ready, e.Serving, e.Terminating, e.TargetRef, e.Ports)
	}
	b.WriteString("]")
	return b.String()
}
