#!/usr/bin/env bash
# Usage: hack/generate.sh CONTROLLER_GEN DIR
# Regenerates the deepcopy functions in DIR/api and the CRD YAML in DIR/deploy/crds.
set -euo pipefail
controller_gen=$1
cd "$2"
"$controller_gen" object:headerFile=/dev/null paths=./api/...
rm -f deploy/crds/*.yaml
"$controller_gen" crd:crdVersions=v1 paths=./api/... output:crd:artifacts:config=deploy/crds
