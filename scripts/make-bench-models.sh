#!/usr/bin/env bash
# Writes the LFM2-shaped benchmark models (generated weights) into build/models:
# lfm2-<size>-<type>.gguf for the sizes and llama.cpp quantization types given.
#   scripts/make-bench-models.sh "350m 700m 1.2b 2.6b" "Q4_0 Q4_K_M Q5_K_M Q8_0"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ruvllm="$root/build/release/src/ruvllm"
dir="$root/build/models"
sizes="${1:-350m 700m 1.2b 2.6b}"
types="${2:-Q4_0}"
mkdir -p "$dir"
for size in $sizes; do
  f16="$dir/lfm2-$size-f16.gguf"
  for type in $types; do
    out="$dir/lfm2-$size-$(echo "$type" | tr 'A-Z' 'a-z').gguf"
    [[ -f $out ]] && continue
    [[ -f $f16 ]] || "$ruvllm" model synth --size "$size" --type f16 --out "$f16"
    "$ruvllm" model quantize "$f16" "$out" "$type"
  done
  rm -f "$f16"
done
ls -l "$dir"
