package certmanagercrds

import (
	"embed"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/meshfed/meshfed/internal/kube/crds"
)

//go:generate go run gen.go

//go:embed crds/*.yaml crds/VERSION
var files embed.FS

// Load returns cert-manager's CRDs.
func Load() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	return crds.Load(files, "crds")
}

// Version is the cert-manager module version the copies come from, e.g. "v1.21.2".
func Version() string {
	data, err := files.ReadFile("crds/VERSION")
	if err != nil {
		return ""
	}
	_, v, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
	return v
}
