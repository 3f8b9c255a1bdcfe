package trustcheck

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/meshfed/meshfed/trust/meshca"
)

// Plan is where a root rotation stands and what holds up its next step.
type Plan struct {
	Phase meshca.RotationPhase `json:"phase"`
	// Old is the root being replaced ("" when steady); New the root rotated to (when
	// steady, the one root); Signing the one the hub signs intermediates with.
	Old     string `json:"old,omitempty"`
	New     string `json:"new"`
	Signing string `json:"signing"`
	// Goal is what every cluster must show before Next may run.
	Goal string `json:"goal"`
	// Next is the `meshfedctl trust rotate` step that comes next.
	Next string `json:"next"`
	// Lagging are the clusters that do not show Goal yet, with why; Next refuses
	// while there is any.
	Lagging []Lag `json:"lagging"`
}

// Lag is a cluster that holds up the next step.
type Lag struct {
	Cluster string `json:"cluster"`
	Why     string `json:"why"`
}

// Steps of `meshfedctl trust rotate`, in order.
const (
	StepStart  = "start"
	StepSwitch = "switch"
	StepFinish = "finish"
)

// Ready reports whether nothing holds up the next step.
func (p Plan) Ready() bool { return len(p.Lagging) == 0 }

// Assess judges the clusters' results against the goal of the rotation's phase:
//
//	steady    every cluster serves only the one root; its intermediate and its
//	          workloads' certificates are under it           → next: start
//	added     every cluster serves the old and the new root, and its workloads
//	          trust both                                      → next: switch
//	switched  every cluster still serves both; its intermediate (re-signed by the
//	          hub) and its workloads' certificates are under the new root → next: finish
//
// Workloads' certificate providers re-read their files periodically (grpc-go's
// file_watcher every refresh_interval), so a cluster whose workloads' files changed
// less than settle ago still lags: its workloads may not use them yet. A cluster that
// was not checked always lags. Assess is pure: the clock is now.
func Assess(rot meshca.Rotation, results []Result, settle time.Duration, now time.Time) Plan {
	p := Plan{Phase: rot.Phase, Old: rot.Old.Secret, New: rot.New.Secret}
	for _, r := range []meshca.Root{rot.Old, rot.New} {
		if r.Signing {
			p.Signing = r.Secret
		}
	}
	switch rot.Phase {
	case meshca.PhaseSteady:
		p.Next = StepStart
		p.Goal = "every cluster serves only " + p.New + ", and its intermediate and workload certificates are under it"
	case meshca.PhaseAdded:
		p.Next = StepSwitch
		p.Goal = "every cluster serves " + p.Old + " and " + p.New + ", and its workloads trust both"
	case meshca.PhaseSwitched:
		p.Next = StepFinish
		p.Goal = "every cluster's intermediate and workload certificates are under " + p.New + " (the hub re-signs intermediates after the switch)"
	}
	for _, r := range results {
		if why := lag(rot.Phase, p.Old, p.New, r, settle, now); why != "" {
			p.Lagging = append(p.Lagging, Lag{Cluster: r.Cluster, Why: why})
		}
	}
	return p
}

// lag says why r does not show the goal of phase, "" when it does.
func lag(phase meshca.RotationPhase, old, new string, r Result, settle time.Duration, now time.Time) string {
	if !r.Checked {
		return "not checked: no kubeconfig for it (--cluster " + r.Cluster + "=KUBECONFIG)"
	}
	want := []string{new}
	if phase != meshca.PhaseSteady {
		want = []string{old, new}
	}
	switch {
	case r.Served == nil:
		return r.Bundle
	case !sameSet(r.Served, want):
		return fmt.Sprintf("serves %s, not %s yet (its agent writes the hub's bundle into its ConfigMap)",
			strings.Join(r.Served, " and "), strings.Join(want, " and "))
	case r.IntermediateRoot == "":
		return "intermediate: " + r.Intermediate
	case phase != meshca.PhaseAdded && r.IntermediateRoot != new:
		return "intermediate still under " + r.IntermediateRoot + " (the hub re-signs it under the signing root within seconds)"
	}
	w := r.Workloads
	switch {
	case w == nil:
		return "" // the agent issues no workload certificates
	case !w.TrustServed:
		return "workloads' ca.crt is not the bundle the cluster serves yet (the agent rewrites it at its next sync)"
	case phase != meshca.PhaseAdded && !w.Current:
		return "workload certificates still from a previous intermediate (the agent re-issues them when its intermediate changes)"
	case phase != meshca.PhaseAdded && w.Root != new:
		return "workload certificates still under " + w.Root
	case now.Before(w.Since.Add(settle)):
		return fmt.Sprintf("workloads' files changed at %s; their certificate providers may not have re-read them before %s (--settle %s)",
			w.Since.UTC().Format(time.TimeOnly), w.Since.Add(settle).UTC().Format(time.TimeOnly), settle)
	}
	return ""
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b)) && len(a) == len(b)
}

// PrintPlan writes the rotation's phase, the next step and what holds it up.
func PrintPlan(w io.Writer, p Plan) {
	switch p.Phase {
	case meshca.PhaseSteady:
		fmt.Fprintf(w, "rotation: steady — %s is the only root and signs\n", p.New)
	case meshca.PhaseAdded:
		fmt.Fprintf(w, "rotation: added — %s is in the bundle; %s still signs\n", p.New, p.Old)
	case meshca.PhaseSwitched:
		fmt.Fprintf(w, "rotation: switched — %s signs; %s stays in the bundle until finish\n", p.New, p.Old)
	}
	fmt.Fprintf(w, "goal: %s\n", p.Goal)
	if p.Ready() {
		fmt.Fprintf(w, "next: meshfedctl trust rotate %s (every cluster is ready)\n", p.Next)
		return
	}
	fmt.Fprintf(w, "next: meshfedctl trust rotate %s, once these clusters catch up:\n", p.Next)
	for _, l := range p.Lagging {
		fmt.Fprintf(w, "  %s: %s\n", l.Cluster, l.Why)
	}
}
