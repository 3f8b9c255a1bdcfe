package xds_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/clusteragent/internal/xds"
)

// TestRegisterMetrics: the collectors go to the registry they are given, under
// meshfed_xds_.
func TestRegisterMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	xds.RegisterMetrics(reg)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, want := range []string{"meshfed_xds_rebuild_seconds", "meshfed_xds_change_to_push_seconds", "meshfed_xds_change_to_ack_seconds",
		"meshfed_xds_allowed_identities", "meshfed_xds_ports_without_identity"} {
		if !names[want] {
			t.Errorf("registry lacks %s; has %v", want, names)
		}
	}
}
