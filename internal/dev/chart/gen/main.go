// Command gen writes meshfed's plain manifests from its Helm chart: make generate runs
// it (hack/generate.sh) so that the chart is their one source.
//
//	go run ./internal/dev/chart/gen DEPLOY_DIR
//
// It renders the chart with every role on and the Namespace included, and writes each
// template's output to DEPLOY_DIR/<role>/<file> (templates/agent/rbac.yaml →
// agent/rbac.yaml; templates/namespace.yaml → agent/namespace.yaml and
// hub/namespace.yaml), replacing the YAML files there.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshfed/meshfed/internal/dev/chart"
)

// Values are what the plain manifests are rendered with: every role, and the Namespace
// (which `helm install --create-namespace` makes itself).
var Values = map[string]any{
	"namespace": map[string]any{"create": true},
	"hub":       map[string]any{"enabled": true},
	"agent":     map[string]any{"enabled": true},
	"gateway":   map[string]any{"enabled": true},
}

const header = "# Generated from deploy/charts/meshfed (templates/%s) by make generate: edit the chart, not this file.\n"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gen DEPLOY_DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(deploy string) error {
	r, err := chart.Render(filepath.Join(deploy, "charts", "meshfed"), Values)
	if err != nil {
		return err
	}
	files := map[string]string{}
	for name, text := range r {
		targets := []string{name}
		switch {
		case name == "namespace.yaml":
			targets = []string{"agent/namespace.yaml", "hub/namespace.yaml"}
		case !strings.Contains(name, "/"):
			return fmt.Errorf("templates/%s: put it under a role's folder (hub/, agent/, gateway/)", name)
		}
		for _, t := range targets {
			files[t] = fmt.Sprintf(header, name) + strings.TrimLeft(text, "\n")
		}
	}
	for _, role := range []string{"hub", "agent", "gateway"} {
		old, err := filepath.Glob(filepath.Join(deploy, role, "*.yaml"))
		if err != nil {
			return err
		}
		for _, f := range old {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	for name, text := range files {
		path := filepath.Join(deploy, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}
