#!/usr/bin/env bash
# Prints the path of a headless-capable Chromium for the console's browser test
# (federation/console), installing Debian's `chromium` package first if it is missing.
# Exits non-zero, saying why, when it can neither find nor install one: the test then
# fails rather than skips.
set -euo pipefail

find_chromium() {
  local name
  for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
  done
  return 1
}

if find_chromium; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium.sh: no chromium on PATH and no apt-get to install Debian's chromium package" >&2
  exit 1
fi
as_root=()
if [[ $(id -u) != 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "chromium.sh: no chromium on PATH; installing it needs root (run: apt-get install -y chromium)" >&2
    exit 1
  fi
  as_root=(sudo -n)
fi
# Several installers may run at once (other tests install their tools): apt's own
# lock is waited on rather than failed on.
export DEBIAN_FRONTEND=noninteractive
{
  "${as_root[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    "${as_root[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium
} >&2 || {
  echo "chromium.sh: apt-get install -y chromium failed (see above)" >&2
  exit 1
}
find_chromium || {
  echo "chromium.sh: chromium installed but not on PATH" >&2
  exit 1
}
