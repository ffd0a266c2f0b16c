#!/usr/bin/env bash
# The `bench models` figures of the README: every LFM2 size x quantization (generated weights),
# ours vs llama.cpp in the same run. Takes ~40 minutes on 2 cores. Results: build/bench/models-*.{json,md}
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/build.sh release
scripts/build-llama-bench.sh >/dev/null
scripts/make-bench-models.sh "350m 700m 1.2b 2.6b" "Q4_0 Q4_K_M Q5_K_M Q8_0"
ruvllm=build/release/src/ruvllm
m=build/models
threads="${THREADS:-$(nproc)}"
# Q4_0, the fastest CPU format here, with llama.cpp's own llama-bench alongside.
$ruvllm bench models $m/lfm2-{350m,700m,1.2b,2.6b}-q4_0.gguf --threads "$threads" --reps 5 \
  --llama-bench build/llama-bench/bin/llama-bench --out build/bench/models-q4_0
# The other quantizations.
$ruvllm bench models $m/lfm2-{350m,700m,1.2b,2.6b}-{q4_k_m,q5_k_m,q8_0}.gguf --threads "$threads" --reps 3 \
  --out build/bench/models-other
# The same with the file memory-mapped instead of read: peak RSS, and the mapping's effect on speed.
$ruvllm bench models $m/lfm2-{350m,700m,1.2b,2.6b}-q4_0.gguf --threads "$threads" --reps 5 --load mmap \
  --out build/bench/models-q4_0-mmap
