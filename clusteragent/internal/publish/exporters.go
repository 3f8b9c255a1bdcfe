package publish

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

// Reasons a Service is exported, the values of model.ServiceEndpoints.ExportedBy.
// They are part of the keyspace API: never renamed.
const (
	// ExportedByGlobalService: a GlobalService on the hub selects the Service.
	ExportedByGlobalService = "GlobalService"
	// ExportedByServiceExport: an MCS ServiceExport of the same namespace and name
	// exists in the member cluster.
	ExportedByServiceExport = "ServiceExport"
)

// Exporters says why svc, a Service of cluster, is exported: the sorted reasons, or nil
// when it is not exported.
//
// A GlobalService selects svc when cluster is allowed (Clusters is empty or names it)
// and either its Service reference names svc, or its Selector matches svc's labels and
// svc is in the GlobalService's namespace. A GlobalService with neither reference nor
// selector (the hub resolves that default, but a record may predate it) refers to the
// Service of its own namespace and name. As everywhere in Kubernetes, an empty selector
// matches every Service of the namespace; an invalid one matches none.
// hasServiceExport says whether a ServiceExport of svc's namespace and name exists (and
// is not being deleted).
//
// Some Services are never exported, whatever selects them:
//   - type ExternalName: it is a DNS alias with no endpoints to publish; the remote
//     side could not route to it through this cluster's gateway.
//   - a Service being deleted: it is going away, so remote clusters should stop
//     sending to it now rather than when its finalizers are done.
//
// Headless Services and Services without a selector are exported like any other: the
// record lists the addresses of their EndpointSlices (pod IPs for headless Services,
// whatever their owner wrote for selector-less ones), which is what a remote cluster's
// gateway needs either way.
func Exporters(svc *corev1.Service, cluster string, globals []model.GlobalService, hasServiceExport bool) []string {
	if svc == nil || svc.Spec.Type == corev1.ServiceTypeExternalName || svc.DeletionTimestamp != nil {
		return nil
	}
	var out []string
	for i := range globals {
		if selects(&globals[i], svc, cluster) {
			out = append(out, ExportedByGlobalService)
			break
		}
	}
	if hasServiceExport {
		out = append(out, ExportedByServiceExport)
	}
	slices.Sort(out)
	return out
}

// selects reports whether gs selects svc of cluster.
func selects(gs *model.GlobalService, svc *corev1.Service, cluster string) bool {
	if len(gs.Clusters) > 0 && !slices.Contains(gs.Clusters, cluster) {
		return false
	}
	if gs.Service == nil && gs.Selector == nil {
		return gs.Namespace == svc.Namespace && gs.Name == svc.Name
	}
	if gs.Service != nil && gs.Service.Namespace == svc.Namespace && gs.Service.Name == svc.Name {
		return true
	}
	if gs.Selector != nil && gs.Namespace == svc.Namespace {
		sel, err := metav1.LabelSelectorAsSelector(gs.Selector)
		return err == nil && sel.Matches(labels.Set(svc.Labels))
	}
	return false
}
