#!/usr/bin/env bash
# Makes sure a Docker engine and Docker Compose answer, for `make compose-test`:
#  - installs Debian's docker.io and docker-compose when `docker` / a Compose is missing;
#  - starts `dockerd` in the background only when `docker info` fails (machines without
#    systemd), and waits for it, bounded. A running daemon is left exactly as it is.
# Prints nothing but progress; exits non-zero when the engine cannot be made to answer.
set -euo pipefail

say() { echo "docker-engine: $*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "docker-engine: need root for: $*" >&2; return 1; fi
}

apt_install() {
  # Another apt may hold the dpkg lock for a while (setup running next to us): wait, bounded.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" >/dev/null
}

have_compose() {
  docker-compose version >/dev/null 2>&1 || docker compose version >/dev/null 2>&1
}

missing=()
if ! docker info >/dev/null 2>&1 && ! command -v dockerd >/dev/null; then missing+=(docker.io); fi
have_compose || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "docker-engine: install ${missing[*]} (no apt-get here)" >&2; exit 1; }
  say "installing ${missing[*]} (Debian packages: Docker Engine, Docker Compose 1.29)"
  apt_install "${missing[@]}"
fi

if docker info >/dev/null 2>&1; then
  say "daemon answers; leaving it as it is"
  exit 0
fi

log="${DOCKERD_LOG:-/var/log/dockerd.log}"
say "no daemon answers; starting dockerd in the background (log: $log)"
# setsid + nohup: the daemon outlives this script and the make that ran it.
as_root setsid nohup dockerd >>"$log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    say "daemon up: $(docker version --format 'engine {{.Server.Version}}')"
    exit 0
  fi
  sleep 1
done
echo "docker-engine: dockerd did not answer within 60 s; last lines of $log:" >&2
tail -n 20 "$log" >&2 || true
exit 1
