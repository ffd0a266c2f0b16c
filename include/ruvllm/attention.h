// ruvllm/attention.h — which retrieved nodes and neighbours the model reads.
//
// Scorers rank the nodes of a retrieved subgraph (seeds + their k-hop neighbourhood) for a query.
// They take plain structs, not memory's objects: the pipeline fills a GraphInput from a
// memory::Subgraph and a memory::SearchResult. Every scorer sits behind one interface so that the
// benchmark can put retrieval order, Personalized PageRank and graph attention side by side.
// The context builder then turns the ranked nodes into the prompt's context blocks.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ruvllm::attention {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct GraphNode {
  std::vector<float> embedding;  // may be empty (a node without a vector)
  int type = 0;                  // memory::NodeType as an int
  double age_days = 0;           // since the node's timestamp
  double confidence = 1;         // [0, 1]
  double retrieval_score = 0;    // the fused search score of a seed, 0 for a neighbour
  int retrieval_rank = -1;       // 0-based rank among the seeds, -1 for a neighbour
  int depth = 0;                 // hops from the nearest seed
};

struct GraphEdge {
  std::size_t src = 0, dst = 0;  // indices into GraphInput::nodes
  std::string rel;
  double weight = 1, confidence = 1, age_days = 0;
};

struct GraphInput {
  std::vector<float> query;  // may be empty (the query had no vector)
  std::vector<GraphNode> nodes;
  std::vector<GraphEdge> edges;
};

struct Scores {
  std::vector<double> score;  // one per node, higher = more relevant to the query
  double entropy = 0;         // of the normalised scores (nats): low = focused, high = spread out
  int depth_touched = 0;      // the largest depth among nodes with a non-negligible score
};

class Scorer {
 public:
  virtual ~Scorer() = default;
  virtual std::string name() const = 0;
  // Throws Error for malformed input (edge index out of range, NaN). Empty input gives empty scores.
  virtual Scores score(const GraphInput& input) const = 0;
};

// Seeds in retrieval order, neighbours after them: the flat baseline.
std::unique_ptr<Scorer> retrieval_order();

struct PageRankParams {
  double damping = 0.5;       // probability of following an edge (HippoRAG uses 0.5)
  int max_iterations = 100;   // power iterations
  double tolerance = 1e-10;   // L1 change that stops them
  bool seed_by_score = true;  // restart distribution ∝ seed scores (else uniform over seeds)
};

// Personalized PageRank from the seeds over the undirected graph, edges weighted by
// weight x confidence (HippoRAG's graph stage). Dangling mass returns to the seeds.
std::unique_ptr<Scorer> personalized_pagerank(const PageRankParams& params = {});

// ---- context builder --------------------------------------------------------------------------

struct Candidate {
  std::string text, type, tags;  // tags as the block header shows them
  double score = 0;
};

struct ContextParams {
  std::size_t max_docs = 8;
  std::size_t max_tokens = 1024;  // the whole context, headers included
  // The model's tokenizer (llm::Engine::tokenize(...).size()); required.
  std::function<std::size_t(std::string_view)> count_tokens;
  double duplicate_jaccard = 0.8;  // word-set Jaccard above which a block repeats a kept one
};

struct Context {
  std::string text;               // "[Context 1] (score=…, type=…, tags=…)\n<text>\n\n…"
  std::vector<std::size_t> used;  // indices of the candidates kept, in order
  std::size_t tokens = 0;         // count_tokens(text)
  std::size_t dropped_duplicates = 0, truncated = 0;
};

// Orders by score, drops near-identical blocks, and cuts by max_docs and max_tokens. A block that
// does not fit whole is cut at a UTF-8 character boundary (never inside a character) when at least
// a quarter of the remaining budget is left, else left out.
Context build_context(const std::vector<Candidate>& candidates, const ContextParams& params);

}  // namespace ruvllm::attention
