#!/usr/bin/env bash
# README command 2: set up a fresh machine, build, and run every test. ruvllm's own code runs under
# AddressSanitizer and UndefinedBehaviorSanitizer (llama.cpp itself is built normally).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
start=$(date +%s)
scripts/setup.sh
scripts/build.sh test -DRUVLLM_SANITIZE=ON -DRUVLLM_BUILD_TESTS=ON
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# The JUnit file names every skipped test and why; the summary prints them and the counts.
junit="$root/build/test/ctest-results.xml"
rm -f "$junit"
status=0
ctest --test-dir build/test --output-on-failure --parallel "$(nproc)" --output-junit "$junit" "$@" || status=$?
if [[ -f "$junit" ]]; then
  node "$root/scripts/test-summary.js" "$junit" || echo "[test] (no summary: reading $junit failed)" >&2
fi
if ((status != 0)); then
  echo "[test] FAILED (ctest exit $status) after $(($(date +%s) - start)) s" >&2
  exit "$status"
fi
echo "[test] done in $(($(date +%s) - start)) s"
