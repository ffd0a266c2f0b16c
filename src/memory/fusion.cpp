// Reciprocal rank fusion and a weighted sum of min-max normalised scores (see fusion.h).
#include "fusion.h"

#include <algorithm>
#include <unordered_map>

namespace ruvllm::memory::detail {

std::vector<Fused> fuse(std::span<const Ranked> dense, std::span<const Ranked> lexical, const FusionParams& params) {
  std::unordered_map<uint64_t, Fused> fused;
  double dmin = 0, dmax = 0, lmin = 0, lmax = 0;
  if (!dense.empty()) {
    dmin = dense.back().score;
    dmax = dense.front().score;
  }
  if (!lexical.empty()) {  // FTS5's bm25() is negative: lower is better
    lmin = -lexical.back().score;
    lmax = -lexical.front().score;
  }
  const auto norm = [](double x, double lo, double hi) { return hi > lo ? (x - lo) / (hi - lo) : 1.0; };
  for (std::size_t r = 0; r < dense.size(); ++r) {
    Fused& f = fused[dense[r].key];
    f.dense_rank = static_cast<int>(r);
    f.similarity = dense[r].score;
  }
  for (std::size_t r = 0; r < lexical.size(); ++r) {
    Fused& f = fused[lexical[r].key];
    f.lexical_rank = static_cast<int>(r);
    f.bm25 = -lexical[r].score;
  }
  for (auto& [key, f] : fused) {
    f.key = key;
    if (params.mode == SearchMode::dense) {
      f.score = f.similarity;
    } else if (params.mode == SearchMode::lexical) {
      f.score = f.bm25;
    } else if (params.fusion == Fusion::rrf) {
      if (f.dense_rank >= 0) f.score += 1.0 / (params.rrf_k + f.dense_rank + 1);
      if (f.lexical_rank >= 0) f.score += 1.0 / (params.rrf_k + f.lexical_rank + 1);
    } else {
      if (f.dense_rank >= 0) f.score += params.dense_weight * norm(f.similarity, dmin, dmax);
      if (f.lexical_rank >= 0) f.score += (1 - params.dense_weight) * norm(f.bm25, lmin, lmax);
    }
  }
  std::vector<Fused*> order;
  order.reserve(fused.size());
  for (auto& [key, f] : fused) order.push_back(&f);
  const std::size_t keep = std::min(params.k, order.size());
  std::partial_sort(
      order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(),
      [](const Fused* a, const Fused* b) { return a->score != b->score ? a->score > b->score : a->key < b->key; });
  std::vector<Fused> out;
  out.reserve(keep);
  for (std::size_t i = 0; i < keep; ++i) out.push_back(*order[i]);
  return out;
}

}  // namespace ruvllm::memory::detail
