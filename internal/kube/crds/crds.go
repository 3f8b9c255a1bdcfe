package crds

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
	"sigs.k8s.io/yaml"

	"github.com/meshfed/meshfed/deploy"
)

// fieldManager owns the fields meshfed applies.
const fieldManager = "meshfed"

// Meshfed returns meshfed's own CRDs, as generated into deploy/crds.
func Meshfed() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	return Load(deploy.CRDs, "crds")
}

// Load decodes every *.yaml file in dir of fsys as a CRD.
func Load(fsys fs.FS, dir string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read CRD directory %q: %w", dir, err)
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		name := path.Join(dir, e.Name())
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read CRD %q: %w", name, err)
		}
		crd, err := decode(name, data)
		if err != nil {
			return nil, err
		}
		out = append(out, crd)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read CRD directory %q: no *.yaml files", dir)
	}
	return out, nil
}

// MCS returns the Multi-Cluster Services API's ServiceExport CRD, which agents read in
// member clusters.
func MCS() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	crd, err := decode("ServiceExport", mcscrd.ServiceExportCRD)
	if err != nil {
		return nil, err
	}
	return []*apiextensionsv1.CustomResourceDefinition{crd}, nil
}

func decode(name string, data []byte) (*apiextensionsv1.CustomResourceDefinition, error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(data, crd); err != nil {
		return nil, fmt.Errorf("decode CRD %q: %w", name, err)
	}
	if crd.Kind != "CustomResourceDefinition" || crd.Name == "" {
		return nil, fmt.Errorf("decode CRD %q: not a named CustomResourceDefinition", name)
	}
	return crd, nil
}

// Install applies the CRDs and waits, up to timeout, until each is Established.
func Install(ctx context.Context, cfg *rest.Config, crds []*apiextensionsv1.CustomResourceDefinition, timeout time.Duration) error {
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("install CRDs: %w", err)
	}
	api := client.ApiextensionsV1().CustomResourceDefinitions()
	force := true
	for _, crd := range crds {
		body, err := yaml.Marshal(crd)
		if err != nil {
			return fmt.Errorf("install CRD %s: %w", crd.Name, err)
		}
		if _, err := api.Patch(ctx, crd.Name, types.ApplyYAMLPatchType, body,
			metav1.PatchOptions{FieldManager: fieldManager, Force: &force}); err != nil {
			return fmt.Errorf("install CRD %s: %w", crd.Name, err)
		}
	}
	for _, crd := range crds {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
			got, err := api.Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil //nolint:nilerr // transient until the timeout says otherwise
			}
			return established(got), nil
		})
		if err != nil {
			return fmt.Errorf("install CRD %s: not established after %s: %w", crd.Name, timeout, err)
		}
	}
	return nil
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established {
			return c.Status == apiextensionsv1.ConditionTrue
		}
	}
	return false
}
