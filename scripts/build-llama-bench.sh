#!/usr/bin/env bash
# Builds llama.cpp's own llama-bench from the same pinned source tree (build/deps/llama.cpp) into
# build/llama-bench/bin/llama-bench, for `ruvllm bench models --llama-bench PATH`. Same ggml
# configuration as ruvllm's build (no OpenMP: ggml's thread pool).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$root/build/deps/llama.cpp" -B "$root/build/llama-bench" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE="${GGML_NATIVE:-ON}" -DGGML_OPENMP=OFF -DGGML_CCACHE=OFF "${launcher[@]}" \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >/dev/null
cmake --build "$root/build/llama-bench" --target llama-bench --parallel "$(nproc)"
echo "$root/build/llama-bench/bin/llama-bench"
