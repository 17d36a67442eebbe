#!/usr/bin/env bash
# Runs every fuzz target of the translation core for a bounded time (FUZZ_SECONDS, default 60)
# with a seed corpus built from the golden fixtures and stream fixtures.
# Needs the rustup nightly toolchain; installs cargo-fuzz if missing.
set -euo pipefail
cd "$(dirname "$0")/../core"
seconds="${FUZZ_SECONDS:-60}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
python3 fuzz/seed.py
status=0
for target in request_plan response_decode stream_decode sigv4_path; do
  echo "fuzz: $target for ${seconds}s"
  if ! cargo +nightly fuzz run -O "$target" -- -max_total_time="$seconds" -max_len=65536 \
      -print_final_stats=1 2>&1 | grep -E "stat::number_of_executed_units|ERROR|panicked|SUMMARY|Test unit written"; then
    :
  fi
  if ls fuzz/artifacts/"$target"/crash-* >/dev/null 2>&1; then
    echo "fuzz: $target found a crash: $(ls fuzz/artifacts/"$target"/crash-*)" >&2
    status=1
  fi
done
exit $status
