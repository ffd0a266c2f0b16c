// The fusion of a search's two rankings into one: pure (no store, no locks), so that tests compare
// it with its definition directly (tests/memory/fusion_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "ruvllm/memory.h"

namespace ruvllm::memory::detail {

struct Ranked {  // one entry of a ranking; a ranking is best first, each key at most once
  uint64_t key = 0;
  double score = 0;  // dense: similarity (higher is better); lexical: FTS5's bm25() (lower is better)
};

struct FusionParams {  // SearchQuery's fields that fusion reads (the same meanings)
  SearchMode mode = SearchMode::hybrid;
  Fusion fusion = Fusion::rrf;
  double rrf_k = 60;
  double dense_weight = 0.5;
  std::size_t k = 10;
};

struct Fused {
  uint64_t key = 0;
  double score = 0;                        // as Hit::score
  int dense_rank = -1, lexical_rank = -1;  // 0-based position in each list, -1 = absent
  double similarity = 0, bm25 = 0;         // raw scores where ranked, bm25 negated (higher is better)
};

// Every key of either list, scored by `params.mode` (dense or lexical alone: that list's own score;
// hybrid: `params.fusion` of both), the best `params.k`, by score then key.
std::vector<Fused> fuse(std::span<const Ranked> dense, std::span<const Ranked> lexical, const FusionParams& params);

}  // namespace ruvllm::memory::detail
