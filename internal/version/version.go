package version

import (
	"runtime"
	"strings"
)

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

// Release is the version part of a String (the text before " ("): what two builds
// must share to count as the same release, whatever their platform or Go version.
func Release(s string) string {
	r, _, _ := strings.Cut(s, " (")
	return strings.TrimSpace(r)
}

// LDFlags returns the go build -ldflags arguments that set Version and Commit.
func LDFlags(version, commit string) string {
	return "-X " + Package + ".Version=" + version + " -X " + Package + ".Commit=" + commit
}
