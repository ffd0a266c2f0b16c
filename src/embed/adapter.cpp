// Dimension alignment: a fixed random projection followed by LayerNorm, then L2 normalisation.
#include <cmath>
#include <random>

#include "ruvllm/embed.h"

namespace ruvllm::embed {
namespace {

class Adapter final : public Embedder {
 public:
  Adapter(std::unique_ptr<Embedder> inner, const AdapterParams& params)
      : inner_(std::move(inner)), params_(params), in_(inner_ ? inner_->dimension() : 0) {
    if (!inner_) throw Error("adapter: no embedder to adapt");
    if (params_.output_dim == 0 || params_.output_dim > 65536) throw Error("adapter: output_dim must be in [1, 65536]");
    // N(0, 1/out): E[<Px, Py>] = <x, y>. A fixed seed makes the space reproducible across runs.
    std::mt19937_64 rng(params_.seed);
    std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(params_.output_dim)));
    projection_.resize(params_.output_dim * in_);
    for (float& w : projection_) w = normal(rng);
  }

  std::size_t dimension() const override { return params_.output_dim; }
  std::string name() const override {
    return inner_->name() + "->" + std::to_string(params_.output_dim) + "d(seed " + std::to_string(params_.seed) +
           (params_.layer_norm ? ",ln)" : ")");
  }

  Embedding embed(std::string_view text) const override {
    Embedding e = inner_->embed(text);
    if (e.vector.empty()) return e;
    if (e.vector.size() != in_) throw Error("adapter: inner embedder returned a vector of the wrong dimension");
    std::vector<float> y(params_.output_dim, 0.0f);
    for (std::size_t o = 0; o < params_.output_dim; ++o) {
      const float* row = projection_.data() + o * in_;
      float acc = 0;
      for (std::size_t i = 0; i < in_; ++i) acc += row[i] * e.vector[i];
      y[o] = acc;
    }
    if (params_.layer_norm) {
      double mean = 0, var = 0;
      for (float v : y) mean += v;
      mean /= static_cast<double>(y.size());
      for (float v : y) var += (v - mean) * (v - mean);
      var /= static_cast<double>(y.size());
      const double inv = 1.0 / std::sqrt(var + 1e-5);
      for (float& v : y) v = static_cast<float>((v - mean) * inv);
    }
    double norm = 0;
    for (float v : y) norm += static_cast<double>(v) * v;
    norm = std::sqrt(norm);
    if (!(norm > 0)) {  // a 1-d LayerNorm output is 0: there is no direction left to compare
      e.vector.clear();
      return e;
    }
    for (float& v : y) v = static_cast<float>(v / norm);
    e.vector = std::move(y);
    return e;
  }

 private:
  std::unique_ptr<Embedder> inner_;
  AdapterParams params_;
  std::size_t in_;
  std::vector<float> projection_;  // output_dim x in, row-major
};

}  // namespace

std::unique_ptr<Embedder> adapt(std::unique_ptr<Embedder> inner, const AdapterParams& params) {
  return std::make_unique<Adapter>(std::move(inner), params);
}

}  // namespace ruvllm::embed
