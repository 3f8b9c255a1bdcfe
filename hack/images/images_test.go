package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestHostImage builds the image for the host's architecture only, reads it back
// from the OCI layout it wrote, checks the config and the layer, and runs the
// binary it holds.
func TestHostImage(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the image's linux binary runs only on a linux host")
	}
	const ver, commit = "v0.0.0-imagetest", "0123456789abcdef0123456789abcdef01234567"
	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	res, err := run(t.Context(), options{Version: ver, Commit: commit, Platforms: []v1.Platform{platform}, Out: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}

	// The layout's index.json names one image index, whose digest the digest file holds.
	lp, err := layout.FromPath(res.Layout)
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	topm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(topm.Manifests) != 1 || topm.Manifests[0].MediaType != types.OCIImageIndex {
		t.Fatalf("layout's index.json = %+v, want one %s (crane push takes the only entry)", topm.Manifests, types.OCIImageIndex)
	}
	digestFile, err := os.ReadFile(res.DigestFile)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(digestFile)), topm.Manifests[0].Digest.String(); got != want || got != res.Digest.String() {
		t.Errorf("digest file holds %s, layout names %s, run reported %s", got, want, res.Digest)
	}
	idx, err := top.ImageIndex(topm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Platform == nil || !im.Manifests[0].Platform.Equals(platform) {
		t.Fatalf("index manifests = %+v, want one for %s", im.Manifests, platform)
	}
	if im.Annotations[labelVersion] != ver || im.Annotations[labelRevision] != commit {
		t.Errorf("index annotations = %v, want version %s and revision %s", im.Annotations, ver, commit)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != platform.OS || cf.Architecture != platform.Architecture {
		t.Errorf("config platform = %s/%s, want %s", cf.OS, cf.Architecture, platform)
	}
	if uid, _, _ := strings.Cut(cf.Config.User, ":"); uid == "" || uid == "0" || uid == "root" || cf.Config.User != user {
		t.Errorf("config user = %q, want the numeric non-root %q", cf.Config.User, user)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{binaryPath}) || len(cf.Config.Cmd) != 0 {
		t.Errorf("config entrypoint = %q cmd = %q, want [%s] and no cmd", cf.Config.Entrypoint, cf.Config.Cmd, binaryPath)
	}
	for k, want := range map[string]string{labelVersion: ver, labelRevision: commit, labelSource: defaultSource} {
		if got := cf.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}

	// One layer holding the binary and its directories only: no shell, no libc.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("image has %d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var names []string
	var binary []byte
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if "/"+h.Name == binaryPath {
			if h.Mode&0o111 == 0 || h.Uid != 0 {
				t.Errorf("%s: mode %o uid %d, want executable and owned by root (not writable by the image's user)", binaryPath, h.Mode, h.Uid)
			}
			if binary, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if want := []string{"usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/meshfed"}; !slices.Equal(names, want) {
		t.Fatalf("layer holds %q, want exactly %q", names, want)
	}

	// Static: no program interpreter (dynamic loader), which an empty base lacks.
	ef, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked: it cannot run on an empty base (build with CGO_ENABLED=0)", binaryPath)
		}
	}
	bin := filepath.Join(t.TempDir(), "meshfed")
	if err := os.WriteFile(bin, binary, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("meshfed --version: %v\n%s", err, out)
	}
	if want := "meshfed " + ver + " (commit " + commit + ", "; !strings.HasPrefix(string(out), want) {
		t.Errorf("meshfed --version printed %q, want it to start with %q", out, want)
	}

	// What `crane push bin/images/meshfed REF` does (the layout's only entry, written as
	// an index) lands in a registry under the digest file's digest.
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref, err := name.ParseReference(strings.TrimPrefix(reg.URL, "http://") + "/meshfed:test")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push to a registry: %v", err)
	}
	if d, err := remote.Head(ref, remote.WithContext(t.Context())); err != nil || d.Digest != res.Digest {
		t.Errorf("registry holds %s:test at %v (%v), want the digest file's %s", ref.Context(), d, err, res.Digest)
	}

	// The docker-loadable tarball holds the same image: same config (which names the
	// layer's content by diff ID); its manifest differs, being docker's format.
	tb, err := tarball.ImageFromPath(res.Images[0].Tarball, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tb.ConfigName(); err != nil || got != want {
		t.Errorf("tarball's image config = %s (%v), want %s", got, err, want)
	}
	t.Logf("%s: %.1f MB to pull, binary %.1f MB", platform, mb(res.Images[0].Size), mb(res.Images[0].BinarySize))
}

func TestRunRefusesBadOptions(t *testing.T) {
	amd64 := []v1.Platform{{OS: "linux", Architecture: "amd64"}}
	for name, tc := range map[string]struct {
		opts options
		want string
	}{
		"no version":   {options{Platforms: amd64}, "give --version"},
		"no platforms": {options{Version: "v1"}, "give --platforms"},
		"variant":      {options{Version: "v1", Platforms: []v1.Platform{{OS: "linux", Architecture: "arm64", Variant: "v8"}}}, "give OS/ARCH only"},
	} {
		t.Run(name, func(t *testing.T) {
			tc.opts.Out = t.TempDir()
			if _, err := run(t.Context(), tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run(%+v) = %v, want an error saying %q", tc.opts, err, tc.want)
			}
		})
	}
}
