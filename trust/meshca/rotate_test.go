package meshca_test

import (
	"errors"
	"testing"

	"github.com/meshfed/meshfed/trust/meshca"
)

// A rotation moves towards the newest root; the phase says whether it signs yet.
func TestPhase(t *testing.T) {
	root := func(name string, signing bool) meshca.Root { return meshca.Root{Secret: name, Signing: signing} }
	tests := map[string]struct {
		roots    []meshca.Root
		want     meshca.RotationPhase
		old, new string
		err      error
	}{
		"none":                     {nil, "", "", "", meshca.ErrNoRoot},
		"one":                      {[]meshca.Root{root("a", true)}, meshca.PhaseSteady, "", "a", nil},
		"new root added":           {[]meshca.Root{root("a", true), root("b", false)}, meshca.PhaseAdded, "a", "b", nil},
		"new root signs":           {[]meshca.Root{root("a", false), root("b", true)}, meshca.PhaseSwitched, "a", "b", nil},
		"three roots are no phase": {[]meshca.Root{root("a", true), root("b", false), root("c", false)}, "", "", "", meshca.ErrRotation},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := meshca.Phase(tc.roots)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Phase = %+v, %v; want %v", got, err, tc.err)
				}
				return
			}
			if err != nil || got.Phase != tc.want || got.Old.Secret != tc.old || got.New.Secret != tc.new {
				t.Fatalf("Phase = %+v, %v; want %s old %q new %q", got, err, tc.want, tc.old, tc.new)
			}
		})
	}
}
