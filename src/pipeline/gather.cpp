#include "gather.h"

#include <algorithm>
#include <numeric>
#include <unordered_map>

namespace ruvllm::pipeline::detail {

router::RetrievalSignals retrieval_signals(const Retrieved& r, const std::vector<float>& query_vector,
                                           const attention::Scores& sc) {
  router::RetrievalSignals out;
  std::size_t both = 0, top = std::min<std::size_t>(10, r.search.hits.size());
  for (std::size_t i = 0; i < r.search.hits.size(); ++i) {
    const auto& h = r.search.hits[i];
    out.scores.push_back(static_cast<float>(h.dense_rank >= 0 ? h.similarity : 0.0));
    if (i < top) both += h.dense_rank >= 0 && h.lexical_rank >= 0;
  }
  for (std::size_t i = 0; i < r.subgraph.nodes.size() && out.embeddings.size() < 8; ++i)
    if (r.subgraph.depth[i] == 0 && r.subgraph.nodes[i].vector.size() == query_vector.size() && !query_vector.empty())
      out.embeddings.push_back(r.subgraph.nodes[i].vector);
  out.attention_entropy = sc.entropy;
  out.graph_depth = sc.depth_touched;
  out.search_agreement = top ? static_cast<double>(both) / static_cast<double>(top) : 0;
  return out;
}

Candidates gather(const memory::Memory& memory, const Retrieved& r, const std::vector<double>& scores,
                  router::Retrieval strategy, std::size_t want, const std::string& query,
                  const std::vector<float>& query_vector, bool search_is_dense, std::size_t offered) {
  struct Pick {
    const std::string* id;
    double score;
    const memory::Node* row;  // null: read from the store
  };
  std::vector<Pick> picks;
  std::unordered_map<std::string_view, const memory::Node*> in_subgraph;
  // A subgraph expanded without rows has no text: a stored node's text is never empty.
  auto with_row = [](const memory::Node* n) { return n && !n->text.empty() ? n : nullptr; };
  if (strategy == router::Retrieval::dense || strategy == router::Retrieval::hybrid)
    for (const auto& n : r.subgraph.nodes) in_subgraph.emplace(n.id, &n);
  auto pick_hits = [&](const std::vector<memory::Hit>& hits, bool similarity) {
    for (std::size_t i = 0; i < hits.size() && picks.size() < want; ++i) {
      const auto it = in_subgraph.find(hits[i].id);
      picks.push_back({&hits[i].id, similarity ? hits[i].similarity : hits[i].score,
                       it == in_subgraph.end() ? nullptr : with_row(it->second)});
    }
  };
  memory::SearchResult own;
  switch (strategy) {
    case router::Retrieval::none: break;
    case router::Retrieval::dense:
      if (!search_is_dense && !query_vector.empty() && want > 0) {
        memory::SearchQuery sq;
        sq.text = query;
        sq.vector = query_vector;
        sq.k = want;
        sq.mode = memory::SearchMode::dense;
        own = memory.search(sq);
      }
      pick_hits(search_is_dense ? r.search.hits : own.hits, true);
      break;
    case router::Retrieval::hybrid: pick_hits(r.search.hits, false); break;
    case router::Retrieval::hybrid_graph: {
      // Best first, ties in subgraph order: the order build_context's stable sort gives the whole
      // list, so the first `offered` are read exactly as they would be there.
      if (scores.size() != r.subgraph.nodes.size())
        throw Error(ErrorCode::internal, "gather: one score per subgraph node expected");
      std::vector<std::size_t> order(scores.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
      for (std::size_t k = 0; k < std::min(offered, order.size()); ++k) {
        const std::size_t i = order[k];
        picks.push_back({&r.subgraph.nodes[i].id, scores[i], with_row(&r.subgraph.nodes[i])});
      }
      break;
    }
  }
  Candidates out;
  out.more = strategy == router::Retrieval::hybrid_graph && offered < r.subgraph.nodes.size();
  std::vector<std::string> missing;
  for (const Pick& p : picks)
    if (!p.row) missing.push_back(*p.id);
  auto rows = missing.empty() ? std::vector<std::optional<memory::Node>>{} : memory.get_many(missing);
  std::size_t next_row = 0;
  for (const Pick& p : picks) {
    const memory::Node* n = p.row;
    if (!n) {
      auto& row = rows[next_row++];
      if (!row) continue;  // removed since the search
      n = &out.owned.emplace_back(std::move(*row));
    }
    out.candidates.push_back({n->text, std::string(memory::to_string(n->type)), "", p.score});
    out.blocks.push_back({n->id, n->title, std::string(memory::to_string(n->type)), n->text, p.score});
    out.from.push_back(n);
  }
  return out;
}

}  // namespace ruvllm::pipeline::detail
