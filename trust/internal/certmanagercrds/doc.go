// Package certmanagercrds holds copies of cert-manager's CustomResourceDefinitions, as
// published in the cert-manager Go module that go.mod pins (deploy/crds/*.yaml), so that
// a built meshfed binary can install them without a module cache.
//
// The YAML under crds/ is generated: never edit it by hand. `go generate
// ./trust/...` refreshes it (and crds/VERSION) from the pinned module; a test fails
// when the copies differ from the module's.
package certmanagercrds
