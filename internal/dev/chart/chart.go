package chart

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/kube/kubeapply"
)

// Namespace is the namespace every release of the chart is installed in.
const Namespace = "meshfed-system"

// Dir is the chart's directory in this checkout (found from the working directory:
// tests and make generate run inside it). It panics outside a checkout; FindDir says
// why instead.
func Dir() string {
	dir, err := FindDir()
	if err != nil {
		panic(err)
	}
	return dir
}

// FindDir is the chart's directory in the checkout the working directory is in.
func FindDir() (string, error) {
	root, err := localkube.ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("the meshfed chart: %w (run from the meshfed checkout, e.g. make run)", err)
	}
	return filepath.Join(root, "deploy", "charts", "meshfed"), nil
}

// Rendered is one rendering of the chart: each template's output, keyed by its path
// under templates/ (e.g. "agent/rbac.yaml"), empty ones left out.
type Rendered map[string]string

// Render renders the chart in dir with values over its values.yaml, as an install of
// release "meshfed" in Namespace (values.schema.json and the templates' checks apply).
func Render(dir string, values map[string]any) (Rendered, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	// Values as `helm install -f values.yaml` reads them: JSON types only (a Go
	// []string or map[string]string would fail the schema's type checks).
	data, err := json.Marshal(values)
	if err != nil {
		return nil, err
	}
	values = map[string]any{}
	if err := json.Unmarshal(data, &values); err != nil {
		return nil, err
	}
	vals, err := chartutil.ToRenderValues(ch, values,
		chartutil.ReleaseOptions{Name: "meshfed", Namespace: Namespace, Revision: 1, IsInstall: true}, nil)
	if err != nil {
		return nil, err
	}
	out, err := engine.Render(ch, vals)
	if err != nil {
		return nil, err
	}
	r := Rendered{}
	prefix := ch.Name() + "/templates/"
	for name, text := range out {
		if strings.TrimSpace(text) == "" || !strings.HasPrefix(name, prefix) {
			continue
		}
		r[strings.TrimPrefix(name, prefix)] = text
	}
	return r, nil
}

// Objects decodes every rendered object, in the order Helm installs them (by kind:
// Namespace first, then ServiceAccounts, RBAC, Services, workloads...).
func (r Rendered) Objects() ([]*unstructured.Unstructured, error) {
	var docs [][]byte
	for _, name := range slices.Sorted(maps.Keys(r)) {
		docs = append(docs, []byte(r[name]))
	}
	objs, err := kubeapply.Decode(docs...)
	if err != nil {
		return nil, err
	}
	rank := func(o *unstructured.Unstructured) int {
		if i := slices.Index(releaseutil.InstallOrder, o.GetKind()); i >= 0 {
			return i
		}
		return len(releaseutil.InstallOrder)
	}
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int { return rank(a) - rank(b) })
	return objs, nil
}

// CRDs decodes the chart's crds/ (which Helm installs before the templates).
func CRDs(dir string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(dir, "crds", "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s/crds holds no CRDs: run make generate", dir)
	}
	var docs [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		docs = append(docs, data)
	}
	return kubeapply.Decode(docs...)
}

// Lint runs `helm lint` (strict: warnings fail too) on the chart in dir with values.
func Lint(dir string, values map[string]any) error {
	linter := lint.All(dir, values, Namespace, false)
	var msgs []string
	for _, m := range linter.Messages {
		if m.Severity >= support.WarningSev {
			msgs = append(msgs, m.Error())
		}
	}
	if len(msgs) > 0 {
		return fmt.Errorf("helm lint: %s", strings.Join(msgs, "; "))
	}
	return nil
}
