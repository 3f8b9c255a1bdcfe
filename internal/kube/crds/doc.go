// Package crds installs CustomResourceDefinitions on an API server and waits until they
// are served.
//
// Install is idempotent: it server-side applies each CRD with its own field manager, so
// running it again, or after a CRD changed, converges to the given definitions. It never
// deletes a CRD (that would delete every object of the kind).
package crds
