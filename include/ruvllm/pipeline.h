// ruvllm/pipeline.h — the orchestrator: one request through embed → retrieve → attend → (route →
// build context → generate → write back). This first part is the retrieval stage that the graph
// stage, its benchmark and its training share; the rest of the flow joins it here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ruvllm/attention.h"
#include "ruvllm/memory.h"
#include "ruvllm/router.h"

namespace ruvllm::pipeline {

struct RetrieveParams {
  memory::SearchMode mode = memory::SearchMode::hybrid;
  memory::Fusion fusion = memory::Fusion::weighted;
  double dense_weight = 0.25;   // the best fusion weight measured on HotpotQA and Cranfield
  std::size_t candidates = 64;  // the search's ranked list; every node in it gets its ranks as features
  std::size_t seeds = 10;       // the first `seeds` candidates start the expansion (≤ candidates)
  memory::ExpandParams expand;  // 2 hops, 64 edges per node, ≤ 256 nodes
};

struct Retrieved {
  memory::SearchResult search;
  memory::Subgraph subgraph;
  attention::GraphInput graph;           // subgraph nodes in the same order, query vector included
  int64_t search_us = 0, expand_us = 0;  // wall time of the two steps
};

// Embeds the query once, searches, expands the seeds and fills the attention room's input:
// per node its search ranks (overall, lexical, dense; -1 outside the candidates), a rank-derived
// score 1/(1+rank), depth, type, age and confidence; per edge its relation, weight, confidence and
// age. Throws memory::Error / embed::Error for bad input (invalid UTF-8, ...).
Retrieved retrieve(const memory::Memory& memory, const std::string& query, const RetrieveParams& params = {});

// ---- labelled questions (training and evaluating the graph stage) ------------------------------

struct LabelledQuestion {
  std::string text;
  std::vector<std::string> gold_sources;  // the `source_id`s ingest stored in node metadata
};

struct LabelledRetrieval {
  Retrieved retrieved;
  std::vector<std::string> node_sources;  // per subgraph node, its source_id ("" if none)
  std::vector<std::size_t> gold_nodes;    // subgraph nodes whose source is gold
};

LabelledRetrieval retrieve_labelled(const memory::Memory& memory, const LabelledQuestion& question,
                                    const RetrieveParams& params = {});

// Recall@k over distinct sources when nodes are read in descending `score` order (chunks of one
// source count once, at their best rank): the share of the gold sources among the first k.
double source_recall(const LabelledRetrieval& r, const std::vector<std::string>& gold_sources,
                     const std::vector<double>& score, std::size_t k);

// ---- routing -------------------------------------------------------------------------------------

// The router's query signals: the text, its embedding and token counts from `embedder`.
router::QuerySignals query_signals(const embed::Embedder& embedder, std::string text);

}  // namespace ruvllm::pipeline
