package publish

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

func TestEndpointLabelsBounded(t *testing.T) {
	policies := []*model.TrafficPolicy{{Subsets: []model.Subset{
		{Name: "canary", Labels: map[string]string{"track": "canary", "version": "v2"}},
		{Name: "blue", Labels: map[string]string{"color": "blue"}},
	}}}
	keys := LabelKeys(policies)
	if want := []string{"version", "app.kubernetes.io/version", "color", "track"}; !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	pod := map[string]string{"version": "v2", "track": "canary", "app": "cart", "pod-template-hash": "abc",
		"color": strings.Repeat("x", 64)} // an invalid value is left out
	got := EndpointLabels(pod, keys)
	if want := map[string]string{"version": "v2", "track": "canary"}; !maps.Equal(got, want) {
		t.Fatalf("labels %v, want %v", got, want)
	}
	if EndpointLabels(map[string]string{"app": "cart"}, keys) != nil {
		t.Fatal("a pod with none of the keys carries labels")
	}
	many := map[string]string{}
	var manyKeys []string
	for i := range 20 {
		k := "k" + strings.Repeat("x", i)
		many[k], manyKeys = "v", append(manyKeys, k)
	}
	if n := len(EndpointLabels(many, manyKeys)); n != model.MaxEndpointLabels {
		t.Fatalf("%d labels, want the bound %d", n, model.MaxEndpointLabels)
	}
}
