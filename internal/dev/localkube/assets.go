package localkube

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// AssetsEnv names the environment variable that points at a directory holding the
// etcd, kube-apiserver and kubectl binaries. Without it, Assets builds them (once per
// machine and version) with hack/binaries/build.sh.
const AssetsEnv = "MESHFED_ASSETS"

var assets struct {
	once sync.Once
	dir  string
	err  error
}

// Assets returns the directory holding etcd, kube-apiserver and kubectl.
func Assets() (string, error) {
	assets.once.Do(func() { assets.dir, assets.err = findAssets() })
	return assets.dir, assets.err
}

func findAssets() (string, error) {
	if dir := os.Getenv(AssetsEnv); dir != "" {
		return dir, checkAssets(dir)
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("locate binaries: set %s or run from the meshfed source tree: %w", AssetsEnv, err)
	}
	var stdout bytes.Buffer
	cmd := exec.Command("bash", filepath.Join(root, "hack", "binaries", "build.sh"))
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build binaries with hack/binaries/build.sh: %w", err)
	}
	dir := strings.TrimSpace(stdout.String())
	return dir, checkAssets(dir)
}

func checkAssets(dir string) error {
	for _, name := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := exec.LookPath(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("binaries directory %q: %w", dir, err)
		}
	}
	return nil
}

// ModuleRoot walks up from the working directory to meshfed's go.mod: the checkout
// tests and dev tools read files of (binaries built with -trimpath know no source
// paths).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module github.com/meshfed/meshfed\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no meshfed go.mod above the working directory")
		}
		dir = parent
	}
}
