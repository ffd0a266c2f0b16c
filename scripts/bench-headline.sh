#!/usr/bin/env bash
# The README's headline figures, measured again into one folder of reports (JSON + markdown, each
# naming the machine and the commits), the pipeline's first, llama-bench's comparison last:
#   scripts/bench-headline.sh bench/results/headline-2026-12-04
# Needs ../shared/data and the demo (scripts/demo.sh: build/release, build/demo/ruvllm.toml, the
# LFM2-350M and 1.2B shapes). Builds the 700M and 2.6B shapes and llama-bench when missing.
# About 60 minutes on 2 cores; a step's log is OUT/<step>.log.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "$1")"
cd "$root"
ruvllm=build/release/src/ruvllm
data=../shared/data
[[ -x $ruvllm && -f build/demo/ruvllm.toml ]] || { echo "bench-headline: run scripts/demo.sh first" >&2; exit 1; }
[[ -d $data/router ]] || { echo "bench-headline: $data/router is absent" >&2; exit 1; }
mkdir -p "$out" build/bench

step() {  # step NAME COMMAND...: runs it with its log in OUT/NAME.log, and says how long it took
  local name=$1 t0=$SECONDS
  shift
  echo "== $name: $*" >&2
  "$@" > "$out/$name.log" 2>&1 || { echo "bench-headline: $name failed, see $out/$name.log" >&2; exit 1; }
  echo "   $((SECONDS - t0)) s" >&2
}

# Routed vs naive end to end, and the gold evidence each flow's context holds (FOLDOC).
awk 'NR % 128 == 1' $data/router/routellm-mmlu-gsm8k/test.jsonl > build/bench/e2e-queries.jsonl
step e2e-mmlu $ruvllm bench e2e -c build/demo/ruvllm.toml --queries build/bench/e2e-queries.jsonl \
  --limit 16 --max-tokens 32 --concurrency 4 --out "$out/e2e-mmlu"
step e2e-foldoc $ruvllm bench e2e -c build/demo/ruvllm.toml --queries bench/foldoc-questions.jsonl \
  --limit 16 --max-tokens 32 --concurrency 4 --out "$out/e2e-foldoc"
step foldoc-evidence $ruvllm router evidence -c build/demo/ruvllm.toml --questions bench/foldoc-questions.jsonl \
  --task foldoc --out build/bench/foldoc-evidence.jsonl
step router-foldoc $ruvllm router eval --data $data/router/routellm-mmlu-gsm8k --model build/demo/router.json \
  --no-baselines --evidence build/bench/foldoc-evidence.jsonl --out "$out/router-foldoc"

# Router on its outcome sets (full information, offline): APGR and the RouterBench target.
for set in routellm-mmlu-gsm8k routerbench-arc-challenge; do
  step "router-train-$set" $ruvllm router train --data $data/router/$set --out build/bench/router-$set.json
  step "router-eval-$set" $ruvllm router eval --data $data/router/$set --model build/bench/router-$set.json \
    --out "$out/router-$set"
done

# Decision latency, with the router trained on evidence rows as the demo's is.
step evidence scripts/make-evidence.sh build/evidence
step router-train-evidence $ruvllm router train --data $data/router/routellm-mmlu-gsm8k \
  --evidence build/evidence/evidence-train.jsonl --out build/bench/router-evidence.json
step bench-router $ruvllm bench router --model build/bench/router-evidence.json \
  --data $data/router/routellm-mmlu-gsm8k --evidence build/evidence/evidence-test.jsonl --out "$out/router-latency"

step retrieval $ruvllm bench retrieval --data $data --out "$out/retrieval"
rm -f "$out"/retrieval/*.sqlite "$out"/retrieval/*.sqlite.usearch  # inputs, not results
step ann $ruvllm bench ann --out "$out/ann"  # GloVe 100k; --generated 1000000 adds 9 min

# The engine against llama.cpp's own llama-bench on the same four files.
step models-make scripts/make-bench-models.sh "350m 700m 1.2b 2.6b" Q4_0
[[ -x build/llama-bench/bin/llama-bench ]] || step llama-bench-build scripts/build-llama-bench.sh
step models $ruvllm bench models build/models/lfm2-{350m,700m,1.2b,2.6b}-q4_0.gguf --threads 2 --reps 5 \
  --llama-bench build/llama-bench/bin/llama-bench --out "$out/models"
echo "reports in $out" >&2
