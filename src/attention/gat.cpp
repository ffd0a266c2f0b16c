// Graph attention: the query-conditioned GAT layer of attention.h, its analytic gradient and Adam
// training (its model file: gat_file.cpp). All parameters live in one flat vector θ (Layout says
// where), so that the optimiser, the regulariser and the finite-difference tests treat them alike.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <string_view>

#include "common/adam.h"
#include "common/random.h"
#include "gat.h"

namespace ruvllm::attention {
namespace {

using common::normal;

std::size_t relation_id(std::string_view rel) {
  for (std::size_t r = 0; r + 1 < kRelations.size(); ++r) {
    if (kRelations[r] == rel) return r;
  }
  return kRelations.size() - 1;
}

// One subgraph turned into features and per-node incoming lists (both edge directions, plus self).
struct Prepared {
  std::size_t n = 0;
  std::vector<double> x;  // n × F
  struct In {
    uint32_t j;
    uint32_t rel;
    double log_weight;  // log(weight · confidence · recency): the attention's fixed edge prior
  };
  std::vector<std::size_t> offset;  // n + 1
  std::vector<In> in;
};

double dot(const double* a, const double* b, std::size_t n) {
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Node degrees over the edges (self-loops left out), after checking every edge.
std::vector<std::size_t> checked_degrees(const GraphInput& g) {
  const std::size_t n = g.nodes.size();
  std::vector<std::size_t> degree(n, 0);
  for (const GraphEdge& e : g.edges) {
    if (e.src >= n || e.dst >= n) throw Error("graph edge refers to a node that is not there");
    if (!std::isfinite(e.weight) || !std::isfinite(e.confidence) || !std::isfinite(e.age_days) || e.weight < 0 ||
        e.confidence < 0) {
      throw Error("graph edge weight, confidence and age must be finite; weight and confidence non-negative");
    }
    if (e.src == e.dst) continue;  // a self-loop: every node already attends to itself
    ++degree[e.src];
    ++degree[e.dst];
  }
  return degree;
}

// The unit query, for cosines and the interaction features (zeros without one); its norm into qn.
std::vector<double> unit_query(const GraphInput& g, std::size_t dimension, double& qn) {
  std::vector<double> q(dimension, 0.0);
  qn = 0;
  if (!g.query.empty() && dimension > 0) {
    for (std::size_t t = 0; t < dimension; ++t) qn += static_cast<double>(g.query[t]) * g.query[t];
    qn = std::sqrt(qn);
    if (qn > 0) {
      for (std::size_t t = 0; t < dimension; ++t) q[t] = g.query[t] / qn;
    }
  }
  return q;
}

// The features of a node's embedding: the cosine to the query, whether it has one, and (with
// query_interaction) q̂ ⊙ ê times `scale`.
void embedding_features(const GraphNode& node, const std::vector<double>& q, double qn, double scale,
                        const AttentionShape& shape, double* x) {
  const std::size_t dimension = q.size();
  if (node.embedding.empty() || dimension == 0) return;
  double en = 0;
  for (float v : node.embedding) {
    if (!std::isfinite(v)) throw Error("graph node embedding has a non-finite value");
    en += static_cast<double>(v) * v;
  }
  en = std::sqrt(en);
  if (en > 0 && qn > 0) {
    double cosine = 0;
    for (std::size_t t = 0; t < dimension; ++t) {
      const double prod = q[t] * node.embedding[t] / en;
      if (shape.query_interaction) x[kMeta + t] = scale * prod;
      cosine += prod;
    }
    x[9] = cosine;
  }
  x[10] = en > 0 ? 1 : 0;
}

// Incoming lists: an edge src→dst lets dst hear src ("forward") and src hear dst ("backward").
void incoming_lists(const GraphInput& g, const AttentionShape& shape, Prepared& p) {
  const std::size_t n = p.n;
  std::vector<std::size_t> count(n, 1);
  for (const GraphEdge& e : g.edges) {
    if (e.src == e.dst) continue;
    ++count[e.src];
    ++count[e.dst];
  }
  p.offset.assign(n + 1, 0);
  for (std::size_t i = 0; i < n; ++i) p.offset[i + 1] = p.offset[i] + count[i];
  p.in.resize(p.offset[n]);
  std::vector<std::size_t> fill(p.offset.begin(), p.offset.end() - 1);
  for (std::size_t i = 0; i < n; ++i) p.in[fill[i]++] = {static_cast<uint32_t>(i), kSelfRelation, 0.0};
  for (const GraphEdge& e : g.edges) {
    if (e.src == e.dst) continue;
    // In log space and bounded: an absurd weight must not overflow the softmax into NaN.
    const double log_weight =
        std::clamp(std::log(std::max(e.weight, 1e-6)) + std::log(std::clamp(e.confidence, 1e-6, 1.0)) -
                       std::max(0.0, e.age_days) / shape.recency_days,
                   std::log(1e-6), std::log(1e6));
    const auto r = static_cast<uint32_t>(2 * relation_id(e.rel));
    p.in[fill[e.dst]++] = {static_cast<uint32_t>(e.src), r, log_weight};
    p.in[fill[e.src]++] = {static_cast<uint32_t>(e.dst), r + 1, log_weight};
  }
}

Prepared prepare(const GraphInput& g, std::size_t dimension, const AttentionShape& shape) {
  const std::size_t n = g.nodes.size(), F = Layout(dimension, shape).F;
  Prepared p;
  p.n = n;
  if (!g.query.empty() && g.query.size() != dimension && dimension > 0) {
    throw Error("attention: the query has " + std::to_string(g.query.size()) + " dimensions, the model " +
                std::to_string(dimension));
  }
  for (float x : g.query) {
    if (!std::isfinite(x)) throw Error("attention: the query vector has a non-finite value");
  }
  const std::vector<std::size_t> degree = checked_degrees(g);
  double qn = 0;
  const std::vector<double> q = unit_query(g, dimension, qn);
  double max_score = 0;
  for (const GraphNode& node : g.nodes) max_score = std::max(max_score, node.retrieval_score);
  p.x.assign(n * F, 0.0);
  const double scale = std::sqrt(static_cast<double>(std::max<std::size_t>(dimension, 1)));
  for (std::size_t i = 0; i < n; ++i) {
    const GraphNode& node = g.nodes[i];
    if (!std::isfinite(node.retrieval_score) || !std::isfinite(node.confidence) || !std::isfinite(node.age_days)) {
      throw Error("graph node has a non-finite feature");
    }
    if (!node.embedding.empty() && dimension > 0 && node.embedding.size() != dimension) {
      throw Error("attention: a node embedding has " + std::to_string(node.embedding.size()) +
                  " dimensions, the model " + std::to_string(dimension));
    }
    double* x = &p.x[i * F];
    auto recip = [](int rank) { return rank >= 0 ? 1.0 / (1.0 + rank) : 0.0; };
    x[0] = 1;
    x[1] = node.seed ? 1 : 0;
    x[2] = node.retrieval_rank >= 0 ? 1 : 0;
    x[3] = recip(node.retrieval_rank);
    x[4] = max_score > 0 ? std::max(0.0, node.retrieval_score) / max_score : 0;
    x[5] = node.lexical_rank >= 0 ? 1 : 0;
    x[6] = recip(node.lexical_rank);
    x[7] = node.dense_rank >= 0 ? 1 : 0;
    x[8] = recip(node.dense_rank);
    x[11 + static_cast<std::size_t>(std::clamp(node.depth, 0, 2))] = 1;
    x[14] = std::log1p(static_cast<double>(degree[i])) / std::log1p(64.0);
    x[15] = std::clamp(node.confidence, 0.0, 1.0);
    x[16] = std::exp(-std::max(0.0, node.age_days) / shape.recency_days);
    x[node.type == 0 ? 17 : node.type == 1 ? 18 : 19] = 1;  // memory::NodeType document, chunk, other
    embedding_features(node, q, qn, scale, shape, x);
  }
  incoming_lists(g, shape, p);
  return p;
}

// Forward values kept for the backward pass.
struct Pass {
  std::vector<double> h;         // n × d
  std::vector<double> proj;      // n × H × 3: a_sᵀh, a_tᵀh, vᵀh
  std::vector<double> z, alpha;  // per incoming entry × H
  std::vector<double> m;         // n × H
  std::vector<double> s;         // n
};

void forward(const Layout& L, const std::vector<double>& th, const AttentionShape& shape, const Prepared& p, Pass& f) {
  const std::size_t n = p.n, F = L.F, d = L.d, H = L.H, E = p.in.size();
  f.h.assign(n * d, 0.0);
  f.proj.assign(n * H * 3, 0.0);
  f.z.assign(E * H, 0.0);
  f.alpha.assign(E * H, 0.0);
  f.m.assign(n * H, 0.0);
  f.s.assign(n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    const double* x = &p.x[i * F];
    double* h = &f.h[i * d];
    for (std::size_t r = 0; r < d; ++r) h[r] = dot(&th[L.W + r * F], x, F);
    for (std::size_t k = 0; k < H; ++k) {
      f.proj[(i * H + k) * 3 + 0] = dot(&th[L.a_s + k * d], h, d);
      f.proj[(i * H + k) * 3 + 1] = dot(&th[L.a_t + k * d], h, d);
      f.proj[(i * H + k) * 3 + 2] = dot(&th[L.v + k * d], h, d);
    }
    f.s[i] = dot(&th[L.c], x, F) + dot(&th[L.omega], h, d);
  }
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t k = 0; k < H; ++k) {
      double top = -INFINITY;
      for (std::size_t e = p.offset[i]; e < p.offset[i + 1]; ++e) {
        const auto& in = p.in[e];
        const double z = f.proj[(i * H + k) * 3] + f.proj[(in.j * H + k) * 3 + 1] + th[L.rb + k * L.R + in.rel];
        f.z[e * H + k] = z;
        const double logit = (z > 0 ? z : shape.leaky_slope * z) + in.log_weight;
        f.alpha[e * H + k] = logit;
        top = std::max(top, logit);
      }
      double sum = 0;
      for (std::size_t e = p.offset[i]; e < p.offset[i + 1]; ++e)
        sum += f.alpha[e * H + k] = std::exp(f.alpha[e * H + k] - top);
      double m = 0;
      for (std::size_t e = p.offset[i]; e < p.offset[i + 1]; ++e) {
        f.alpha[e * H + k] /= sum;
        m += f.alpha[e * H + k] * f.proj[(p.in[e].j * H + k) * 3 + 2];
      }
      f.m[i * H + k] = m;
      f.s[i] += th[L.beta + k] * m;
    }
  }
}

// Adds ∂(Σ_i ds_i s_i)/∂θ to grad.
void backward(const Layout& L, const std::vector<double>& th, const AttentionShape& shape, const Prepared& p,
              const Pass& f, const std::vector<double>& ds, std::vector<double>& grad) {
  const std::size_t n = p.n, F = L.F, d = L.d, H = L.H;
  std::vector<double> dh(n * d, 0.0), dproj(n * H * 3, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    const double g = ds[i];
    if (g == 0) continue;
    const double* x = &p.x[i * F];
    for (std::size_t t = 0; t < F; ++t) grad[L.c + t] += g * x[t];
    for (std::size_t r = 0; r < d; ++r) {
      grad[L.omega + r] += g * f.h[i * d + r];
      dh[i * d + r] += g * th[L.omega + r];
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t k = 0; k < H; ++k) {
      grad[L.beta + k] += ds[i] * f.m[i * H + k];
      const double dm = ds[i] * th[L.beta + k];
      if (dm == 0) continue;
      // m = Σ α_e u_j: dα_e = dm u_j, du_j += dm α_e; softmax: dlogit_e = α_e (dα_e − Σ α dα).
      double mean = 0;
      for (std::size_t e = p.offset[i]; e < p.offset[i + 1]; ++e) {
        const double u = f.proj[(p.in[e].j * H + k) * 3 + 2];
        mean += f.alpha[e * H + k] * dm * u;
        dproj[(p.in[e].j * H + k) * 3 + 2] += dm * f.alpha[e * H + k];
      }
      for (std::size_t e = p.offset[i]; e < p.offset[i + 1]; ++e) {
        const auto& in = p.in[e];
        const double a = f.alpha[e * H + k];
        const double dlogit = a * (dm * f.proj[(in.j * H + k) * 3 + 2] - mean);
        const double dz = dlogit * (f.z[e * H + k] > 0 ? 1.0 : shape.leaky_slope);
        dproj[(i * H + k) * 3 + 0] += dz;
        dproj[(in.j * H + k) * 3 + 1] += dz;
        grad[L.rb + k * L.R + in.rel] += dz;
      }
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    const double* h = &f.h[i * d];
    for (std::size_t k = 0; k < H; ++k) {
      const std::size_t offsets[3] = {L.a_s, L.a_t, L.v};
      for (std::size_t c = 0; c < 3; ++c) {
        const double g = dproj[(i * H + k) * 3 + c];
        if (g == 0) continue;
        for (std::size_t r = 0; r < d; ++r) {
          grad[offsets[c] + k * d + r] += g * h[r];
          dh[i * d + r] += g * th[offsets[c] + k * d + r];
        }
      }
    }
    const double* x = &p.x[i * F];
    for (std::size_t r = 0; r < d; ++r) {
      const double g = dh[i * d + r];
      if (g == 0) continue;
      double* w = &grad[L.W + r * F];
      for (std::size_t t = 0; t < F; ++t) w[t] += g * x[t];
    }
  }
}

// Listwise softmax cross-entropy of one example: −mean over relevant r of log softmax(s)_r.
double listwise_loss(const std::vector<double>& s, const std::vector<std::size_t>& relevant, std::vector<double>& ds) {
  const double top = *std::max_element(s.begin(), s.end());
  double sum = 0;
  for (double v : s) sum += std::exp(v - top);
  const double log_z = top + std::log(sum);
  ds.resize(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) ds[i] = std::exp(s[i] - log_z);
  double loss = 0;
  const double share = 1.0 / static_cast<double>(relevant.size());
  for (std::size_t r : relevant) {
    loss -= share * (s[r] - log_z);
    ds[r] -= share;
  }
  return loss;
}

std::vector<std::size_t> checked_relevant(const Example& ex) {
  std::vector<std::size_t> r = ex.relevant;
  std::sort(r.begin(), r.end());
  r.erase(std::unique(r.begin(), r.end()), r.end());
  if (!r.empty() && r.back() >= ex.input.nodes.size()) throw Error("attention: a relevant node index is out of range");
  return r;
}

void summarise_softmax(const GraphInput& in, Scores& s) {
  s.entropy = 0;
  s.depth_touched = 0;
  if (s.score.empty()) return;
  const double top = *std::max_element(s.score.begin(), s.score.end());
  double sum = 0;
  for (double v : s.score) sum += std::exp(v - top);
  for (std::size_t i = 0; i < s.score.size(); ++i) {
    const double p = std::exp(s.score[i] - top) / sum;
    if (p > 0) s.entropy -= p * std::log(p);
    // Deepest node with at least 1e-3 of the top node's probability.
    if (std::exp(s.score[i] - top) >= 1e-3) s.depth_touched = std::max(s.depth_touched, in.nodes[i].depth);
  }
}

}  // namespace

AttentionModel::AttentionModel(std::size_t dimension, const AttentionShape& shape, uint64_t seed)
    : dimension_(dimension), shape_(shape) {
  check_shape(shape_);
  if (dimension > 65536) throw Error("attention: dimension must be at most 65536");
  const Layout L(dimension_, shape_);
  theta_.assign(L.total, 0.0);
  std::mt19937_64 rng(seed);
  // Small random W, a and v so that every path carries gradient; β = ω = 0 so that the untrained
  // scores are c·x alone, which is the retrieval order (seeds by rank, then the others by depth).
  const double w_scale = 1.0 / std::sqrt(static_cast<double>(L.F));
  for (std::size_t i = 0; i < L.d * L.F; ++i) theta_[L.W + i] = w_scale * normal(rng);
  for (std::size_t i = 0; i < 3 * L.H * L.d; ++i) theta_[L.a_s + i] = 0.3 * normal(rng);
  theta_[L.c + kRankFeature] = 1.0;
  theta_[L.c + 12] = -1e-3;  // depth 1
  theta_[L.c + 13] = -2e-3;  // depth 2+
  anchor_ = theta_;
}

double AttentionModel::loss(const std::vector<Example>& examples, std::vector<double>* gradient, double l2) const {
  const Layout L(dimension_, shape_);
  if (gradient) gradient->assign(theta_.size(), 0.0);
  double total = 0;
  std::size_t used = 0;
  Pass f;
  std::vector<double> ds;
  for (const Example& ex : examples) {
    const auto relevant = checked_relevant(ex);
    if (relevant.empty()) continue;
    const Prepared p = prepare(ex.input, dimension_, shape_);
    forward(L, theta_, shape_, p, f);
    total += listwise_loss(f.s, relevant, ds);
    if (gradient) backward(L, theta_, shape_, p, f, ds, *gradient);
    ++used;
  }
  if (used == 0) throw Error("attention: no example has a relevant node");
  const double inv = 1.0 / static_cast<double>(used);
  total *= inv;
  if (gradient) {
    for (double& g : *gradient) g *= inv;
  }
  for (std::size_t i = 0; i < theta_.size(); ++i) {
    const double delta = theta_[i] - anchor_[i];
    total += 0.5 * l2 * delta * delta;
    if (gradient) (*gradient)[i] += l2 * delta;
  }
  return total;
}

TrainReport AttentionModel::train(const std::vector<Example>& examples, const TrainParams& params) {
  if (params.epochs < 0) throw Error("attention: epochs must be non-negative");
  if (!(params.learning_rate > 0) || !std::isfinite(params.learning_rate))
    throw Error("attention: learning_rate must be positive");
  if (!(params.l2 >= 0) || !std::isfinite(params.l2)) throw Error("attention: l2 must be non-negative");
  const Layout L(dimension_, shape_);
  TrainReport report;
  // Features once: the epochs only change θ.
  std::vector<std::pair<Prepared, std::vector<std::size_t>>> data;
  for (const Example& ex : examples) {
    auto relevant = checked_relevant(ex);
    if (relevant.empty()) {
      ++report.skipped;
      continue;
    }
    data.emplace_back(prepare(ex.input, dimension_, shape_), std::move(relevant));
  }
  report.examples = data.size();
  if (data.empty()) throw Error("attention: no training example has a relevant node in its subgraph");
  std::vector<double> grad(theta_.size()), ds;
  common::Adam adam(theta_.size());
  Pass f;
  const double inv = 1.0 / static_cast<double>(data.size());
  auto evaluate = [&](bool with_gradient) {
    std::fill(grad.begin(), grad.end(), 0.0);
    double total = 0;
    for (const auto& [p, relevant] : data) {
      forward(L, theta_, shape_, p, f);
      total += listwise_loss(f.s, relevant, ds);
      if (with_gradient) backward(L, theta_, shape_, p, f, ds, grad);
    }
    return total * inv;
  };
  report.initial_loss = evaluate(false);
  const std::vector<double> before = theta_;
  for (int epoch = 1; epoch <= params.epochs; ++epoch) {
    const double loss = evaluate(true);
    for (std::size_t i = 0; i < theta_.size(); ++i) grad[i] = grad[i] * inv + params.l2 * (theta_[i] - anchor_[i]);
    adam.step(theta_, grad, params.learning_rate);
    if (params.progress) params.progress(epoch, loss);
    report.epochs = epoch;
  }
  report.final_loss = evaluate(false);
  const bool finite = std::isfinite(report.final_loss) &&
                      std::all_of(theta_.begin(), theta_.end(), [](double t) { return std::isfinite(t); });
  if (!finite) {
    theta_ = before;  // the model stays as it was
    throw Error("attention: training diverged (non-finite loss or parameters); lower the learning rate");
  }
  return report;
}

class GraphAttention final : public Scorer {
 public:
  explicit GraphAttention(std::shared_ptr<const AttentionModel> model) : model_(std::move(model)) {
    if (!model_) throw Error("graph attention needs a model");
  }
  std::string name() const override { return "graph attention"; }
  Scores score(const GraphInput& input) const override {
    Scores s;
    const Prepared p = prepare(input, model_->dimension_, model_->shape_);
    if (p.n == 0) return s;
    Pass f;
    forward(Layout(model_->dimension_, model_->shape_), model_->theta_, model_->shape_, p, f);
    s.score = std::move(f.s);
    summarise_softmax(input, s);
    return s;
  }

 private:
  std::shared_ptr<const AttentionModel> model_;
};

std::unique_ptr<Scorer> graph_attention(std::shared_ptr<const AttentionModel> model) {
  return std::make_unique<GraphAttention>(std::move(model));
}

}  // namespace ruvllm::attention
