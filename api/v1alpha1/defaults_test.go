package v1alpha1_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	v1 "github.com/meshfed/meshfed/api/v1alpha1"
	"github.com/meshfed/meshfed/deploy"
)

// TestDefaultsMatchCRDs keeps each default in one place: the kubebuilder marker that
// the API server applies and the Go constant that code reads must say the same.
func TestDefaultsMatchCRDs(t *testing.T) {
	tests := []struct {
		crd, path string
		want      any
	}{
		{"failoverpolicies", "spec.localityPreference", string(v1.DefaultLocalityPreference)},
		{"failoverpolicies", "spec.fallbackToAny", v1.DefaultFallbackToAny},
		{"failoverpolicies", "spec.minHealthyPercent", float64(v1.DefaultMinHealthyPercent)},
		{"failoverpolicies", "spec.failbackHold", (v1.DefaultFailbackHold)},
		{"failoverpolicies", "spec.staleCluster.demoteAfter", (v1.DefaultDemoteAfter)},
		{"failoverpolicies", "spec.staleCluster.dropAfter", (v1.DefaultDropAfter)},
		{"trafficpolicies", "spec.loadBalancer.policy", string(v1.DefaultLoadBalancerPolicy)},
		{"trafficpolicies", "spec.outlierDetection.consecutiveErrors", float64(v1.DefaultOutlierConsecutiveErrors)},
		{"trafficpolicies", "spec.outlierDetection.interval", v1.DefaultOutlierInterval},
		{"trafficpolicies", "spec.outlierDetection.baseEjectionTime", v1.DefaultOutlierBaseEjectionTime},
		{"trafficpolicies", "spec.outlierDetection.maxEjectionPercent", float64(v1.DefaultOutlierMaxEjectionPercent)},
		{"trafficpolicies", "spec.routes[].retries.backoff.base", v1.DefaultRetryBackoffBase},
		{"meshclusters", "spec.network", v1.DefaultNetwork},
		{"meshclusters", "spec.gateways[].port", float64(v1.DefaultGatewayPort)},
		{"meshclusters", "spec.limits.maxServices", float64(v1.DefaultMaxServices)},
		{"meshclusters", "spec.limits.maxEndpointsPerService", float64(v1.DefaultMaxEndpointsPerService)},
		{"meshclusters", "spec.limits.maxValueBytes", float64(v1.DefaultMaxValueBytes)},
	}
	for _, tc := range tests {
		schema := crdSchema(t, tc.crd)
		for _, field := range strings.Split(tc.path, ".") {
			name, list := strings.CutSuffix(field, "[]")
			p, ok := schema.Properties[name]
			if !ok {
				t.Fatalf("%s: no field %s in %s", tc.crd, field, tc.path)
			}
			schema = &p
			if list {
				schema = schema.Items.Schema
			}
		}
		if schema.Default == nil {
			t.Errorf("%s %s: the CRD has no default; the constant says %v", tc.crd, tc.path, tc.want)
			continue
		}
		var got any
		if err := json.Unmarshal(schema.Default.Raw, &got); err != nil {
			t.Fatal(err)
		}
		if d, ok := tc.want.(time.Duration); ok {
			if s, _ := got.(string); s != "" {
				got, _ = time.ParseDuration(s)
			}
			if got != d {
				t.Errorf("%s %s: the CRD's default is %v, the Go constant's %v: change both", tc.crd, tc.path, got, tc.want)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("%s %s: the CRD's default is %v, the Go constant's %v: change both", tc.crd, tc.path, got, tc.want)
		}
	}
}

func crdSchema(t *testing.T, plural string) *apiextensionsv1.JSONSchemaProps {
	t.Helper()
	raw, err := deploy.CRDs.ReadFile("crds/meshfed.io_" + plural + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(raw, crd); err != nil {
		t.Fatal(err)
	}
	return crd.Spec.Versions[0].Schema.OpenAPIV3Schema
}
