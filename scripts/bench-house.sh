#!/usr/bin/env bash
# Before/after check of a refactoring that must not change speed or quality: the non-LLM stages
# (`bench e2e --stages-only`: 128 RouteLLM MMLU/GSM8K test questions over FOLDOC, routed and naive) and retrieval quality
# (`bench retrieval`) with two builds of ruvllm, in alternation (before, after, before, after) on
# the same inputs, since this machine's speed drifts. Reports go to OUT/{before,after}-{1,2}/.
#   scripts/bench-house.sh BEFORE/ruvllm AFTER/ruvllm bench/results/house-2026-12-04
# Needs ../shared/data (router outcomes, HotpotQA, Cranfield) and build/deps from scripts/setup.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
before="$(realpath "$1")" after="$(realpath "$2")" out="$(realpath -m "$3")"
data="$root/../shared/data"
[[ -d $data/router/routellm-mmlu-gsm8k ]] || { echo "bench-house: $data/router is absent" >&2; exit 1; }
work="$root/build/bench-house"
rm -rf "$work" && mkdir -p "$work/data" "$out"
cd "$work"

# One model file for both rungs: the stages measured here do not generate, and the tokenizer (which
# counts context tokens) is the same. The router is the demo's (RouteLLM outcomes), trained once.
"$after" model synth --size tiny --type f16 --out tiny.gguf >/dev/null
"$after" router train --data "$data/router/routellm-mmlu-gsm8k" --out router.json >/dev/null
cat > ruvllm.toml <<TOML
[[model]]
name = "small"
path = "tiny.gguf"
[[model]]
name = "large"
path = "tiny.gguf"
relative_cost = 3.4
[models]
default = "large"
[memory]
data_dir = "data"
[router]
file = "router.json"
[router.models]
"mistralai/Mixtral-8x7B-Instruct-v0.1" = "small"
"gpt-4-1106-preview" = "large"
TOML
"$after" ingest --db data/memory.sqlite "$root/build/deps/foldoc-2000.jsonl" >/dev/null 2>&1
awk 'NR % 16 == 1' "$data/router/routellm-mmlu-gsm8k/test.jsonl" > queries.jsonl

for round in 1 2; do
  for side in before after; do
    bin=$before; [[ $side == after ]] && bin=$after
    echo "== $side, round $round" >&2
    "$bin" bench e2e -c ruvllm.toml --queries queries.jsonl --limit 128 --stages-only \
      --out "$out/$side-$round" >/dev/null
    "$bin" bench retrieval --data "$data" --out "$out/$side-$round" >/dev/null
  done
done
# The stores the retrieval benchmark builds are inputs, not results.
rm -f "$out"/*/*.sqlite "$out"/*/*.sqlite.usearch
{
  echo "# Before/after: $(basename "$out")"
  echo
  echo "\`scripts/bench-house.sh $1 $2 $3\` (before = $("$before" --version 2>/dev/null || echo "$1"), after = $("$after" --version 2>/dev/null || echo "$2"))."
  echo
  echo "## bench e2e --stages-only"
  echo
  node "$root/scripts/compare-reports.js" e2e-stages.md "$out"/{before-1,after-1,before-2,after-2}
  echo "## bench retrieval"
  echo
  node "$root/scripts/compare-reports.js" retrieval.md "$out"/{before-1,after-1,before-2,after-2}
} > "$out/README.md"
echo "reports in $out, side by side in $out/README.md" >&2
