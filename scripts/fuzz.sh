#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (FUZZ_SECONDS, default 60): the translation core's
# (core/fuzz, seeds from the golden fixtures and stream fixtures) and the sidecar's text
# extraction (sidecar/fuzz, seeds from sidecar/fuzz/seed.py; a slow input (over 10 s) or an
# out-of-memory counts as a crash there).
# Needs the rustup nightly toolchain; installs cargo-fuzz if missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${FUZZ_SECONDS:-60}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
status=0

# fuzz <crate dir> <artifact kinds that fail the run> <extra libFuzzer flags> <targets...>
fuzz() {
  local dir="$1" failing="$2" flags="$3"
  shift 3
  cd "$root/$dir"
  python3 fuzz/seed.py
  for target in "$@"; do
    echo "fuzz: $target for ${seconds}s"
    # shellcheck disable=SC2086  # $flags is a list of flags
    if ! cargo +nightly fuzz run -O "$target" -- -max_total_time="$seconds" -max_len=65536 \
        $flags -print_final_stats=1 2>&1 | grep -E "stat::number_of_executed_units|ERROR|panicked|SUMMARY|Test unit written"; then
      :
    fi
    for kind in $failing; do
      if ls fuzz/artifacts/"$target"/"$kind"-* >/dev/null 2>&1; then
        echo "fuzz: $target found a $kind: $(ls fuzz/artifacts/"$target"/"$kind"-*)" >&2
        status=1
      fi
    done
  done
}

fuzz core "crash" "" request_plan response_decode stream_decode sigv4_path json_tree
fuzz sidecar "crash timeout oom" "-timeout=10" \
  extract_json extract_csv extract_html extract_xml extract_pdf
exit $status
