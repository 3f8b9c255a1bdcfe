// Command images builds meshfed's container image without a Docker engine: one image
// (hub, agent and gateway are subcommands of the meshfed binary) for each platform,
// gathered in a multi-arch OCI image index.
//
// For each platform it cross-compiles a static binary (CGO_ENABLED=0, -trimpath) and
// places it on an empty base as one layer holding only /usr/local/bin/meshfed: no
// shell, no libc, no /etc/passwd. The image runs as 65532:65532 (non-root, numeric so
// that the kubelet's runAsNonRoot can check it), with the binary as entrypoint and the
// OCI labels org.opencontainers.image.version, .revision and .source. Layers carry
// fixed timestamps, so the same commit and toolchain give the same digests.
//
// Output, under --out (make images: bin/images):
//
//	meshfed/                  OCI image layout whose index.json names the image index
//	                          (crane push bin/images/meshfed REGISTRY/meshfed:TAG)
//	meshfed-<os>-<arch>.tar   one docker-loadable tarball per platform (docker load,
//	                          kind load image-archive)
//	meshfed.digest            the index's digest, sha256:…, for pinning by digest
//
// It is a development tool: the product never imports it.
package main
