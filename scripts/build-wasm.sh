#!/usr/bin/env bash
# Builds build/unigate.wasm with whichever wasm32-wasip1 toolchain this machine has:
#  1. rustup with the wasm32-wasip1 target (an ordinary developer laptop);
#  2. Debian's rustc-web + rust-web-src + lld + wasi-libc, building std from source
#     (machines where rustup cannot download targets, and the Dockerfile's builder).
# Usage: scripts/build-wasm.sh [clippy|trap|floor]
#   clippy: lint the filter for the wasm target instead of building it
#   trap:   build the test-only build/unigate-trap.wasm (feature test-trap; see Cargo.toml)
#   floor:  build the benchmark-only build/unigate-floor.wasm (feature bench-floor)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-build}"
out=build/unigate.wasm
features=()
if [ "$mode" = trap ]; then
  out=build/unigate-trap.wasm
  features=(--features test-trap)
elif [ "$mode" = floor ]; then
  out=build/unigate-floor.wasm
  features=(--features bench-floor)
fi

if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  if [ "$mode" = clippy ]; then
    exec cargo clippy -p unigate-filter --target wasm32-wasip1 -- -D warnings
  fi
  cargo build -p unigate-filter --profile wasm --target wasm32-wasip1 "${features[@]}"
  src=target/wasm32-wasip1/wasm/unigate.wasm
elif [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library ] && command -v wasm-ld >/dev/null; then
  export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
  export CARGO_TARGET_WASM32_WASIP1_LINKER=wasm-ld
  export RUSTFLAGS="-C link-self-contained=no -L /usr/lib/wasm32-wasi"
  # Its own target dir: the two compilers must not invalidate each other's artifacts.
  export CARGO_TARGET_DIR=target/wasm
  if [ "$mode" = clippy ]; then
    PATH=/usr/bin:$PATH exec /usr/bin/cargo clippy -p unigate-filter --target wasm32-wasip1 \
      -Zbuild-std=std,panic_abort -- -D warnings
  fi
  /usr/bin/cargo build -p unigate-filter --profile wasm --target wasm32-wasip1 -Zbuild-std=std,panic_abort "${features[@]}"
  src=target/wasm/wasm32-wasip1/wasm/unigate.wasm
else
  echo "No wasm32-wasip1 toolchain: run 'rustup target add wasm32-wasip1', or on Debian 'make setup'." >&2
  exit 1
fi
mkdir -p build
cp "$src" "$out.tmp" && mv "$out.tmp" "$out"
echo "built $out ($(wc -c <"$out") bytes)"
