package dev_test

import (
	"os/exec"
	"testing"
)

// TestProductImportsNoDevPackage fails when a product package imports a package under
// internal/dev, so make test catches what make verify catches.
func TestProductImportsNoDevPackage(t *testing.T) {
	out, err := exec.Command("bash", "../../hack/verify-imports.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("hack/verify-imports.sh: %v\n%s", err, out)
	}
}
