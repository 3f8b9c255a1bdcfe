package version

import "runtime"

// Package is this package's import path, for -ldflags "-X Package.Version=…".
const Package = "github.com/meshfed/meshfed/internal/version"

var (
	// Version is the release (git describe) the binary was built from; "dev" when the
	// build did not say.
	Version = "dev"
	// Commit is the full commit hash the binary was built from; empty when the build
	// did not say.
	Commit = ""
)

// String describes the build in one line: version, commit, Go version and platform,
// e.g. "v0.3.0-12-gabc1234 (commit abc1234…, go1.26.8, linux/amd64)".
func String() string {
	s := Version + " ("
	if Commit != "" {
		s += "commit " + Commit + ", "
	}
	return s + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}

// LDFlags returns the go build -ldflags arguments that set Version and Commit.
func LDFlags(version, commit string) string {
	return "-X " + Package + ".Version=" + version + " -X " + Package + ".Commit=" + commit
}
