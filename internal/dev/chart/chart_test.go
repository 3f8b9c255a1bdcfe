package chart_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/meshfed/meshfed/internal/dev/chart"
	"github.com/meshfed/meshfed/internal/dev/localkube"
	"github.com/meshfed/meshfed/internal/kube/kubeapply"
)

var meshfedBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meshfed-chart-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	meshfedBin = filepath.Join(dir, "meshfed")
	build := exec.Command("go", "build", "-o", meshfedBin, "../../../cmd/meshfed")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build meshfed:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// variants are the installs values.yaml documents.
var variants = map[string]map[string]any{
	"member (defaults)": {},
	"hub":               {"hub": on(), "agent": off(), "gateway": off()},
	"hub+member":        {"hub": on()},
	"hub external etcd": {"hub": map[string]any{"enabled": true, "etcd": map[string]any{"external": map[string]any{
		"endpoints": []any{"https://etcd-0.example:2379", "https://etcd-1.example:2379", "https://etcd-2.example:2379"}, "secretName": "hub-etcd"}}},
		"agent": off(), "gateway": off()},
	"hub HA": {"hub": map[string]any{"enabled": true, "replicas": 3, "etcd": map[string]any{"external": map[string]any{
		"endpoints": []any{"https://etcd-0.example:2379"}, "secretName": "hub-etcd"}}}, "agent": off(), "gateway": off()},
	"hub mesh CA": {"hub": map[string]any{"enabled": true, "meshCA": true}, "agent": off(), "gateway": off()},
	"hub console": {"hub": map[string]any{"enabled": true, "console": map[string]any{"enabled": true,
		"agents": map[string]any{"beta": "http://127.0.0.1:19094", "alpha": "http://127.0.0.1:29094"}}}, "agent": off(), "gateway": off()},
	"gateway off":       {"gateway": off()},
	"gateway only":      {"agent": off()},
	"plaintext xDS":     {"agent": map[string]any{"mtls": false}},
	"image digest":      {"image": map[string]any{"digest": "sha256:" + strings.Repeat("ab", 32)}, "hub": on()},
	"gateway xDS certs": {"gateway": map[string]any{"xdsCertSecret": "meshfed-gateway-xds"}},
	"no networkpolicy":  {"networkPolicy": off()},
	"servicemonitor":    {"serviceMonitor": on(), "hub": on()},
	// The Kubernetes objects values.yaml passes through, which the schema leaves open.
	"pod settings": {
		"image":                    map[string]any{"tag": "v1.2.3", "pullPolicy": "Always"},
		"imagePullSecrets":         []any{map[string]any{"name": "regcred"}},
		"podSecurityContext":       map[string]any{"supplementalGroups": []any{1000}},
		"containerSecurityContext": map[string]any{"runAsNonRoot": true},
		"hub": map[string]any{"enabled": true, "service": map[string]any{"type": "LoadBalancer",
			"annotations": map[string]any{"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}}},
		"agent": map[string]any{"nodeSelector": map[string]any{"kubernetes.io/os": "linux"},
			"tolerations": []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "mesh", "effect": "NoSchedule"}},
			"resources":   map[string]any{"requests": map[string]any{"cpu": 0.25, "ephemeral-storage": "1Gi"}}},
		"gateway": map[string]any{"affinity": map[string]any{"podAntiAffinity": map[string]any{
			"preferredDuringSchedulingIgnoredDuringExecution": []any{map[string]any{"weight": 100, "podAffinityTerm": map[string]any{
				"topologyKey": "kubernetes.io/hostname", "labelSelector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "meshfed-gateway"}}}}}}},
			"service": map[string]any{"type": "NodePort"}},
	},
}

func on() map[string]any  { return map[string]any{"enabled": true} }
func off() map[string]any { return map[string]any{"enabled": false} }

// TestChartRendersAndLints renders and lints every variant and checks what every pod
// must have: non-root, read-only root filesystem, no capabilities, seccomp
// RuntimeDefault, resources, probes, and the image pinned by digest when one is given.
func TestChartRendersAndLints(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(variants)) {
		t.Run(name, func(t *testing.T) {
			values := variants[name]
			if err := chart.Lint(chart.Dir(), values); err != nil {
				t.Fatal(err)
			}
			r, err := chart.Render(chart.Dir(), values)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := r.Objects()
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.GetKind()]++
				if o.GetKind() == "Deployment" {
					checkDeployment(t, o, values)
				}
				if ns := o.GetNamespace(); ns != "" && ns != chart.Namespace {
					t.Errorf("%s %s in namespace %q", o.GetKind(), o.GetName(), ns)
				}
			}
			if sm := kinds["ServiceMonitor"] > 0; sm != (name == "servicemonitor") {
				t.Errorf("ServiceMonitors rendered: %d", kinds["ServiceMonitor"])
			}
			t.Logf("%d objects: %v", len(objs), kinds)
		})
	}
}

func checkDeployment(t *testing.T, o *unstructured.Unstructured, values map[string]any) {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d); err != nil {
		t.Fatal(err)
	}
	pod := d.Spec.Template.Spec
	if sc := pod.SecurityContext; sc == nil || !ptr.Deref(sc.RunAsNonRoot, false) || sc.SeccompProfile == nil ||
		sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod securityContext %+v: want runAsNonRoot and seccomp RuntimeDefault", d.Name, sc)
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) || ptr.Deref(sc.AllowPrivilegeEscalation, true) ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s/%s: securityContext %+v", d.Name, c.Name, sc)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s/%s: resources %+v: want CPU requests and a memory limit", d.Name, c.Name, c.Resources)
		}
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			t.Errorf("%s/%s: no readiness or liveness probe", d.Name, c.Name)
		}
		digest := ""
		if img, ok := values["image"].(map[string]any); ok {
			digest, _ = img["digest"].(string)
		}
		if digest != "" && !strings.HasSuffix(c.Image, "@"+digest) || digest == "" && !strings.Contains(c.Image, ":") {
			t.Errorf("%s/%s: image %s (digest %q)", d.Name, c.Name, c.Image, digest)
		}
	}
}

// TestChartRefusesWhatCannotWork: rendering fails, saying what to change, on values
// that cannot work.
func TestChartRefusesWhatCannotWork(t *testing.T) {
	for name, tc := range map[string]struct {
		values map[string]any
		want   string
	}{
		"HA with the embedded etcd": {map[string]any{"hub": map[string]any{"enabled": true, "replicas": 2}}, "needs an external etcd"},
		"external etcd without its Secret": {map[string]any{"hub": map[string]any{"enabled": true,
			"etcd": map[string]any{"external": map[string]any{"endpoints": []any{"https://e:2379"}}}}}, "secretName"},
		"nothing enabled": {map[string]any{"agent": off(), "gateway": off()}, "nothing to install"},
		"bad digest":      {map[string]any{"image": map[string]any{"digest": "latest"}}, "sha256:"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := chart.Render(chart.Dir(), tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Render = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestChartAppliesToAPIServer server-side applies the chart's CRDs and every variant's
// objects to a real kube-apiserver: all must be accepted. (ServiceMonitors need
// prometheus-operator's CRD, which this API server lacks: they are left out.)
func TestChartAppliesToAPIServer(t *testing.T) {
	cp := localkube.ForTest(t, "chart")[0]
	apply := applier(t, cp.Config)
	kube, err := kubeapply.New(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds, err := chart.CRDs(chart.Dir())
	if err != nil {
		t.Fatal(err)
	}
	apply(crds)
	for _, name := range slices.Sorted(maps.Keys(variants)) {
		values := maps.Clone(variants[name])
		values["namespace"] = map[string]any{"create": true}
		objs := render(t, values)
		objs = slices.DeleteFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == "ServiceMonitor" })
		apply(objs)
		t.Logf("%s: %d objects applied", name, len(objs))
		// Each variant is a fresh install: remove it (the Namespace stays, no namespace
		// controller runs here to finish deleting it).
		if err := kube.Delete(context.Background(), slices.DeleteFunc(objs, func(o *unstructured.Unstructured) bool {
			return o.GetKind() == "Namespace"
		})); err != nil {
			t.Fatal(err)
		}
	}
}

func render(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	r, err := chart.Render(chart.Dir(), values)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := r.Objects()
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
