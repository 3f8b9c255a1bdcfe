package publish

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshfed/meshfed/internal/etcd/model"
)

// Reasons a Service is exported, the values of model.ServiceEndpoints.ExportedBy.
const (
	ExportedByGlobalService = model.ExportedByGlobalService
	ExportedByServiceExport = model.ExportedByServiceExport
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
		if model.Selects(&globals[i], cluster, svc.Namespace, svc.Name, svc.Labels) {
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
