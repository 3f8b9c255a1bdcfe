package v1alpha1_test

import (
	"os/exec"
	"testing"
)

// TestGeneratedFilesAreFresh fails when the deepcopy functions or the CRDs differ from
// what make generate writes (someone edited them by hand, or changed a type without
// regenerating), so CI catches what make verify catches.
func TestGeneratedFilesAreFresh(t *testing.T) {
	out, err := exec.Command("make", "-s", "-C", "../..", "verify-generated").CombinedOutput()
	if err != nil {
		t.Fatalf("make verify-generated: %v\n%s", err, out)
	}
}
