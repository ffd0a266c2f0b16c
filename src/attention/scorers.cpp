// The flat baseline and Personalized PageRank. (Graph attention is in gat.cpp.)
#include <algorithm>
#include <cmath>

#include "ruvllm/attention.h"

namespace ruvllm::attention {
namespace {

void validate(const GraphInput& in) {
  for (const auto& n : in.nodes) {
    if (!std::isfinite(n.retrieval_score) || !std::isfinite(n.confidence) || !std::isfinite(n.age_days)) {
      throw Error("graph node has a non-finite feature");
    }
    for (float x : n.embedding) {
      if (!std::isfinite(x)) throw Error("graph node embedding has a non-finite value");
    }
  }
  for (const auto& e : in.edges) {
    if (e.src >= in.nodes.size() || e.dst >= in.nodes.size())
      throw Error("graph edge refers to a node that is not there");
    if (!std::isfinite(e.weight) || !std::isfinite(e.confidence) || e.weight < 0 || e.confidence < 0) {
      throw Error("graph edge weight and confidence must be finite and non-negative");
    }
  }
}

// Entropy of the scores as a distribution, and the deepest node that carries some of it.
void summarise(const GraphInput& in, Scores& s) {
  double total = 0, top = 0;
  for (double x : s.score) {
    total += std::max(0.0, x);
    top = std::max(top, x);
  }
  s.entropy = 0;
  s.depth_touched = 0;
  if (!(total > 0)) return;
  for (std::size_t i = 0; i < s.score.size(); ++i) {
    const double p = std::max(0.0, s.score[i]) / total;
    if (p > 0) s.entropy -= p * std::log(p);
    if (s.score[i] >= 1e-3 * top) s.depth_touched = std::max(s.depth_touched, in.nodes[i].depth);
  }
}

class RetrievalOrder final : public Scorer {
 public:
  std::string name() const override { return "retrieval order"; }
  Scores score(const GraphInput& in) const override {
    validate(in);
    Scores s;
    s.score.resize(in.nodes.size());
    for (std::size_t i = 0; i < in.nodes.size(); ++i) {
      const GraphNode& n = in.nodes[i];
      // Seeds by rank; neighbours after every seed, nearer hops first, then in input order.
      s.score[i] = n.seed ? 1.0 / (1.0 + std::max(0, n.retrieval_rank))
                          : 1e-3 / (1.0 + n.depth) / (1.0 + 1e-6 * static_cast<double>(i));
    }
    summarise(in, s);
    return s;
  }
};

class PersonalizedPageRank final : public Scorer {
 public:
  explicit PersonalizedPageRank(const PageRankParams& p) : p_(p) {
    if (!(p_.damping >= 0 && p_.damping < 1)) throw Error("pagerank damping must be in [0, 1)");
    if (p_.max_iterations < 1) throw Error("pagerank max_iterations must be positive");
  }
  std::string name() const override { return "personalized pagerank"; }

  Scores score(const GraphInput& in) const override {
    validate(in);
    const std::size_t n = in.nodes.size();
    Scores s;
    if (n == 0) return s;
    std::vector<double> restart(n, 0.0);
    double mass = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (!in.nodes[i].seed) continue;
      restart[i] = p_.seed_by_score ? std::max(0.0, in.nodes[i].retrieval_score) : 1.0;
      mass += restart[i];
    }
    if (!(mass > 0)) {  // seeds without usable scores: uniform over the seeds
      for (std::size_t i = 0; i < n; ++i) restart[i] = in.nodes[i].seed ? 1.0 : 0.0;
      mass = 0;
      for (double r : restart) mass += r;
    }
    if (!(mass > 0)) throw Error("personalized pagerank needs at least one seed node");
    for (double& r : restart) r /= mass;
    // Undirected, weighted adjacency (self-loops carry no information about neighbours: skipped).
    std::vector<std::vector<std::pair<std::size_t, double>>> adj(n);
    std::vector<double> out_weight(n, 0.0);
    for (const GraphEdge& e : in.edges) {
      const double w = e.weight * e.confidence;
      if (e.src == e.dst || !(w > 0)) continue;
      adj[e.src].emplace_back(e.dst, w);
      adj[e.dst].emplace_back(e.src, w);
      out_weight[e.src] += w;
      out_weight[e.dst] += w;
    }
    std::vector<double> p = restart, next(n);
    for (int it = 0; it < p_.max_iterations; ++it) {
      double dangling = 0;
      std::fill(next.begin(), next.end(), 0.0);
      for (std::size_t j = 0; j < n; ++j) {
        if (out_weight[j] > 0) {
          for (const auto& [i, w] : adj[j]) next[i] += p_.damping * p[j] * w / out_weight[j];
        } else {
          dangling += p[j];
        }
      }
      double change = 0;
      for (std::size_t i = 0; i < n; ++i) {
        next[i] += (1 - p_.damping + p_.damping * dangling) * restart[i];
        change += std::abs(next[i] - p[i]);
      }
      p.swap(next);
      if (change < p_.tolerance) break;
    }
    s.score = std::move(p);
    summarise(in, s);
    return s;
  }

 private:
  PageRankParams p_;
};

}  // namespace

std::unique_ptr<Scorer> retrieval_order() { return std::make_unique<RetrievalOrder>(); }

std::unique_ptr<Scorer> personalized_pagerank(const PageRankParams& params) {
  return std::make_unique<PersonalizedPageRank>(params);
}

}  // namespace ruvllm::attention
