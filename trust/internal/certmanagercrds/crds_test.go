package certmanagercrds

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	got, err := Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	names := map[string]bool{}
	for _, crd := range got {
		names[crd.Name] = true
	}
	for _, want := range []string{
		"certificaterequests.cert-manager.io", "certificates.cert-manager.io",
		"clusterissuers.cert-manager.io", "issuers.cert-manager.io",
	} {
		if !names[want] {
			t.Errorf("Load() lacks CRD %s; have %v", want, names)
		}
	}
}

// TestCopiesMatchModule fails when crds/ is stale: go.mod moved to another cert-manager
// version without `go generate ./trust/...`, or someone edited the copies.
func TestCopiesMatchModule(t *testing.T) {
	// Never skip: a drift check that cannot look is a check that passes blindly.
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the go command is needed to locate the cert-manager module: %v", err)
	}
	if out, err := exec.Command("go", "mod", "download", "github.com/cert-manager/cert-manager").CombinedOutput(); err != nil {
		t.Fatalf("go mod download github.com/cert-manager/cert-manager: %v\n%s", err, out)
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}} {{.Version}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/cert-manager/cert-manager: %v", err)
	}
	dir, version, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if dir == "" {
		t.Fatalf("the cert-manager module %s has no directory in the module cache after go mod download", version)
	}
	if Version() != version {
		t.Fatalf("copies are of cert-manager %s, go.mod pins %s: run go generate ./trust/...", Version(), version)
	}
	want, err := filepath.Glob(filepath.Join(dir, "deploy", "crds", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	have, err := filepath.Glob(filepath.Join("crds", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(have) != len(want) {
		t.Fatalf("crds/ holds %d files, the module %d: run go generate ./trust/...", len(have), len(want))
	}
	for _, f := range want {
		a, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := files.ReadFile("crds/" + filepath.Base(f))
		if err != nil {
			t.Fatalf("crds/%s missing: run go generate ./trust/...", filepath.Base(f))
		}
		if !bytes.Equal(a, b) {
			t.Errorf("crds/%s differs from the module's copy: run go generate ./trust/...", filepath.Base(f))
		}
	}
}
