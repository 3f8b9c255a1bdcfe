#!/usr/bin/env bash
# Usage: hack/verify-imports.sh
# Fails if a product package imports a dev package. The product is what ships in the
# meshfed binary (hub, agent, gateway) and the packages it is built from: federation/,
# clusteragent/, eastwest/, trust/, api/ and everything they import. Dev packages
# (internal/dev/...: the sandbox, the demo, local control planes, the process runner,
# test hosts, the echo backend) only run the sandbox and the tests.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
module=$(go list -m)
product=(./cmd/meshfed ./federation/... ./clusteragent/... ./eastwest/... ./trust/... ./api/...)
status=0
for pkg in $(go list "${product[@]}"); do
  bad=$(go list -deps "$pkg" | grep -E "^$module/internal/dev(/|$)" || true)
  if [[ -n $bad ]]; then
    for dev in $bad; do
      echo "verify-imports: product package $pkg imports dev package $dev (directly or through another package): move what it needs out of internal/dev" >&2
    done
    status=1
  fi
done
exit $status
