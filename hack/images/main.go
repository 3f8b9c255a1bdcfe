package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func main() {
	var (
		opts      options
		platforms string
	)
	flag.StringVar(&opts.Version, "version", "", "version the binary reports and the image's org.opencontainers.image.version label (make images: git describe)")
	flag.StringVar(&opts.Commit, "commit", "", "commit the binary reports and the image's org.opencontainers.image.revision label")
	flag.StringVar(&opts.Source, "source", defaultSource, "the image's org.opencontainers.image.source label")
	flag.StringVar(&opts.Out, "out", "bin/images", "directory for the OCI layout, the tarballs and the digest file")
	flag.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated OS/ARCH[/VARIANT] list")
	flag.Parse()
	for _, p := range strings.Split(platforms, ",") {
		pl, err := v1.ParsePlatform(strings.TrimSpace(p))
		if err != nil {
			fail(fmt.Errorf("--platforms: %q: %w", p, err))
		}
		opts.Platforms = append(opts.Platforms, *pl)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := run(ctx, opts)
	if err != nil {
		fail(err)
	}
	for _, img := range res.Images {
		fmt.Printf("%-14s %s  %5.1f MB (binary %.1f MB)  %s\n", img.Platform.String(), img.Digest, mb(img.Size), mb(img.BinarySize), img.Tarball)
	}
	fmt.Printf("index          %s  (%s, %s)\n", res.Digest, res.Layout, res.DigestFile)
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "images:", err)
	os.Exit(1)
}
