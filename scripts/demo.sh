#!/usr/bin/env bash
# README command 1: set up a fresh machine, build, and run the main job on an embedded default:
# the whole pipeline (embed → hybrid retrieve → graph attention → route → context → generate) over
# FOLDOC, Debian's computing dictionary (its cross-references become graph edges), with a ladder
# of two LFM2-shaped models with GENERATED weights (speed is real, the text is noise; real LFM2 GGUF
# files drop in through build/demo/ruvllm.toml), printing the trace of each answer.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
scripts/build.sh release -DRUVLLM_BUILD_TESTS=OFF
ruvllm=build/release/src/ruvllm
demo=build/demo
mkdir -p "$demo/data" build/models

echo "== 1. The model ladder: LFM2-350M and LFM2-1.2B shapes, generated weights, Q4_0"
scripts/make-bench-models.sh "350m 1.2b" Q4_0 >/dev/null

router_data=../shared/data/router/routellm-mmlu-gsm8k
router_toml="file = \"\"   # routing off: ../shared/data is absent, every request goes to models.default"
if [[ -d $router_data ]]; then
  echo "== 2. The router: FastGRNN trained on RouteLLM's real outcomes (Mixtral-8x7B vs GPT-4 on MMLU + GSM8K);"
  echo "      the pipeline maps the weak model to LFM2-350M and the strong one to LFM2-1.2B"
  echo "      (calibrated to send 27 % of queries up: the share at which it recovers half of the quality gap"
  echo "      between the two on RouteLLM's test split, CPT(50 %) = 0.27); its context and retrieval heads"
  echo "      learn from evidence rows: how much of HotpotQA's and Cranfield's gold evidence each context holds"
  evidence=yes
  [[ -d ../shared/data/qa/hotpotqa-100 && -d ../shared/data/ir/cranfield ]] || evidence=no
  # Retrained when missing, when written by a build whose file version this one no longer reads
  # (version 1: the accuracy table before the word model), before files recorded their training
  # objective (the one-hot target before shared ties), or without the context heads it can have.
  if [[ ! -f $demo/router.json ]] || ! grep -q '"version":2' $demo/router.json ||
     ! grep -q '"objective":' $demo/router.json ||
     { [[ $evidence == yes ]] && ! grep -q '"heads_trained":{"context":true' $demo/router.json; }; then
    if [[ $evidence == yes ]]; then
      scripts/make-evidence.sh build/evidence >/dev/null
      $ruvllm router train --data $router_data --evidence build/evidence/evidence-train.jsonl \
        --out $demo/router.json >/dev/null
      $ruvllm router calibrate --data $router_data --model $demo/router.json --largest-share 0.27 \
        --evidence build/evidence/evidence-calibrate.jsonl 2>/dev/null | grep -E '^(threshold|evidence coverage)'
    else
      echo "      (../shared/data/qa or ir is absent: the context heads stay untrained, every context at full size)"
      $ruvllm router train --data $router_data --out $demo/router.json >/dev/null
      $ruvllm router calibrate --data $router_data --model $demo/router.json --largest-share 0.27 2>/dev/null |
        grep -E '^threshold'
    fi
  fi
  router_toml='file = "router.json"

[router.models]   # the router ladder → this ladder
"mistralai/Mixtral-8x7B-Instruct-v0.1" = "lfm2-350m"
"gpt-4-1106-preview" = "lfm2-1.2b"'
else
  echo "== 2. (../shared/data/router is absent: routing off, every request goes to LFM2-1.2B)"
fi

cat > $demo/ruvllm.toml <<TOML
# Written by scripts/demo.sh; \`ruvllm config show\` prints every key with its default.
[[model]]
name = "lfm2-350m"
path = "../models/lfm2-350m-q4_0.gguf"
size_class = "350m"
relative_cost = 1.0

[[model]]
name = "lfm2-1.2b"
path = "../models/lfm2-1.2b-q4_0.gguf"
size_class = "1.2b"
relative_cost = 3.4

[models]
default = "lfm2-1.2b"   # the naive flow and routing-off use it

[memory]
data_dir = "data"

[router]
$router_toml

[generation]
max_tokens = 32
TOML
$ruvllm config check $demo/ruvllm.toml

echo "== 3. Memory: FOLDOC's 2,000 best-connected entries (set-up converted them from dict-foldoc)"
$ruvllm ingest --db $demo/data/memory.sqlite build/deps/foldoc-2000.jsonl 2>/dev/null | tail -1

echo "== 4. Questions through the pipeline (answers are noise: generated weights; the trace is real)"
for q in "What is the difference between a compiler and an interpreter?" \
         "Who invented the Lisp programming language?"; do
  echo
  echo "\$ ruvllm ask \"$q\""
  $ruvllm ask -c $demo/ruvllm.toml "$q" --seed 1
done

stories=../shared/data/models/stories260K.gguf
echo
if [[ -f $stories ]]; then
  echo "== 5. The real trained tiny model (TinyStories, 292,800 parameters), greedy, through the engine:"
  $ruvllm generate -m $stories -p "Once upon a time" --temperature 0 -n 48
else
  echo "(../shared/data/models/stories260K.gguf is absent: skipping the real tiny model)"
fi
echo
echo "Serve it: $ruvllm serve -c $demo/ruvllm.toml   (OpenAI-compatible; model \"auto\" = routed)"
