// Package version holds the version of the meshfed and meshfedctl binaries.
//
// Version and Commit are set at link time (go build -ldflags "-X
// github.com/meshfed/meshfed/internal/version.Version=v0.1.0 -X
// github.com/meshfed/meshfed/internal/version.Commit=<sha>"); `make build` and `make
// images` pass `git describe --always --dirty` and the commit. A binary built without
// them (go build, go run, go test) reports "dev" and no commit.
//
// The package has no dependencies beyond the standard library, so that product and
// tooling alike may import it.
package version
