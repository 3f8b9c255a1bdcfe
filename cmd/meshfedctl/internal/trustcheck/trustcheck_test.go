package trustcheck

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
)

// A check that verified nothing must fail: `trust check --hub-kubeconfig HUB` without
// --cluster used to print an empty table and exit 0.
func TestVerdict(t *testing.T) {
	ok := Result{Cluster: "a", OK: true, Checked: true}
	bad := Result{Cluster: "b", Checked: true}
	unchecked := Result{Cluster: "c"}
	tests := map[string]struct {
		results []Result
		want    string // "" for a pass, else part of the error
	}{
		"nothing registered, nothing given": {nil, "verified nothing"},
		"registered clusters, none reached": {[]Result{unchecked, {Cluster: "d"}}, "verified nothing: none of the 2 registered clusters was reached"},
		"every cluster checked and ok":      {[]Result{ok}, ""},
		"one failed":                        {[]Result{ok, bad}, "trust check failed"},
		"one not checked":                   {[]Result{ok, unchecked}, "registered clusters not checked: 1"},
		"failed and not checked":            {[]Result{bad, unchecked}, "failed for 1 clusters, and 1 were not checked"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := Verdict(tc.results)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Verdict = %v, want a pass", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Verdict = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// Every registered cluster without a kubeconfig gets a row, not OK, with what the hub
// knows of its intermediate.
func TestUnchecked(t *testing.T) {
	mc := func(name string, conds ...metav1.Condition) v1.MeshCluster {
		return v1.MeshCluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: v1.MeshClusterStatus{Conditions: conds}}
	}
	registered := []v1.MeshCluster{
		mc("west", metav1.Condition{Type: v1.ConditionIntermediateCA, Status: metav1.ConditionFalse,
			Reason: v1.ReasonIntermediateExpiring, Message: "expires soon"}),
		mc("east"),
		mc("given"),
	}
	got := Unchecked(registered, []Member{{Name: "given"}})
	want := []Result{
		{Cluster: "east", Bundle: "not checked: no kubeconfig for the cluster (--cluster east=KUBECONFIG)",
			Intermediate: "hub: no IntermediateCA condition"},
		{Cluster: "west", Bundle: "not checked: no kubeconfig for the cluster (--cluster west=KUBECONFIG)",
			Intermediate: "hub: Expiring (expires soon)"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Unchecked (-want +got):\n%s", diff)
	}
	if err := Verdict(got); err == nil {
		t.Fatal("Verdict of unchecked clusters passed")
	}
}
