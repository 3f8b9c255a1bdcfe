#!/usr/bin/env bash
# Usage: hack/generate.sh CONTROLLER_GEN DIR
# Regenerates the deepcopy functions in DIR/api and the CRD YAML in DIR/deploy/crds,
# copies the CRDs into the Helm chart (DIR/deploy/charts/meshfed/crds), and renders the
# plain manifests under DIR/deploy/{hub,agent,gateway} from the chart.
set -euo pipefail
controller_gen=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$2"
dir=$(pwd)
"$controller_gen" object:headerFile=/dev/null paths=./api/...
rm -f deploy/crds/*.yaml
"$controller_gen" crd:crdVersions=v1 paths=./api/... output:crd:artifacts:config=deploy/crds
mkdir -p deploy/charts/meshfed/crds
rm -f deploy/charts/meshfed/crds/*.yaml
cp deploy/crds/*.yaml deploy/charts/meshfed/crds/
(cd "$root" && go run ./internal/dev/chart/gen "$dir/deploy")
