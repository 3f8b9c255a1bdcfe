package check

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshfed/meshfed/deploy"
	"github.com/meshfed/meshfed/internal/creds/hubinfo"
)

// hub holds the clients of the hub's API server.
type hub struct {
	kube   kubernetes.Interface
	client client.Client
	ext    apiextensions.Interface
	// version is the hub's build, from its ConfigMap; "" when unknown.
	version string
}

const fixCRDs = "kubectl apply --server-side -f deploy/crds/ (of this meshfedctl's release) on the hub"

// checkHub: the hub's API server answers, and the hub has published its ConfigMap.
func checkHub(ctx context.Context, r *Report, opts Options) (*hub, bool) {
	h := &hub{}
	var err error
	if h.kube, err = kubernetes.NewForConfig(opts.Hub); err == nil {
		if h.client, err = hubinfo.NewClient(opts.Hub); err == nil {
			h.ext, err = apiextensions.NewForConfig(opts.Hub)
		}
	}
	if err != nil {
		r.fail(GroupHub, "API server reachable", err.Error(), "check the hub's kubeconfig (--hub-kubeconfig)")
		return nil, false
	}
	v, err := h.kube.Discovery().ServerVersion()
	if err != nil {
		r.fail(GroupHub, "API server reachable", fmt.Sprintf("%s: %v", opts.Hub.Host, err),
			"check the hub's kubeconfig (--hub-kubeconfig) and that its API server is up and reachable from here")
		return nil, false
	}
	r.ok(GroupHub, "API server reachable", fmt.Sprintf("%s (Kubernetes %s)", opts.Hub.Host, v.GitVersion))
	info, err := hubinfo.Read(ctx, h.kube)
	if err != nil {
		r.fail(GroupHub, "hub running", fmt.Sprintf("no hub ConfigMap %s/%s: %v", hubinfo.Namespace, hubinfo.ConfigMapName, err),
			"start meshfed hub against this API server (it publishes the ConfigMap at start); see its logs")
	} else {
		h.version = info.Version
		running := "it publishes etcd endpoints " + strings.Join(info.EtcdEndpoints, ",")
		if info.Version != "" {
			running += "; version " + info.Version
		}
		r.ok(GroupHub, "hub running", running)
	}
	return h, true
}

// checkCRDs: every CRD this meshfedctl embeds (deploy/crds) is installed on the hub,
// every version it defines is served with the same schema, and the storage version
// is the same.
func checkCRDs(ctx context.Context, r *Report, h *hub) {
	files, err := fs.Glob(deploy.CRDs, "crds/*.yaml")
	if err != nil || len(files) == 0 {
		r.fail(GroupCRDs, "embedded CRDs", fmt.Sprintf("this meshfedctl embeds no CRD (%v)", err), "rebuild meshfedctl")
		return
	}
	for _, f := range files {
		data, err := deploy.CRDs.ReadFile(f)
		if err != nil {
			r.fail(GroupCRDs, path.Base(f), err.Error(), "rebuild meshfedctl")
			continue
		}
		want := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(data, want); err != nil {
			r.fail(GroupCRDs, path.Base(f), err.Error(), "rebuild meshfedctl")
			continue
		}
		got, err := h.ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			r.fail(GroupCRDs, want.Name, "not installed", fixCRDs)
			continue
		case err != nil:
			r.fail(GroupCRDs, want.Name, err.Error(), "grant the operator get on customresourcedefinitions, or "+fixCRDs)
			continue
		}
		if diff := crdDiff(want, got); diff != "" {
			r.fail(GroupCRDs, want.Name, diff, fixCRDs)
			continue
		}
		if !established(got) {
			r.fail(GroupCRDs, want.Name, "installed but not Established", "kubectl describe crd "+want.Name+" on the hub: its conditions say why")
			continue
		}
		r.ok(GroupCRDs, want.Name, "installed, "+versions(want)+", schema as this meshfedctl's")
	}
}

// crdDiff says how the installed CRD differs from the embedded one: a version
// missing or not served, another storage version, another schema. "" when it does
// not.
func crdDiff(want, got *apiextensionsv1.CustomResourceDefinition) string {
	for _, wv := range want.Spec.Versions {
		i := slices.IndexFunc(got.Spec.Versions, func(v apiextensionsv1.CustomResourceDefinitionVersion) bool { return v.Name == wv.Name })
		if i < 0 {
			return fmt.Sprintf("version %s is not installed (installed: %s)", wv.Name, versions(got))
		}
		gv := got.Spec.Versions[i]
		switch {
		case wv.Served && !gv.Served:
			return fmt.Sprintf("version %s is installed but not served", wv.Name)
		case wv.Storage != gv.Storage:
			return fmt.Sprintf("the storage version differs (installed: %s; expected: %s)", versions(got), versions(want))
		case wv.Schema != nil && (gv.Schema == nil || !equality.Semantic.DeepEqual(wv.Schema.OpenAPIV3Schema, gv.Schema.OpenAPIV3Schema)):
			return fmt.Sprintf("version %s's schema differs from this meshfedctl's: an older or newer release is installed", wv.Name)
		}
	}
	return ""
}

func versions(crd *apiextensionsv1.CustomResourceDefinition) string {
	var out []string
	for _, v := range crd.Spec.Versions {
		s := v.Name
		if v.Storage {
			s += " (storage)"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established {
			return c.Status == apiextensionsv1.ConditionTrue
		}
	}
	return false
}
