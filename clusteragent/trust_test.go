package clusteragent

import (
	"encoding/json"
	"testing"
	"time"
)

// The annotation's Since says since when the files hold their state: a sync that
// changes nothing keeps it, any change of intermediate, root or bundle moves it.
func TestWorkloadAnnotationSince(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := &WorkloadCertsStatus{Identities: 2, Intermediate: "i1", Root: "r1", Bundle: "b1"}
	since := func(a string) time.Time {
		t.Helper()
		var got WorkloadCertsStatus
		if err := json.Unmarshal([]byte(a), &got); err != nil {
			t.Fatal(err)
		}
		return got.Since
	}
	first, err := workloadAnnotation("", st, t0)
	if err != nil || !since(first).Equal(t0) {
		t.Fatalf("first = %s, %v", first, err)
	}
	same, _ := workloadAnnotation(first, st, t0.Add(time.Minute))
	if same != first {
		t.Errorf("an unchanged state moved: %s, was %s", same, first)
	}
	moved := *st
	moved.Intermediate = "i2"
	next, _ := workloadAnnotation(first, &moved, t0.Add(time.Minute))
	if !since(next).Equal(t0.Add(time.Minute)) {
		t.Errorf("a re-issue kept Since: %s", next)
	}
	if none, _ := workloadAnnotation(first, nil, t0); none != "" {
		t.Errorf("no status = %q, want no annotation", none)
	}
}
