#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make setup`: wrk (the load generator) and taskset
# (CPU pinning), from Debian's packages when missing. LiteLLM, the gateway compared against,
# is installed by bench/run.py itself into .bench-venv on its first run.
set -euo pipefail

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "install-bench-tools: need root for: $*" >&2; return 1; fi
}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v taskset >/dev/null || missing+=(util-linux)
[ ${#missing[@]} -eq 0 ] && exit 0
command -v apt-get >/dev/null || { echo "install-bench-tools: install ${missing[*]} (no apt-get here)" >&2; exit 1; }
echo "install-bench-tools: installing ${missing[*]}"
as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
