// The retrieval stage: memory's search and expansion, turned into attention's plain input.
#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "ruvllm/pipeline.h"

namespace ruvllm::pipeline {
namespace {

using Clock = std::chrono::steady_clock;

int64_t micros_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
}

double days_between(int64_t now_ms, int64_t then_ms) {
  return then_ms > 0 && now_ms > then_ms ? static_cast<double>(now_ms - then_ms) / 86'400'000.0 : 0.0;
}

}  // namespace

Retrieved retrieve(const memory::Memory& memory, const std::string& query, const RetrieveParams& params) {
  return retrieve(memory, query, {}, params);
}

Retrieved retrieve(const memory::Memory& memory, const std::string& query, std::vector<float> query_vector,
                   const RetrieveParams& params) {
  if (params.candidates == 0) throw memory::Error("retrieve: candidates must be positive");
  if (params.seeds == 0 || params.seeds > params.candidates)
    throw memory::Error("retrieve: seeds must be in [1, candidates]");
  Retrieved r;
  const auto t0 = Clock::now();
  memory::SearchQuery sq;
  sq.text = query;
  sq.vector = query_vector;
  sq.k = params.candidates;
  sq.mode = params.mode;
  sq.fusion = params.fusion;
  sq.dense_weight = params.dense_weight;
  embed::Embedding lexical_embedding;  // lexical search makes no vector; attention's features use one
  const bool lexical = params.mode == memory::SearchMode::lexical;
  int64_t lexical_embed_us = 0;
  if (lexical && query_vector.empty() && memory.embedder()) {
    lexical_embedding = memory.embedder()->embed(query);
    lexical_embed_us = micros_since(t0);
  }
  r.search = memory.search(sq);
  if (lexical) {
    r.search.query_embedding = std::move(lexical_embedding);
    r.search.embed_us = lexical_embed_us;
  }
  r.graph.query = query_vector.empty() ? r.search.query_embedding.vector : std::move(query_vector);
  r.search_us = micros_since(t0);

  const auto t1 = Clock::now();
  std::vector<std::string> seed_ids;
  for (std::size_t i = 0; i < std::min(params.seeds, r.search.hits.size()); ++i)
    seed_ids.push_back(r.search.hits[i].id);
  r.subgraph = memory.expand(seed_ids, params.expand);
  r.expand_us = micros_since(t1);

  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  std::unordered_map<std::string_view, std::size_t> index;
  r.graph.nodes.resize(r.subgraph.nodes.size());
  for (std::size_t i = 0; i < r.subgraph.nodes.size(); ++i) {
    const memory::Node& n = r.subgraph.nodes[i];
    attention::GraphNode& g = r.graph.nodes[i];
    g.embedding = n.vector;
    g.type = static_cast<int>(n.type);
    g.age_days = days_between(now_ms, n.timestamp_ms);
    g.confidence = n.confidence;
    g.depth = r.subgraph.depth[i];
    index.emplace(n.id, i);
  }
  for (std::size_t rank = 0; rank < r.search.hits.size(); ++rank) {
    const memory::Hit& h = r.search.hits[rank];
    const auto it = index.find(h.id);
    if (it == index.end()) continue;  // a candidate outside the expanded subgraph
    attention::GraphNode& g = r.graph.nodes[it->second];
    g.seed = rank < params.seeds;
    g.retrieval_rank = static_cast<int>(rank);
    g.lexical_rank = h.lexical_rank;
    g.dense_rank = h.dense_rank;
    // Rank-based, because BM25 and fused scores live on different scales (PPR's restart weights).
    g.retrieval_score = 1.0 / (1.0 + static_cast<double>(rank));
  }
  for (const memory::Edge& e : r.subgraph.edges) {
    r.graph.edges.push_back(
        {index.at(e.src), index.at(e.dst), e.rel, e.weight, e.confidence, days_between(now_ms, e.timestamp_ms)});
  }
  return r;
}

LabelledRetrieval retrieve_labelled(const memory::Memory& memory, const LabelledQuestion& question,
                                    const RetrieveParams& params) {
  LabelledRetrieval out;
  out.retrieved = retrieve(memory, question.text, params);
  for (std::size_t i = 0; i < out.retrieved.subgraph.nodes.size(); ++i) {
    const auto meta = nlohmann::json::parse(out.retrieved.subgraph.nodes[i].metadata, nullptr, false);
    std::string source;
    if (meta.is_object() && meta.contains("source_id") && meta["source_id"].is_string()) source = meta["source_id"];
    if (!source.empty() &&
        std::find(question.gold_sources.begin(), question.gold_sources.end(), source) != question.gold_sources.end()) {
      out.gold_nodes.push_back(i);
    }
    out.node_sources.push_back(std::move(source));
  }
  return out;
}

double source_recall(const LabelledRetrieval& r, const std::vector<std::string>& gold_list,
                     const std::vector<double>& score, std::size_t k) {
  std::vector<std::string> gold_sources = gold_list;  // a source listed twice counts once
  std::sort(gold_sources.begin(), gold_sources.end());
  gold_sources.erase(std::unique(gold_sources.begin(), gold_sources.end()), gold_sources.end());
  if (gold_sources.empty()) return 0;
  if (score.size() != r.node_sources.size()) throw memory::Error("source_recall: one score per node expected");
  std::vector<std::size_t> order(score.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return score[a] > score[b]; });
  std::vector<std::string_view> seen;
  std::size_t hits = 0;
  for (std::size_t i : order) {
    if (seen.size() == k) break;
    const std::string& s = r.node_sources[i];
    if (s.empty() || std::find(seen.begin(), seen.end(), s) != seen.end()) continue;
    seen.push_back(s);
    hits += std::find(gold_sources.begin(), gold_sources.end(), s) != gold_sources.end();
  }
  return static_cast<double>(hits) / static_cast<double>(gold_sources.size());
}

}  // namespace ruvllm::pipeline
