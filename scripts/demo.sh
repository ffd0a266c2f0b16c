#!/usr/bin/env bash
# README command 1: set up a fresh machine, build, and run the main job on an embedded default.
# For now the main job is the LLM engine: it generates an LFM2-350M-shaped model (exact shapes,
# generated weights: its text is noise), quantizes it with llama.cpp, shows what it is, answers a
# chat message with it, and answers with the real trained tiny model when ../shared/data has it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
scripts/build.sh release -DRUVLLM_BUILD_TESTS=OFF
ruvllm=build/release/src/ruvllm
models=build/models
mkdir -p "$models"

if [[ ! -f $models/lfm2-350m-q4_0.gguf ]]; then
  $ruvllm model synth --size 350m --type f16 --out $models/lfm2-350m-f16.gguf
  $ruvllm model quantize $models/lfm2-350m-f16.gguf $models/lfm2-350m-q4_0.gguf Q4_0
  rm -f $models/lfm2-350m-f16.gguf
fi
echo
$ruvllm model info $models/lfm2-350m-q4_0.gguf | grep -v '^chat template'
echo
echo "== LFM2-350M shapes, generated weights (speed is real, the text is noise):"
$ruvllm generate -m $models/lfm2-350m-q4_0.gguf --chat --system "You are a helpful assistant." \
  -p "What is a hybrid short-convolution model?" -n 48 --seed 1

stories=../shared/data/models/stories260K.gguf
echo
if [[ -f $stories ]]; then
  echo "== The real trained tiny model (TinyStories, 292,800 parameters), greedy:"
  $ruvllm generate -m $stories -p "Once upon a time" --temperature 0 -n 64
else
  echo "(../shared/data/models/stories260K.gguf is absent: skipping the real tiny model)"
fi

# Memory: this repository's own documentation as a small real corpus (no ../shared needed).
memdb=build/demo-memory.sqlite
echo
echo "== Memory: ingest this repository's docs, then hybrid search (GloVe-6B SIF + BM25):"
$ruvllm ingest --db $memdb README.md docs/*.md 2>/dev/null
$ruvllm memory search --db $memdb "why does the engine read the model instead of mapping it" -k 3
