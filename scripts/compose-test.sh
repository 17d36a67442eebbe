#!/usr/bin/env bash
# `make compose-test`: the Docker Compose stack users run, built and tested for real.
#  1. a Docker engine and Compose (scripts/docker-engine.sh) and the public base images under
#     the names our files use (scripts/base-images.sh: local stand-ins where no registry answers);
#  2. `config` of docker-compose.yaml alone and with docker-compose.s3.yaml (Compose accepts them);
#  3. our image built from our Dockerfile by Compose (the `build:` of docker-compose.yaml), and
#     the fakes image (compose-tests/fakes.Dockerfile);
#  4. an envoy.yaml for the fakes rendered by the image itself (`sidecar serve --print-config`,
#     as docker-compose.yaml's header tells users), then the stack up with docker-compose.yaml
#     plus compose-tests/docker-compose.test.yaml (fakes and test ports only);
#  5. compose-tests/ (pytest) against the ports published on 127.0.0.1, then the upgrade
#     (`up -d --force-recreate`) and the gateway answering again;
#  6. always, also on failure: `down -v` of the project, its images removed, temp files removed.
#     Kept for the next run: the base images and the build cache (the crates and the cargo
#     target directory live in BuildKit cache mounts, so a rebuild compiles only what changed).
# Environment: COMPOSE (the Compose command; default docker-compose, else `docker compose`),
# KEEP_STACK=1 (leave the stack up for a look; `<tmp>/compose down -v` removes it),
# EXTRA_CA_CERTS (PEM trusted by the image builds; default: /usr/local/share/ca-certificates).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
start=$SECONDS
phase_start=$SECONDS

say() { echo "compose-test: $*"; }
phase() { say "$1 ($((SECONDS - phase_start)) s)"; phase_start=$SECONDS; }

[ -x .venv/bin/python ] || { echo "compose-test: .venv is missing; run make setup" >&2; exit 1; }

scripts/docker-engine.sh

tmp=$(mktemp -d /tmp/unigate-compose-test.XXXXXX)
project="unigate-ct-$$"
image="unigate:ct-$$"
fakes_image="unigate-fakes:ct-$$"
compose() { "$tmp/compose" "$@"; }
cleanup() {
  local rc=$?
  set +e
  if [ ! -x "$tmp/compose" ]; then # failed before anything was started
    rm -rf "$tmp"
    exit "$rc"
  fi
  if [ "$rc" != 0 ]; then
    say "failed; the stack's last log lines:"
    compose logs --no-color --tail 80 2>&1 | sed 's/^/  /'
  fi
  if [ -n "${KEEP_STACK:-}" ]; then
    say "KEEP_STACK set: left up; remove with $tmp/compose down -v --remove-orphans"
    exit "$rc"
  fi
  compose down -v --remove-orphans --timeout 10 2>&1 | grep -v -e '^Stopping' -e '^Removing' | sed 's/^/  /'
  docker image rm "$image" "$fakes_image" >/dev/null 2>&1
  label="label=com.docker.compose.project=$project"
  left="$(docker ps -aq --filter "$label") $(docker network ls -q --filter "$label") $(docker volume ls -q --filter "$label")"
  [ -z "${left// /}" ] || { say "left behind by project $project: $left"; rc=1; }
  rm -rf "$tmp"
  say "cleaned up project $project; total $((SECONDS - start)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Compose 1.29 builds with the `docker` CLI on PATH. BuildKit (the Dockerfile's cache mounts)
# needs a CLI that has buildx, or an older one (< 23) with its built-in BuildKit: a newer CLI
# without buildx refuses DOCKER_BUILDKIT=1. Put the first CLI that can do it first on PATH.
buildkit_docker() {
  local cli v
  for cli in $(type -ap docker); do
    if "$cli" buildx version >/dev/null 2>&1; then echo "$cli"; return 0; fi
    v=$("$cli" version --format '{{.Client.Version}}' 2>/dev/null || true)
    case "$v" in 18.* | 19.* | 20.* | 21.* | 22.*) echo "$cli"; return 0 ;; esac
  done
  return 1
}
cli=$(buildkit_docker) || { echo "compose-test: no docker CLI here builds with BuildKit (install buildx)" >&2; exit 1; }
mkdir -p "$tmp/bin"
ln -s "$cli" "$tmp/bin/docker"
export PATH="$tmp/bin:$PATH" DOCKER_BUILDKIT=1
export EXTRA_CA_CERTS="${EXTRA_CA_CERTS-$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)}"

if [ -n "${COMPOSE:-}" ]; then
  read -r -a compose_cmd <<<"$COMPOSE"
elif command -v docker-compose >/dev/null; then
  compose_cmd=(docker-compose)
else
  compose_cmd=(docker compose)
fi

# The variables docker-compose.yaml reads, for this run only. Compose gets a clean
# environment plus this file, so nothing from the caller's shell or a developer's .env
# (AWS_PROFILE, keys) reaches the stack.
read -r gw_port ctl_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
# The keys the fakes accept and the system tests' assertions expect (tests/system_harness.py).
read -r aws_key aws_secret aws_token api_key openai_key < <(.venv/bin/python -c '
import sys; sys.path.insert(0, "tests")
from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN
from system_harness import CLIENT_KEY, UPSTREAM_OPENAI_KEY
print(DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, CLIENT_KEY, UPSTREAM_OPENAI_KEY)')
rand() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
cat >"$tmp/test.env" <<EOF
API_KEY=$api_key
UNIGATE_SIDECAR_TOKEN=$(rand)
OPENAI_API_KEY=$openai_key
AWS_REGION=us-east-1
AWS_ACCESS_KEY_ID=$aws_key
AWS_SECRET_ACCESS_KEY=$aws_secret
AWS_SESSION_TOKEN=$aws_token
GATEWAY_PUBLISH_ADDR=127.0.0.1
GATEWAY_HOST_PORT=$gw_port
RUST_LOG=info
MINIO_ROOT_PASSWORD=compose-test-only
UNIGATE_IMAGE=$image
UNIGATE_FAKES_IMAGE=$fakes_image
UNIGATE_FAKES_CONTROL_PORT=$ctl_port
UNIGATE_FAKE_OPENAI_KEY=$openai_key
UNIGATE_TEST_ENVOY_YAML=$tmp/envoy.yaml
EOF
# Wrappers with this environment and project: `compose-files` takes its own -f options,
# `compose` adds ours (the tests use it too, for exec and logs).
wrapper() { # wrapper NAME [compose arguments before the caller's]
  local name=$1 v
  shift
  {
    echo '#!/usr/bin/env bash'
    printf 'cd %q\n' "$repo"
    printf 'exec env -i PATH=%q HOME=%q DOCKER_BUILDKIT=1 EXTRA_CA_CERTS=%q' "$PATH" "$HOME" "$EXTRA_CA_CERTS"
    for v in DOCKER_HOST DOCKER_CONFIG DOCKER_CONTEXT DOCKER_CERT_PATH DOCKER_TLS_VERIFY; do
      [ -z "${!v:-}" ] || printf ' %s=%q' "$v" "${!v}"
    done
    printf ' %q' "${compose_cmd[@]}" --env-file "$tmp/test.env" -p "$project" "$@"
    echo ' "$@"'
  } >"$tmp/$name"
  chmod +x "$tmp/$name"
}
wrapper compose-files
wrapper compose -f docker-compose.yaml -f compose-tests/docker-compose.test.yaml


phase "engine ready: $(docker version --format 'Docker {{.Server.Version}}'), $("${compose_cmd[@]}" version --short 2>/dev/null || "${compose_cmd[@]}" version | head -n 1)"
scripts/base-images.sh
phase "base images ready"

# Compose accepts the files users run: the stack alone and with the S3 override.
"$tmp/compose-files" -f docker-compose.yaml config -q
"$tmp/compose-files" -f docker-compose.yaml -f docker-compose.s3.yaml config -q
compose config -q
phase "compose files accepted"

# The builder's step names show EXTRA_CA_CERTS expanded: keep the certificates out of the log.
compose build 2>&1 | sed -E -e 's/-----BEGIN CERTIFICATE-----.*/[EXTRA_CA_CERTS]/' \
  -e '/^[A-Za-z0-9+\/]{16,}={0,2}$/d' -e '/^-----END CERTIFICATE-----/d'
size() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'; }
phase "images built: $image ($(size "$image")), $fakes_image ($(size "$fakes_image"))"

# The Envoy configuration for the fakes, rendered by the image (docker-compose.yaml's header).
compose run --rm --no-deps -T \
  -e GATEWAY_BIND=0.0.0.0 \
  -e OPENAI_BASE_URL=http://fakes:8000/v1 \
  -e AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://fakes:8001 \
  -e AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME=http://fakes:8001 \
  sidecar serve --print-config >"$tmp/envoy.yaml"
chmod 0644 "$tmp/envoy.yaml"
grep -q 'address: fakes, port_value: 8001' "$tmp/envoy.yaml" \
  || { echo "compose-test: the rendered envoy.yaml does not point at the fakes" >&2; exit 1; }

# Bounded wait for an HTTP 200 on a published port.
wait_200() { # wait_200 URL SECONDS
  local i
  for i in $(seq 1 "$2"); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true)" = 200 ] && return 0
    sleep 1
  done
  echo "compose-test: $1 did not answer 200 within $2 s" >&2
  return 1
}
compose up -d fakes
wait_200 "http://127.0.0.1:$ctl_port/health" 60
compose up -d --no-build
wait_200 "http://127.0.0.1:$gw_port/health" 120
# Compose waited for the sidecar's healthcheck (envoy depends on it); envoy's own is checked
# here, bounded: the first check runs one interval (10 s) after the start.
for service in sidecar envoy; do
  id=$(compose ps -q "$service")
  for _ in $(seq 1 60); do
    health=$(docker inspect -f '{{.State.Health.Status}}' "$id")
    [ "$health" = starting ] || break
    sleep 1
  done
  if [ "$health" != healthy ]; then
    echo "compose-test: $service is $health; its healthcheck said:" >&2
    docker inspect -f '{{range .State.Health.Log}}{{.ExitCode}} {{.Output}}{{"\n"}}{{end}}' "$id" >&2
    exit 1
  fi
done
phase "stack up and healthy: gateway on 127.0.0.1:$gw_port"

env -i PATH="$PATH" HOME="$HOME" LANG="${LANG:-C.UTF-8}" \
  UNIGATE_COMPOSE="$tmp/compose" \
  UNIGATE_COMPOSE_URL="http://127.0.0.1:$gw_port" \
  UNIGATE_COMPOSE_FAKES_URL="http://127.0.0.1:$ctl_port" \
  UNIGATE_COMPOSE_API_KEY="$api_key" \
  UNIGATE_COMPOSE_OPENAI_KEY="$openai_key" \
  .venv/bin/python -m pytest compose-tests -q -ra -p no:cacheprovider
phase "tests passed"

# The upgrade docs/operations.md gives: Compose 1.29 recreates only services whose own
# configuration or image changed, which would leave envoy in a removed sidecar's network
# namespace; --force-recreate recreates both, and envoy must join the new sidecar.
compose up -d --no-build --force-recreate
[ "$(docker inspect -f '{{.HostConfig.NetworkMode}}' "$(compose ps -q envoy)")" = "container:$(compose ps -q sidecar)" ] \
  || { echo "compose-test: after up --force-recreate envoy is not in the sidecar's network namespace" >&2; exit 1; }
wait_200 "http://127.0.0.1:$gw_port/health" 120
phase "recreated as an upgrade does; the gateway answers"
