package xds

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

// histogram returns the count and sum of propagationSeconds for cluster.
func histogram(t *testing.T, cluster string) (uint64, float64) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(propagationSeconds)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source_cluster" && l.GetValue() == cluster {
					return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	return 0, 0
}

// TestPropagation: each push observes, per source cluster, the age of the earliest
// change written since the previous push, once; absurd stamps are counted apart and
// never observed.
func TestPropagation(t *testing.T) {
	// The collectors are package-level: every cluster name here is this test's own.
	const east, west, skewed, stale = "prop-east", "prop-west", "prop-skewed", "prop-stale"
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	rec := func(at time.Time) *model.ServiceEndpoints {
		return &model.ServiceEndpoints{Namespace: "shop", Name: "cart", ChangedAt: at}
	}
	var p propagation

	// Nothing written: a push observes nothing.
	observePropagation(p.take(), now)
	if n, _ := histogram(t, east); n != 0 {
		t.Fatalf("east observed %d figures before any change", n)
	}

	// Two changes of east, in any order: the earliest is the one a push observes.
	p.written(east, rec(now.Add(-30*time.Millisecond)))
	p.written(east, rec(now.Add(-80*time.Millisecond)))
	p.written(east, rec(now.Add(-10*time.Millisecond)))
	p.written(west, rec(now.Add(-2*time.Second)))
	// Unstamped and deleted records say nothing.
	p.written(west, rec(time.Time{}))
	p.written(west, nil)
	// The clocks disagree: east's change seems to come from the future, or from a
	// day ago.
	p.written(skewed, rec(now.Add(time.Second)))
	p.written(stale, rec(now.Add(-25*time.Hour)))
	observePropagation(p.take(), now)

	for _, c := range []struct {
		cluster string
		want    time.Duration
	}{{east, 80 * time.Millisecond}, {west, 2 * time.Second}} {
		n, sum := histogram(t, c.cluster)
		if n != 1 || time.Duration(sum*float64(time.Second)).Round(time.Millisecond) != c.want {
			t.Errorf("%s: %d figures summing to %vs, want one of %v", c.cluster, n, sum, c.want)
		}
	}
	for _, c := range []string{skewed, stale} {
		if n, _ := histogram(t, c); n != 0 {
			t.Errorf("%s: %d figures observed from an absurd stamp, want none", c, n)
		}
		if got := promtest.ToFloat64(propagationDiscarded.WithLabelValues(c)); got != 1 {
			t.Errorf("%s: %v figures discarded, want 1", c, got)
		}
	}

	// A push forgets what it observed: the next one observes only newer changes.
	observePropagation(p.take(), now.Add(time.Second))
	if n, _ := histogram(t, east); n != 1 {
		t.Errorf("east: %d figures after a push with no new change, want still 1", n)
	}
	p.written(east, rec(now.Add(time.Second)))
	observePropagation(p.take(), now.Add(time.Second+5*time.Millisecond))
	if n, sum := histogram(t, east); n != 2 || time.Duration(sum*float64(time.Second)).Round(time.Millisecond) != 85*time.Millisecond {
		t.Errorf("east: %d figures summing to %vs, want 2 summing to 85ms", n, sum)
	}
}
