package xds

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

func TestFailbackHold(t *testing.T) {
	policy := &model.Policy{FailbackHold: metav1.Duration{Duration: 10 * time.Second}}
	target := func(aHealthy, bHealthy int) Target {
		l := func(zone string, n int) Locality {
			loc := Locality{Cluster: "alpha", Zone: zone, Total: 2}
			for range n {
				loc.Healthy = append(loc.Healthy, Endpoint{Address: "10.0.0.1", Port: 80})
			}
			return loc
		}
		return Target{Hostname: "h", Port: 80, Policy: policy, Localities: []Locality{l("a", aHealthy), l("b", bHealthy)}}
	}
	healthyIn := func(ts Target, zone string) int {
		for _, l := range ts.Localities {
			if l.Zone == zone {
				return len(l.Healthy)
			}
		}
		return -1
	}
	f := newFailback()
	t0 := time.Unix(1000, 0)
	for name, step := range []struct {
		at           time.Duration
		a, b         int
		wantA, wantB int
		wantHoldEnd  time.Duration // 0: none
	}{
		{at: 0, a: 2, b: 2, wantA: 2, wantB: 2},                                              // healthy from the start: no hold
		{at: time.Second, a: 0, b: 2, wantA: 0, wantB: 2},                                    // a goes down
		{at: 2 * time.Second, a: 2, b: 2, wantA: 0, wantB: 2, wantHoldEnd: 12 * time.Second}, // a recovers: held
		{at: 11 * time.Second, a: 2, b: 2, wantA: 0, wantB: 2, wantHoldEnd: 12 * time.Second},
		{at: 12 * time.Second, a: 2, b: 2, wantA: 2, wantB: 2}, // hold over
		{at: 13 * time.Second, a: 0, b: 0, wantA: 0, wantB: 0},
		{at: 14 * time.Second, a: 2, b: 0, wantA: 2, wantB: 0}, // recovering, but all there is: not held
	} {
		got, end := f.apply(target(step.a, step.b), t0.Add(step.at))
		if a, b := healthyIn(got, "a"), healthyIn(got, "b"); a != step.wantA || b != step.wantB {
			t.Fatalf("step %d: healthy a=%d b=%d, want %d %d", name, a, b, step.wantA, step.wantB)
		}
		var wantEnd time.Time
		if step.wantHoldEnd > 0 {
			wantEnd = t0.Add(step.wantHoldEnd)
		}
		if !end.Equal(wantEnd) {
			t.Fatalf("step %d: hold ends %v, want %v", name, end, wantEnd)
		}
	}
}
