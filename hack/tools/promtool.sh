#!/usr/bin/env bash
# Prints the path of a promtool, installing Debian's `prometheus` package (which
# ships it) when none is on PATH. The monitoring tests call it: rule unit tests and
# PromQL checks run the real promtool, so a machine without one fails them instead of
# skipping. $PROMTOOL, if set, names the binary to use.
set -euo pipefail

if [[ -n ${PROMTOOL:-} ]]; then
	command -v "$PROMTOOL" || { echo "PROMTOOL=$PROMTOOL: not found" >&2; exit 1; }
	exit 0
fi
if command -v promtool >/dev/null; then
	command -v promtool
	exit 0
fi

sudo=()
if [[ $(id -u) != 0 ]]; then
	if ! command -v sudo >/dev/null; then
		echo "promtool is missing and installing it needs root: run 'apt-get install -y prometheus' as root, or set PROMTOOL" >&2
		exit 1
	fi
	sudo=(sudo -n)
fi
if ! command -v apt-get >/dev/null; then
	echo "promtool is missing and this is not a Debian-like system: install Prometheus's promtool (2.42 or later) and put it on PATH, or set PROMTOOL" >&2
	exit 1
fi
# Other tests may be installing packages at the same time: wait for dpkg's lock.
apt=("${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600)
echo "installing Debian's prometheus package for promtool" >&2
if ! "${apt[@]}" install -y -qq --no-install-recommends prometheus >&2; then
	"${apt[@]}" update -qq >&2
	"${apt[@]}" install -y -qq --no-install-recommends prometheus >&2
fi
command -v promtool
