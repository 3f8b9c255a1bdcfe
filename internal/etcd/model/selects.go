package model

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Selects reports whether the global service g includes the member Service
// namespace/name with the given labels in cluster. It is the one definition of
// membership: agents use it to decide what to publish, and every reader of published
// services uses it to group them by global service.
//
// g selects the Service when cluster is allowed (Clusters is empty or names it) and
// either g's Service reference names it, or g's Selector matches its labels and it is
// in g's namespace. As everywhere in Kubernetes, an empty selector matches every
// Service of the namespace; an invalid one matches none. A g with neither reference
// nor selector selects nothing: the hub resolves that default to a reference to the
// Service of the GlobalService's own namespace and name, and Validate refuses such a
// record.
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
func (g *GlobalService) String() string { return g.Namespace + "/" + g.Name }

// Compare orders global services as their String forms sort, without making them:
// the order in which the first of two claiming one hostname wins.
func Compare(a, b *GlobalService) int {
	x, y := [3]string{a.Namespace, "/", a.Name}, [3]string{b.Namespace, "/", b.Name}
	i, j, p, q := 0, 0, 0, 0 // part and offset in x, in y
	for {
		for i < 3 && p == len(x[i]) {
			i, p = i+1, 0
		}
		for j < 3 && q == len(y[j]) {
			j, q = j+1, 0
		}
		switch {
		case i == 3 && j == 3:
			return 0
		case i == 3:
			return -1
		case j == 3:
			return 1
		}
		if c, d := x[i][p], y[j][q]; c != d {
			if c < d {
				return -1
			}
			return 1
		}
		p, q = p+1, q+1
	}
}

// ClusterSetHostname is the MCS clusterset name of the Service namespace/name,
// <name>.<namespace>.svc.clusterset.local: the hostname of a GlobalService whose spec
// names none, and of the global service an MCS ServiceExport alone forms.
func ClusterSetHostname(namespace, name string) string {
	return name + "." + namespace + ".svc.clusterset.local"
}
