#!/usr/bin/env bash
# Evidence rows for the router's context and retrieval heads (docs/router.md, "Context and
# retrieval heads"): HotpotQA's and Cranfield's labelled questions asked of a memory holding their
# own corpus, and of the other set's memory (questions whose evidence the memory does not hold).
# Every row records how much of the question's gold evidence the pipeline's context holds under
# each retrieval strategy and context bin. Of each question file, odd lines train, lines 2, 6, 10, …
# calibrate (`router calibrate --evidence`) and lines 4, 8, 12, … test.
#
# Usage: scripts/make-evidence.sh [out-dir]    (default build/evidence; ~1 min)
# Needs ../shared/data, build/release/src/ruvllm and build/models/lfm2-350m-q4_0.gguf (its
# tokenizer counts the context tokens; scripts/make-bench-models.sh "350m" Q4_0 makes it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out=${1:-build/evidence}
ruvllm=build/release/src/ruvllm
data=../shared/data
model=build/models/lfm2-350m-q4_0.gguf
for need in "$data/qa/hotpotqa-100" "$data/ir/cranfield" "$ruvllm" "$model"; do
  [[ -e $need ]] || { echo "make-evidence: $need is missing" >&2; exit 1; }
done
mkdir -p "$out"
model_abs="$(cd "$(dirname "$model")" && pwd)/$(basename "$model")"

declare -A corpus=([hotpotqa]=$data/qa/hotpotqa-100 [cranfield]=$data/ir/cranfield)
declare -A questions=([hotpotqa]=$data/qa/hotpotqa-100/questions.jsonl [cranfield]=$data/ir/cranfield/queries.jsonl)
for set in hotpotqa cranfield; do
  mem=$out/memory-$set
  if [[ ! -f $mem/ready ]]; then
    rm -rf "$mem"
    mkdir -p "$mem/data"
    printf '[[model]]\nname = "tokenizer"\npath = "%s"\n\n[memory]\ndata_dir = "data"\n' "$model_abs" > "$mem/ruvllm.toml"
    $ruvllm ingest --db "$mem/data/memory.sqlite" "${corpus[$set]}/corpus.jsonl" 2>/dev/null | tail -1
    touch "$mem/ready"
  fi
  awk 'NR % 2 == 1' "${questions[$set]}" > "$out/$set-train.questions.jsonl"
  awk 'NR % 4 == 2' "${questions[$set]}" > "$out/$set-calibrate.questions.jsonl"
  awk 'NR % 4 == 0' "${questions[$set]}" > "$out/$set-test.questions.jsonl"
done
for split in train calibrate test; do
  : > "$out/evidence-$split.jsonl"
  for q in hotpotqa cranfield; do
    for mem in hotpotqa cranfield; do
      $ruvllm router evidence -c "$out/memory-$mem/ruvllm.toml" --questions "$out/$q-$split.questions.jsonl" \
        --task "$q-on-$mem" --out "$out/$q-on-$mem-$split.jsonl" 2>/dev/null
      cat "$out/$q-on-$mem-$split.jsonl" >> "$out/evidence-$split.jsonl"
    done
  done
done
wc -l "$out"/evidence-{train,calibrate,test}.jsonl
