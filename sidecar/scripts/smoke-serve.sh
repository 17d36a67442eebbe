#!/usr/bin/env bash
# Smoke test of `unigate serve` with a fake OpenAI upstream, all on 127.0.0.1:
# starts the fake and the gateway, reads the generated key from the gateway's stderr, checks
# GET /health, GET /v1/models and a chat completion, then stops the gateway with SIGTERM.
# Usage: sidecar/scripts/smoke-serve.sh   (from the repo root; needs target/release/unigate,
# build/unigate.wasm and an Envoy binary: ENVOY_BIN or `envoy` on PATH)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${UNIGATE_BIN:-target/release/unigate}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fake=$(free_port); port=$(free_port); admin=$(free_port); side=$(free_port)

python3 sidecar/scripts/fake_openai.py "$fake" 2>"$work/fake.log" &
pids+=($!)

env -u API_KEY OPENAI_API_KEY=sk-smoke OPENAI_BASE_URL="http://127.0.0.1:$fake/v1" \
  GATEWAY_PORT="$port" ENVOY_ADMIN_PORT="$admin" UNIGATE_SIDECAR_PORT="$side" \
  UNIGATE_RUN_DIR="$work/run" ENVOY_CONCURRENCY=1 \
  "$bin" serve 2>"$work/serve.log" &
serve=$!
pids+=("$serve")

for _ in $(seq 1 150); do
  grep -q '^unigate: gateway on ' "$work/serve.log" && break
  kill -0 "$serve" 2>/dev/null || { cat "$work/serve.log"; echo "FAIL: unigate serve exited"; exit 1; }
  sleep 0.2
done
grep '^unigate: gateway on ' "$work/serve.log" || { cat "$work/serve.log"; echo "FAIL: not ready"; exit 1; }
key=$(sed -n 's/^unigate: no API_KEY set; generated one for this run: //p' "$work/serve.log")
[ -n "$key" ] || { echo "FAIL: no generated key"; exit 1; }

check() { # name expected-status curl-args...
  local name=$1 want=$2; shift 2
  local got
  got=$(curl -s -o "$work/body" -w '%{http_code}' --max-time 20 "$@")
  if [ "$got" = "$want" ]; then echo "ok   $name -> $got"; else echo "FAIL $name -> $got (want $want): $(cat "$work/body")"; exit 1; fi
}
check "GET /health" 200 "http://127.0.0.1:$port/health"
check "GET /v1/models (key)" 200 -H "authorization: Bearer $key" "http://127.0.0.1:$port/v1/models"
check "GET /v1/models (no key)" 401 "http://127.0.0.1:$port/v1/models"
check "POST /v1/chat/completions" 200 -H "authorization: Bearer $key" -H 'content-type: application/json' \
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' "http://127.0.0.1:$port/v1/chat/completions"
grep -q "sk-smoke" "$work/body" || { echo "FAIL: upstream did not get the OpenAI key: $(cat "$work/body")"; exit 1; }
if grep -q -e "$key" -e sk-smoke "$work/run/envoy.yaml"; then echo "FAIL: secret in envoy.yaml"; exit 1; fi
echo "ok   no secrets in envoy.yaml"

kill -TERM "$serve"
rc=0; wait "$serve" || rc=$?
[ "$rc" = 0 ] && echo "ok   SIGTERM -> exit 0" || { echo "FAIL: exit $rc after SIGTERM"; cat "$work/serve.log"; exit 1; }
if curl -s --max-time 2 "http://127.0.0.1:$admin/ready" >/dev/null; then echo "FAIL: Envoy still running"; exit 1; fi
echo "ok   Envoy stopped"
echo "smoke: all checks passed"
