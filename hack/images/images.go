package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/meshfed/meshfed/internal/version"
)

const (
	// imageName names the image's directory, tarballs and digest file, and the
	// repository of the tarballs' tags.
	imageName = "meshfed"
	// mainPackage is the command the image runs.
	mainPackage = "github.com/meshfed/meshfed/cmd/meshfed"
	// binaryPath is where the image holds the binary, its entrypoint.
	binaryPath = "/usr/local/bin/meshfed"
	// user is the image's numeric non-root user and group (the "nonroot" of
	// distroless images), numeric because the image has no /etc/passwd and because
	// the kubelet checks runAsNonRoot only against a numeric user.
	user = "65532:65532"
	// defaultSource is the org.opencontainers.image.source label's default.
	defaultSource = "https://github.com/meshfed/meshfed"

	labelVersion  = "org.opencontainers.image.version"
	labelRevision = "org.opencontainers.image.revision"
	labelSource   = "org.opencontainers.image.source"
)

// epoch is the modification time of every file in the layer, so that a build is
// reproducible.
var epoch = time.Unix(0, 0).UTC()

// options says what to build and where to write it.
type options struct {
	Version   string        // required: reported by --version, label org.opencontainers.image.version
	Commit    string        // label org.opencontainers.image.revision
	Source    string        // label org.opencontainers.image.source; default defaultSource
	Platforms []v1.Platform // required, e.g. linux/amd64
	Out       string        // output directory
}

// result is what run wrote.
type result struct {
	Digest     v1.Hash // of the image index
	Layout     string  // OCI layout directory
	DigestFile string
	Images     []platformImage
}

type platformImage struct {
	Platform   v1.Platform
	Digest     v1.Hash // of the platform's manifest
	Size       int64   // manifest, config and layer, compressed: what a pull transfers
	BinarySize int64
	Tarball    string
}

// run builds an image per platform, gathers them in an index and writes the layout,
// the tarballs and the digest file.
func run(ctx context.Context, opts options) (*result, error) {
	if opts.Version == "" {
		return nil, errors.New("no version: give --version (make images passes git describe)")
	}
	if len(opts.Platforms) == 0 {
		return nil, errors.New("no platforms: give --platforms, e.g. linux/amd64,linux/arm64")
	}
	if opts.Source == "" {
		opts.Source = defaultSource
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(opts.Out, ".build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	labels := map[string]string{labelVersion: opts.Version, labelRevision: opts.Commit, labelSource: opts.Source}
	tag, err := name.NewTag(imageName + ":" + tagOf(opts.Version))
	if err != nil {
		return nil, err
	}
	res := &result{
		Layout:     filepath.Join(opts.Out, imageName),
		DigestFile: filepath.Join(opts.Out, imageName+".digest"),
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range opts.Platforms {
		if p.Variant != "" || len(p.OSFeatures) > 0 || p.OSVersion != "" {
			return nil, fmt.Errorf("platform %s: give OS/ARCH only (e.g. linux/arm64): variants are not built", p)
		}
		bin := filepath.Join(tmp, imageName+"-"+platformSlug(p))
		if err := buildBinary(ctx, bin, p, opts.Version, opts.Commit); err != nil {
			return nil, err
		}
		img, err := image(bin, p, labels)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", p, err)
		}
		pi := platformImage{Platform: p, Tarball: filepath.Join(opts.Out, imageName+"-"+platformSlug(p)+".tar")}
		if pi.Digest, err = img.Digest(); err != nil {
			return nil, err
		}
		if pi.Size, err = pullSize(img); err != nil {
			return nil, err
		}
		if fi, err := os.Stat(bin); err == nil {
			pi.BinarySize = fi.Size()
		}
		if err := tarball.WriteToFile(pi.Tarball, tag, img); err != nil {
			return nil, fmt.Errorf("write %s: %w", pi.Tarball, err)
		}
		res.Images = append(res.Images, pi)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	idx = mutate.Annotations(idx, labels).(v1.ImageIndex)
	if res.Digest, err = idx.Digest(); err != nil {
		return nil, err
	}

	// A fresh layout each time: appending to an old one would leave its index.json
	// naming earlier builds too.
	if err := os.RemoveAll(res.Layout); err != nil {
		return nil, err
	}
	lp, err := layout.Write(res.Layout, empty.Index)
	if err != nil {
		return nil, err
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag.TagStr(),
	})); err != nil {
		return nil, fmt.Errorf("write OCI layout %s: %w", res.Layout, err)
	}
	if err := os.WriteFile(res.DigestFile, []byte(res.Digest.String()+"\n"), 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

// buildBinary cross-compiles a static meshfed for p into out.
func buildBinary(ctx context.Context, out string, p v1.Platform, ver, commit string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w "+version.LDFlags(ver, commit),
		"-o", out, mainPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s: %w", mainPackage, p, err)
	}
	return nil
}

// image puts the binary bin on an empty base: one layer, non-root, no shell.
func image(bin string, p v1.Platform, labels map[string]string) (v1.Image, error) {
	layer, err := binaryLayer(bin)
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{CreatedBy: "go build " + mainPackage, Created: v1.Time{Time: epoch}},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: epoch}
	cf.Config.User = user
	cf.Config.Entrypoint = []string{binaryPath}
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = labels
	return mutate.ConfigFile(img, cf)
}

// binaryLayer is a gzipped tar of bin at binaryPath, its parent directories, and
// nothing else.
func binaryLayer(bin string) (v1.Layer, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(gz)
	dir := ""
	for _, d := range strings.Split(strings.Trim(filepath.Dir(binaryPath), "/"), "/") {
		dir += d + "/"
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: strings.TrimPrefix(binaryPath, "/"), Mode: 0o755, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX,
	}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	compressed := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// pullSize is the bytes a pull of img transfers: manifest, config and layers.
func pullSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	n := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}

func platformSlug(p v1.Platform) string {
	return strings.ReplaceAll(p.String(), "/", "-")
}

// tagOf turns a version into a valid tag: characters a tag may not hold become "-".
func tagOf(v string) string {
	t := regexp.MustCompile(`[^A-Za-z0-9_.-]`).ReplaceAllString(v, "-")
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}
