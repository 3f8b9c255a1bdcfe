#!/usr/bin/env bash
# Usage: hack/verify.sh CONTROLLER_GEN
# Fails if the generated files differ from what make generate writes, or if go.mod and
# go.sum are not tidy. It regenerates in a copy of the tree, so it never touches the
# working tree and does not depend on git state.
set -euo pipefail
controller_gen=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cp -r "$root/go.mod" "$root/go.sum" "$root/api" "$root/deploy" "$tmp/"
bash "$root/hack/generate.sh" "$controller_gen" "$tmp"
status=0
for dir in api deploy; do
  if ! diff -ru "$root/$dir" "$tmp/$dir"; then
    echo "verify: $dir/ holds generated files that differ from make generate's output: run make generate" >&2
    status=1
  fi
done

(cd "$root" && go mod tidy -diff) || { echo "verify: go.mod/go.sum are not tidy: run go mod tidy" >&2; status=1; }
exit $status
