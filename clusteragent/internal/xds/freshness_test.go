package xds

import (
	"maps"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfed/meshfed/clusteragent/internal/locality"
	"github.com/meshfed/meshfed/internal/etcd/model"
	"github.com/meshfed/meshfed/internal/etcd/view"
)

func TestFreshness(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	quick := &model.Policy{DemoteAfter: metav1.Duration{Duration: 10 * time.Second}, DropAfter: metav1.Duration{Duration: time.Minute}}
	live := &model.Heartbeat{Time: t0, TTL: 15}
	outage := func(start, end time.Time) func(from, to time.Time) time.Duration {
		return func(from, to time.Time) time.Duration {
			s, e := max(start.Unix(), from.Unix()), min(end.Unix(), to.Unix())
			return time.Duration(max(e-s, 0)) * time.Second
		}
	}
	tests := map[string]struct {
		cluster view.Cluster
		policy  *model.Policy
		now     time.Time
		offline func(from, to time.Time) time.Duration
		want    locality.State
	}{
		"written just now": {view.Cluster{Name: "b", Heartbeat: live, LastHeartbeat: t0}, quick, t0.Add(time.Second), nil, locality.Fresh},
		// The key outlives the last write by up to its lease's TTL (15s here): a
		// demoteAfter shorter than that is honoured all the same.
		"key still there, last write older than demoteAfter": {view.Cluster{Name: "b", Heartbeat: live, LastHeartbeat: t0}, quick,
			t0.Add(11 * time.Second), nil, locality.Stale},
		"key gone, older than dropAfter": {view.Cluster{Name: "b", LastHeartbeat: t0}, quick, t0.Add(61 * time.Second), nil, locality.Dropped},
		"default policy":                 {view.Cluster{Name: "b", LastHeartbeat: t0}, nil, t0.Add(31 * time.Second), nil, locality.Stale},
		// This agent could not read the hub for 100s: that says nothing about b.
		"lapse during a hub outage does not count": {view.Cluster{Name: "b", Heartbeat: live, LastHeartbeat: t0}, quick,
			t0.Add(105 * time.Second), outage(t0.Add(time.Second), t0.Add(101*time.Second)), locality.Fresh},
		"lapse after the outage counts": {view.Cluster{Name: "b", Heartbeat: live, LastHeartbeat: t0}, quick,
			t0.Add(115 * time.Second), outage(t0.Add(time.Second), t0.Add(101*time.Second)), locality.Stale},
		"an outage that lasts freezes": {view.Cluster{Name: "b", LastHeartbeat: t0}, quick,
			t0.Add(time.Hour), outage(t0.Add(time.Second), t0.Add(2*time.Hour)), locality.Fresh},
		"never seen: lapsed since the agent started": {view.Cluster{Name: "b"}, quick, t0.Add(11 * time.Second), nil, locality.Stale},
		"self is always fresh":                       {view.Cluster{Name: "a"}, quick, t0.Add(time.Hour), nil, locality.Fresh},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := Input{Self: "a", Since: t0, Now: tc.now, Offline: tc.offline}
			if got := freshness(in, tc.cluster, tc.policy); got != tc.want {
				t.Errorf("freshness = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestFreshnessStatesChangeOnlyOnTransitions: the server rebuilds when the states
// change, so a heartbeat that keeps a cluster fresh must leave them as they were.
func TestFreshnessStatesChangeOnlyOnTransitions(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	quick := &model.Policy{DemoteAfter: metav1.Duration{Duration: 10 * time.Second}, DropAfter: metav1.Duration{Duration: time.Minute}}
	states := func(lastBeat, now time.Time) map[string]string {
		return FreshnessStates(Input{Self: "a", Since: t0, Now: now}, map[string]time.Time{"a": {}, "b": lastBeat}, []*model.Policy{quick})
	}
	before := states(t0, t0.Add(time.Second))
	if after := states(t0.Add(5*time.Second), t0.Add(6*time.Second)); !maps.Equal(after, before) {
		t.Fatalf("a heartbeat that keeps b fresh changed the states: %q -> %q", before, after)
	}
	if stale := states(t0, t0.Add(12*time.Second)); maps.Equal(stale, before) {
		t.Fatalf("b demoted under the quick policy but the states did not change: %q", stale)
	}
}
