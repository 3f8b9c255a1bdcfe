package eastwest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// TestMetricsStayOutOfTheGlobalRegistry: the package registers its collectors only
// where RegisterMetrics is told to, so a process that also runs other components
// does not export the gateway's metrics through their registry, nor they through the
// gateway's.
func TestMetricsStayOutOfTheGlobalRegistry(t *testing.T) {
	routesConfigured.Set(1) // a collector with a value, so that it would be gathered
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "meshfed_gateway_") {
			t.Errorf("%s is in controller-runtime's global registry", f.GetName())
		}
	}
}

// TestHandlerServesTheGivenRegistry: /metrics serves the registry the process
// registered the gateway's collectors in.
func TestHandlerServesTheGivenRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	RegisterMetrics(reg)
	gw, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.SetRoutes(Routes{}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler(reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "meshfed_gateway_routes") {
		t.Errorf("/metrics = %d, %q; want the gateway's collectors", resp.StatusCode, body)
	}
}
