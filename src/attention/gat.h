// Shared by the graph-attention layer (gat.cpp) and its model file (gat_file.cpp): the relation
// and feature names, where each parameter lives in θ, and the shape's limits.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <string_view>
#include <utility>

#include "ruvllm/attention.h"

namespace ruvllm::attention {

// Relations with a learned bias each way; anything else shares "other".
inline constexpr std::array<std::string_view, 10> kRelations = {"follows",        "part_of", "same_topic", "mentions",
                                                                "near_duplicate", "cites",   "derived",    "supersedes",
                                                                "agent_step",     "other"};
inline constexpr std::size_t kSelfRelation = 2 * kRelations.size();
inline constexpr std::size_t kRelationSlots = kSelfRelation + 1;

inline constexpr std::array<std::string_view, 20> kMetaFeatures = {
    "bias",        "seed",        "found",   "rank_recip",    "score_norm", "lexical_found", "lexical_recip",
    "dense_found", "dense_recip", "cosine",  "has_embedding", "depth_0",    "depth_1",       "depth_2plus",
    "log_degree",  "confidence",  "recency", "type_document", "type_chunk", "type_other"};
inline constexpr std::size_t kMeta = kMetaFeatures.size();
inline constexpr std::size_t kRankFeature = 3;  // the untrained model's score

struct Layout {
  std::size_t F, d, H, R = kRelationSlots;
  std::size_t W, c, omega, beta, a_s, a_t, v, rb, total;
  Layout(std::size_t dimension, const AttentionShape& s)
      : F(kMeta + (s.query_interaction ? dimension : 0)), d(s.hidden), H(s.heads) {
    std::size_t at = 0;
    auto take = [&](std::size_t n) { return std::exchange(at, at + n); };
    W = take(d * F);
    c = take(F);
    omega = take(d);
    beta = take(H);
    a_s = take(H * d);
    a_t = take(H * d);
    v = take(H * d);
    rb = take(H * R);
    total = at;
  }
};

inline void check_shape(const AttentionShape& s) {
  if (s.hidden < 1 || s.hidden > 256) throw Error("attention: hidden must be in [1, 256]");
  if (s.heads > 16) throw Error("attention: heads must be in [0, 16]");
  if (!(s.leaky_slope >= 0 && s.leaky_slope < 1)) throw Error("attention: leaky_slope must be in [0, 1)");
  if (!(s.recency_days > 0) || !std::isfinite(s.recency_days)) throw Error("attention: recency_days must be positive");
}

}  // namespace ruvllm::attention
