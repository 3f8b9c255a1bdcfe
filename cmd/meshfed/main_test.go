package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// TestNoComponentRegistersMetricsGlobally: the binary links the hub, the agent and the
// gateway, and each must export only its own metrics. So no package may register a
// meshfed metric in a process-wide registry as it is loaded; each component registers
// its packages' metrics (RegisterMetrics) with the registry it serves when it runs.
func TestNoComponentRegistersMetricsGlobally(t *testing.T) {
	for name, g := range map[string]prometheus.Gatherer{
		"controller-runtime's registry": ctrlmetrics.Registry,
		"prometheus's default registry": prometheus.DefaultGatherer,
	} {
		families, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if strings.HasPrefix(f.GetName(), "meshfed_") {
				t.Errorf("%s holds %s at start: register it in RegisterMetrics, not at init", name, f.GetName())
			}
		}
	}
}

// TestNoInitRegistersMetrics backs the test above for metric vectors, which a
// registry gathers nothing of until a label value is used: no package's init may
// register collectors.
func TestNoInitRegistersMetrics(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		calls, err := initRegisters(path, src)
		for _, c := range calls {
			t.Errorf("%s: init calls %s: register metrics in RegisterMetrics instead", path, c)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// initRegisters lists the calls of functions named *Register* in the init functions
// of a Go source file.
func initRegisters(path string, src []byte) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, src, 0)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "init" || fn.Recv != nil {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			name := ""
			switch f := call.Fun.(type) {
			case *ast.Ident:
				name = f.Name
			case *ast.SelectorExpr:
				name = f.Sel.Name
			}
			if strings.Contains(name, "Register") {
				out = append(out, name)
			}
			return true
		})
	}
	return out, nil
}

func TestInitRegisters(t *testing.T) {
	src := `package p
func init() { prometheus.MustRegister(x); RegisterMetrics(reg) }
func RegisterMetrics(reg any) { reg.MustRegister(y) }
`
	got, err := initRegisters("p.go", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"MustRegister", "RegisterMetrics"}; !slices.Equal(got, want) {
		t.Fatalf("initRegisters = %v, want %v", got, want)
	}
}

// TestAgentFlagDefaults: the agent's debug and metrics surfaces are on loopback by
// default, and the xDS address and authentication are left to the agent to settle
// (loopback without a mesh CA, every interface with mTLS).
func TestAgentFlagDefaults(t *testing.T) {
	f := agentCommand().Flags()
	for flag, want := range map[string]string{
		"metrics-addr": "127.0.0.1:9093", "debug-addr": "127.0.0.1:9094", "http-addr": ":9092",
		"xds-addr": "", "xds-auth": "", "xds-insecure-listen": "false", "xds-server-names": "[]",
	} {
		got := f.Lookup(flag)
		if got == nil {
			t.Errorf("no --%s", flag)
			continue
		}
		if got.DefValue != want {
			t.Errorf("--%s defaults to %q, want %q", flag, got.DefValue, want)
		}
	}
	if gateway := gatewayCommand().Flags().Lookup("xds-cert-dir"); gateway == nil || gateway.DefValue != "" {
		t.Errorf("gateway --xds-cert-dir: %v", gateway)
	}
}
