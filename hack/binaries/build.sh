#!/usr/bin/env bash
# Builds, once per version, the kube-apiserver, kubectl and etcd binaries that meshfed's
# tests and sandbox run, and prints the directory that holds them.
#
# The versions are pinned by the helper modules beside this script (kube-apiserver/ and
# etcd/). Binaries are cached outside the clone, keyed by those versions, under
# ${MESHFED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshfed}, so only the first run on a
# machine builds (about 8 minutes on 2 cores). Concurrent callers wait on a lock.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MESHFED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshfed}
kube_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kube-apiserver/go.mod")
etcd_version=$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' "$here/etcd/go.mod")
if [[ -z $kube_version || -z $etcd_version ]]; then
  echo "build.sh: cannot read the pinned versions from $here/*/go.mod" >&2
  exit 1
fi
assets="$cache/assets/kubernetes-$kube_version-etcd-$etcd_version"

if [[ -x $assets/kube-apiserver && -x $assets/kubectl && -x $assets/etcd ]]; then
  echo "$assets"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/build.lock"
flock 9
# Another caller may have finished the build while we waited for the lock.
if [[ -x $assets/kube-apiserver && -x $assets/kubectl && -x $assets/etcd ]]; then
  echo "$assets"
  exit 0
fi

tmp=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Stamp the version that `kubectl version` and the API server's /version report.
minor=${kube_version#v1.}
minor=${minor%%.*}
version_flags="-X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$kube_version"
build() { # module-dir package output
  local start=$SECONDS
  echo "build.sh: building $3 from $2 (cached in $assets afterwards)..." >&2
  (cd "$1" && go build -trimpath -ldflags="-s -w $version_flags" -o "$tmp/$3" "$2")
  echo "build.sh: built $3 in $((SECONDS - start))s" >&2
}
build "$here/etcd" . etcd
build "$here/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build "$here/kube-apiserver" k8s.io/kubernetes/cmd/kubectl kubectl

mkdir -p "$(dirname "$assets")"
rm -rf "$assets"
mv "$tmp" "$assets"
trap - EXIT
echo "$assets"
