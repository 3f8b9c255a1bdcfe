package model

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Selects reports whether the global service g includes the member Service
// namespace/name with the given labels in cluster. It is the one definition of
// membership: agents use it to decide what to publish, and every reader of published
// services uses it to group them by global service.
func Selects(g *GlobalService, cluster, namespace, name string, svcLabels map[string]string) bool {
	if len(g.Clusters) > 0 && !slices.Contains(g.Clusters, cluster) {
		return false
	}
	switch {
	case g.Service != nil:
		return g.Service.Namespace == namespace && g.Service.Name == name
	case g.Selector != nil:
		if namespace != g.Namespace {
			return false
		}
		sel, err := metav1.LabelSelectorAsSelector(g.Selector)
		if err != nil {
			return false // Validate rejects such selectors; a stored one selects nothing.
		}
		return sel.Matches(labels.Set(svcLabels))
	}
	return false
}

func validSelector(s *metav1.LabelSelector) error {
	if _, err := metav1.LabelSelectorAsSelector(s); err != nil {
		return invalid("selector: %v", err)
	}
	return nil
}

// String returns namespace/name.
func (g *GlobalService) String() string { return fmt.Sprintf("%s/%s", g.Namespace, g.Name) }
