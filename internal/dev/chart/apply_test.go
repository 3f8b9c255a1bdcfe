package chart_test

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/meshfed/meshfed/internal/kube/kubeapply"
)

// applier server-side applies objects to cfg's API server, failing the test on the
// first refusal.
func applier(t *testing.T, cfg *rest.Config) func([]*unstructured.Unstructured) {
	c, err := kubeapply.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return func(objs []*unstructured.Unstructured) {
		t.Helper()
		if err := c.Apply(context.Background(), objs); err != nil {
			t.Fatal(err)
		}
	}
}
