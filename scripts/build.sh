#!/usr/bin/env bash
# Configures and builds one build tree. Usage: scripts/build.sh <tree> [cmake options...]
#   scripts/build.sh release                      # build/release: the program and the benchmarks
#   scripts/build.sh test -DRUVLLM_SANITIZE=ON    # build/test: tests with ASan + UBSan
# Extra options for every tree can come from RUVLLM_CMAKE_ARGS (e.g. "-DRUVLLM_NATIVE=OFF").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tree="${1:?usage: scripts/build.sh <tree> [cmake options...]}"
shift
# shellcheck disable=SC2086  # RUVLLM_CMAKE_ARGS is a list of words
cmake -S "$root" -B "$root/build/$tree" -G Ninja -DCMAKE_BUILD_TYPE=Release ${RUVLLM_CMAKE_ARGS:-} "$@" >/dev/null
cmake --build "$root/build/$tree" --parallel "$(nproc)"
