package trustcheck

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/meshfed/meshfed/clusteragent"
	"github.com/meshfed/meshfed/internal/creds/pki"
	"github.com/meshfed/meshfed/trust"
	"github.com/meshfed/meshfed/trust/meshca"
)

// Every phase's goal, cluster by cluster: what holds up the next step, and that a
// cluster nobody looked at always does.
func TestAssess(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	settled, fresh := now.Add(-time.Minute), now.Add(-time.Second)
	const settle = 10 * time.Second
	old, nu := meshca.Root{Secret: "old"}, meshca.Root{Secret: "new"}
	signingOld, signingNew := old, nu
	signingOld.Signing, signingNew.Signing = true, true
	steadyOld := meshca.Rotation{Phase: meshca.PhaseSteady, New: signingOld}
	added := meshca.Rotation{Phase: meshca.PhaseAdded, Old: signingOld, New: nu}
	switched := meshca.Rotation{Phase: meshca.PhaseSwitched, Old: old, New: signingNew}
	steadyNew := meshca.Rotation{Phase: meshca.PhaseSteady, New: signingNew}

	res := func(served []string, inter string, w *Workloads) Result {
		return Result{Cluster: "alpha", Checked: true, Served: served, IntermediateRoot: inter, Workloads: w}
	}
	wl := func(root string, current, trustServed bool, since time.Time) *Workloads {
		return &Workloads{Identities: 2, Root: root, Current: current, TrustServed: trustServed, Since: since}
	}
	both := []string{"old", "new"}
	tests := map[string]struct {
		rot    meshca.Rotation
		r      Result
		want   string // "" ready, else part of the reason
		next   string
		signer string
	}{
		"steady, all under the one root":          {steadyOld, res([]string{"old"}, "old", wl("old", true, true, settled)), "", StepStart, "old"},
		"steady, no workload certificates":        {steadyOld, res([]string{"old"}, "old", nil), "", StepStart, "old"},
		"not checked":                             {steadyOld, Result{Cluster: "alpha"}, "not checked", StepStart, "old"},
		"no bundle served":                        {steadyOld, Result{Cluster: "alpha", Checked: true, Bundle: "no trust bundle served: gone"}, "no trust bundle served", StepStart, "old"},
		"added, still serves the old root only":   {added, res([]string{"old"}, "old", wl("old", true, true, settled)), "serves old, not old and new yet", StepSwitch, "old"},
		"added, serves both, workloads behind":    {added, res(both, "old", wl("old", true, false, settled)), "workloads' ca.crt is not the bundle", StepSwitch, "old"},
		"added, serves both, files not settled":   {added, res(both, "old", wl("old", true, true, fresh)), "--settle 10s", StepSwitch, "old"},
		"added, ready (order does not matter)":    {added, res([]string{"new", "old"}, "old", wl("old", true, true, settled)), "", StepSwitch, "old"},
		"switched, intermediate not re-signed":    {switched, res(both, "old", wl("old", true, true, settled)), "intermediate still under old", StepFinish, "new"},
		"switched, leaves from the previous one":  {switched, res(both, "new", wl("old", false, true, settled)), "previous intermediate", StepFinish, "new"},
		"switched, leaves fresh":                  {switched, res(both, "new", wl("new", true, true, fresh)), "may not have re-read", StepFinish, "new"},
		"switched, ready":                         {switched, res(both, "new", wl("new", true, true, settled)), "", StepFinish, "new"},
		"finished, still serves the retired root": {steadyNew, res([]string{"old (retired)", "new"}, "new", wl("new", true, false, settled)), "serves old (retired) and new, not new yet", StepStart, "new"},
		"finished, intermediate does not verify":  {steadyNew, Result{Cluster: "alpha", Checked: true, Served: []string{"new"}, Intermediate: "does not chain"}, "intermediate: does not chain", StepStart, "new"},
		"finished, ready":                         {steadyNew, res([]string{"new"}, "new", wl("new", true, true, settled)), "", StepStart, "new"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := Assess(tc.rot, []Result{tc.r}, settle, now)
			if p.Next != tc.next || p.Signing != tc.signer || p.Phase != tc.rot.Phase {
				t.Errorf("plan %+v, want next %q, signing %q", p, tc.next, tc.signer)
			}
			switch {
			case tc.want == "" && !p.Ready():
				t.Errorf("lagging %+v, want ready", p.Lagging)
			case tc.want != "" && (p.Ready() || !strings.Contains(p.Lagging[0].Why, tc.want)):
				t.Errorf("lagging %+v, want a reason containing %q", p.Lagging, tc.want)
			}
		})
	}
}

// The agent and the hub name certificates the same way.
func TestFingerprintsAgree(t *testing.T) {
	certPEM, _, err := trust.NewRoot("mesh.example.org", 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if a, h := clusteragent.Digest(c.Raw), meshca.Fingerprint(c); a != h {
		t.Fatalf("agent %s, hub %s", a, h)
	}
	names := Roots{meshca.Fingerprint(c): "meshfed-root-ca"}
	if got := names.Name(c); got != "meshfed-root-ca" {
		t.Errorf("Name = %q", got)
	}
	if got := names.Name(&x509.Certificate{Raw: []byte("other")}); !strings.HasPrefix(got, "unknown ") {
		t.Errorf("Name of an unknown root = %q", got)
	}
}
