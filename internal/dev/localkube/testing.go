package localkube

import (
	"context"
	"fmt"
	"testing"
)

// ForTest starts one control plane per name, concurrently, with meshfed's CRDs
// installed, and stops them when the test ends (also when it fails or panics).
func ForTest(t testing.TB, names ...string) []*ControlPlane {
	t.Helper()
	opts := make([]Options, len(names))
	for i, name := range names {
		opts[i] = Options{Name: name, Dir: fmt.Sprintf("%s/%s", t.TempDir(), name), InstallCRDs: true}
	}
	cps, err := StartAll(context.Background(), opts)
	if err != nil {
		t.Fatalf("start control planes: %v", err)
	}
	for _, cp := range cps {
		t.Cleanup(cp.Stop)
	}
	return cps
}
