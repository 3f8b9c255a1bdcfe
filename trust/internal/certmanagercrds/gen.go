//go:build ignore

// gen copies cert-manager's CRDs from the cert-manager module that go.mod pins into
// crds/, and records that module's version in crds/VERSION. Run it with `go generate
// ./trust/...` after changing the cert-manager version in go.mod.
package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

const module = "github.com/cert-manager/cert-manager"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "certmanagercrds gen:", err)
		os.Exit(1)
	}
}

func run() error {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}} {{.Version}}", module).Output()
	if err != nil {
		return fmt.Errorf("go list -m %s: %w", module, err)
	}
	dir, version, ok := strings.Cut(strings.TrimSpace(string(out)), " ")
	if !ok || dir == "" {
		return fmt.Errorf("module %s is not downloaded: run go mod download %s", module, module)
	}
	src, err := filepath.Glob(filepath.Join(dir, "deploy", "crds", "*.yaml"))
	if err != nil {
		return err
	}
	if len(src) == 0 {
		return fmt.Errorf("no CRDs under %s/deploy/crds", dir)
	}
	old, err := filepath.Glob(filepath.Join("crds", "*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	if err := os.MkdirAll("crds", 0o755); err != nil {
		return err
	}
	for _, f := range src {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join("crds", filepath.Base(f)), data, 0o644); err != nil {
			return err
		}
	}
	var v bytes.Buffer
	fmt.Fprintf(&v, "%s %s\n", module, version)
	return os.WriteFile(filepath.Join("crds", "VERSION"), v.Bytes(), 0o644)
}
