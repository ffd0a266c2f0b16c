// ruvllm/attention.h — which retrieved nodes and neighbours the model reads.
//
// Scorers rank the nodes of a retrieved subgraph (seeds + their k-hop neighbourhood) for a query.
// They take plain structs, not memory's objects: the pipeline fills a GraphInput from a
// memory::Subgraph and a memory::SearchResult. Every scorer sits behind one interface so that the
// benchmark can put retrieval order, Personalized PageRank and graph attention side by side.
// The context builder then turns the ranked nodes into the prompt's context blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "ruvllm/error.h"

namespace ruvllm::attention {

using ruvllm::Error;  // ruvllm/error.h: one type for every room, with a code
using ruvllm::ErrorCode;

struct GraphNode {
  std::vector<float> embedding;  // may be empty (a node without a vector)
  int type = 0;                  // memory::NodeType as an int
  double age_days = 0;           // since the node's timestamp
  double confidence = 1;         // [0, 1]
  bool seed = false;             // the expansion started here
  // Where the search ranked this node among all its candidates (not only the seeds): -1 = absent.
  int retrieval_rank = -1, lexical_rank = -1, dense_rank = -1;
  double retrieval_score = 0;  // the fused search score (or a rank-derived weight), 0 if absent
  int depth = 0;               // hops from the nearest seed
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

// ---- graph attention --------------------------------------------------------------------------
//
// One query-conditioned multi-head graph-attention layer (GAT, Velickovic et al. 2018) over the
// subgraph, with analytic gradients (docs/attention.md has the equations):
//   h_i   = W x_i     x_i: the node's features for this query: search ranks (fused, lexical, dense),
//                     cosine of its embedding to the query, seed, depth, degree, type, recency,
//                     confidence; optionally sqrt(D)·q̂⊙ê_i (query_interaction). The query enters
//                     through features because GAT's plain concatenation would give every node
//                     the same query term.
//   α_ij  = softmax_j( LeakyReLU(a_sᵀh_i + a_tᵀh_j + b_rel(ij)) + log(weight·confidence·recency) )
//           over i's in- and out-edges (a learned bias per relation and direction) and itself
//   m_i   = Σ_j α_ij · v_kᵀh_j   per head k
//   s_i   = cᵀx_i + ωᵀh_i + Σ_k β_k m_i^k
// The query attends to every node with logits s_i: they are the scores, and their softmax gives
// the entropy. Untrained, c makes s the retrieval order; training is regularised towards it.

struct AttentionShape {
  std::size_t hidden = 16;
  std::size_t heads = 4;  // 0 = no messages between nodes: a learned per-node fusion (the ablation)
  double leaky_slope = 0.2;
  double recency_days = 365;  // age scale of the recency factor exp(-age / recency_days)
  // Feed q̂ ⊙ ê_i (D inputs) besides the cosine. Off by default: with 80 training questions the
  // D × hidden weights overfit (HotpotQA R@5 0.84 with, 0.91 without; docs/attention.md).
  bool query_interaction = false;
};

struct Example {  // a training question: its subgraph and which nodes answer it
  GraphInput input;
  std::vector<std::size_t> relevant;  // node indices; an example with none teaches nothing (skipped)
};

struct TrainParams {
  int epochs = 150;
  double learning_rate = 0.01;  // Adam
  double l2 = 1e-3;             // λ/2 · ‖θ − θ_init‖², added to the mean loss
  uint64_t seed = 42;           // initial weights; same seed + same data → same model
  std::function<void(int epoch, double loss)> progress;
};

struct TrainReport {
  double initial_loss = 0, final_loss = 0;  // mean listwise cross-entropy over the used examples
  std::size_t examples = 0, skipped = 0;
  int epochs = 0;
};

// Parameters of the layer above; value type. Files are small versioned JSON.
class AttentionModel {
 public:
  // Untrained (ranks like retrieval order). `dimension`: the embeddings' (0 = ignore embeddings).
  AttentionModel(std::size_t dimension, const AttentionShape& shape = {}, uint64_t seed = 42);
  static AttentionModel load(const std::string& path);  // throws Error with the reason
  void save(const std::string& path) const;

  std::size_t dimension() const { return dimension_; }
  const AttentionShape& shape() const { return shape_; }
  std::size_t parameter_count() const { return theta_.size(); }

  // Learns from `examples` (Adam, full batch, listwise softmax cross-entropy). Throws Error, the
  // parameters unchanged, when no example has a relevant node or training diverges.
  TrainReport train(const std::vector<Example>& examples, const TrainParams& params = {});
  // Mean loss over the examples with relevant nodes plus l2/2 · ‖θ − θ_init‖², and its gradient
  // with respect to parameters() (for tests and diagnostics).
  double loss(const std::vector<Example>& examples, std::vector<double>* gradient = nullptr, double l2 = 0) const;
  std::vector<double>& parameters() { return theta_; }
  const std::vector<double>& parameters() const { return theta_; }

 private:
  friend class GraphAttention;
  std::size_t dimension_;
  AttentionShape shape_;
  std::vector<double> theta_, anchor_;  // anchor_: the untrained θ the regulariser pulls towards
};

std::unique_ptr<Scorer> graph_attention(std::shared_ptr<const AttentionModel> model);

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
  std::size_t tokens = 0;         // the blocks' counts summed (blocks meet at newlines: no merges)
  std::size_t dropped_duplicates = 0, truncated = 0;
};

// Orders by score, drops near-identical blocks, and cuts by max_docs and max_tokens. A block that
// does not fit whole is cut to a prefix that fits (near the longest, found in two or three counts),
// at a UTF-8 character boundary, when at least a quarter of the remaining budget is left, else
// left out. count_tokens is called on each candidate's text whole: callers should cache it.
Context build_context(const std::vector<Candidate>& candidates, const ContextParams& params);

}  // namespace ruvllm::attention
