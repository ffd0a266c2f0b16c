// The fusion of a dense and a lexical ranking against a reference written from the definitions in
// ruvllm/memory.h: RRF sums 1 / (rrf_k + rank) over the lists a key is in (rank 1-based); weighted
// sums w * dense + (1 - w) * lexical over them, each min-max normalised over its list (a list whose
// scores are all equal normalises to 1); dense or lexical alone scores by that list's own score
// (bm25 negated, so that higher is better). Hits are best first, ties by key, k at most.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>

#include "memory/fusion.h"

namespace ruvllm::memory::detail {
namespace {

std::vector<Fused> reference(const std::vector<Ranked>& dense, const std::vector<Ranked>& lexical,
                             const FusionParams& p) {
  std::map<uint64_t, Fused> by_key;
  for (std::size_t r = 0; r < dense.size(); ++r) {
    by_key[dense[r].key].dense_rank = static_cast<int>(r);
    by_key[dense[r].key].similarity = dense[r].score;
  }
  for (std::size_t r = 0; r < lexical.size(); ++r) {
    by_key[lexical[r].key].lexical_rank = static_cast<int>(r);
    by_key[lexical[r].key].bm25 = -lexical[r].score;
  }
  // Min-max over each whole list, not from its ends: the reference does not lean on the order.
  const auto range = [](const std::vector<Ranked>& list, double sign) {
    double lo = 0, hi = 0;
    for (std::size_t i = 0; i < list.size(); ++i) {
      const double x = sign * list[i].score;
      lo = i ? std::min(lo, x) : x;
      hi = i ? std::max(hi, x) : x;
    }
    return std::pair{lo, hi};
  };
  const auto [dlo, dhi] = range(dense, 1);
  const auto [llo, lhi] = range(lexical, -1);
  const auto normalised = [](double x, double lo, double hi) { return hi == lo ? 1.0 : (x - lo) / (hi - lo); };
  std::vector<Fused> all;
  for (auto& [key, f] : by_key) {
    f.key = key;
    const bool in_dense = f.dense_rank >= 0, in_lexical = f.lexical_rank >= 0;
    if (p.mode == SearchMode::dense) {
      f.score = f.similarity;
    } else if (p.mode == SearchMode::lexical) {
      f.score = f.bm25;
    } else if (p.fusion == Fusion::rrf) {
      const double d = in_dense ? 1.0 / (p.rrf_k + (f.dense_rank + 1)) : 0;
      const double l = in_lexical ? 1.0 / (p.rrf_k + (f.lexical_rank + 1)) : 0;
      f.score = in_dense && in_lexical ? d + l : in_dense ? d : l;
    } else {
      const double d = in_dense ? p.dense_weight * normalised(f.similarity, dlo, dhi) : 0;
      const double l = in_lexical ? (1 - p.dense_weight) * normalised(f.bm25, llo, lhi) : 0;
      f.score = in_dense && in_lexical ? d + l : in_dense ? d : l;
    }
    all.push_back(f);
  }
  std::sort(all.begin(), all.end(),
            [](const Fused& a, const Fused& b) { return a.score > b.score || (a.score == b.score && a.key < b.key); });
  if (all.size() > p.k) all.resize(p.k);
  return all;
}

// `size` distinct keys out of [0, pool), with scores in rank order: descending for a dense list,
// ascending (FTS5's bm25(), lower is better) for a lexical one. `ties`: scores from a few values.
std::vector<Ranked> ranking(std::mt19937_64& rng, std::size_t size, uint64_t pool, bool ties, bool lexical) {
  std::vector<uint64_t> keys(pool);
  std::iota(keys.begin(), keys.end(), 0);
  std::shuffle(keys.begin(), keys.end(), rng);
  std::vector<Ranked> list;
  std::uniform_real_distribution<double> uniform(-1, 1);
  std::uniform_int_distribution<int> few(0, 3);
  for (std::size_t i = 0; i < size && i < pool; ++i) {
    const double x = ties ? few(rng) * 0.25 : uniform(rng);
    list.push_back({keys[i], lexical ? -10 * std::abs(x) : x});
  }
  std::stable_sort(list.begin(), list.end(),
                   [&](const Ranked& a, const Ranked& b) { return lexical ? a.score < b.score : a.score > b.score; });
  return list;
}

void expect_same(const std::vector<Fused>& got, const std::vector<Fused>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].key, want[i].key) << what << " at " << i;
    EXPECT_DOUBLE_EQ(got[i].score, want[i].score) << what << " at " << i;
    EXPECT_EQ(got[i].dense_rank, want[i].dense_rank) << what << " at " << i;
    EXPECT_EQ(got[i].lexical_rank, want[i].lexical_rank) << what << " at " << i;
    EXPECT_EQ(got[i].similarity, want[i].similarity) << what << " at " << i;
    EXPECT_EQ(got[i].bm25, want[i].bm25) << what << " at " << i;
  }
}

TEST(Fusion, EqualsTheDefinitionsOnRandomRankings) {
  std::mt19937_64 rng(20240611);
  const double rrf_ks[] = {60, 1, 0.5, 7.25};
  const double weights[] = {0, 0.25, 0.5, 1};
  std::size_t overlapping = 0, tied = 0, one_sided = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const uint64_t pool = std::uniform_int_distribution<uint64_t>(1, 40)(rng);
    const bool ties = trial % 3 == 0;
    FusionParams p;
    p.mode = std::array{SearchMode::hybrid, SearchMode::hybrid, SearchMode::dense, SearchMode::lexical}[trial % 4];
    p.fusion = trial % 8 < 4 ? Fusion::rrf : Fusion::weighted;
    p.rrf_k = rrf_ks[rng() % 4];
    p.dense_weight = rng() % 2 ? weights[rng() % 4] : std::uniform_real_distribution<double>(0, 1)(rng);
    // Each mode as search() calls it: dense or lexical alone get only their own list.
    std::size_t dense_size = rng() % 25, lexical_size = rng() % 25;
    if (p.mode == SearchMode::lexical || rng() % 10 == 0) dense_size = 0;
    if (p.mode == SearchMode::dense || rng() % 10 == 0) lexical_size = 0;
    const auto dense = ranking(rng, dense_size, pool, ties, false);
    const auto lexical = ranking(rng, lexical_size, pool, ties, true);
    p.k = 1 + rng() % (dense.size() + lexical.size() + 3);

    std::set<uint64_t> dense_keys;
    for (const auto& r : dense) dense_keys.insert(r.key);
    for (const auto& r : lexical) overlapping += dense_keys.count(r.key);
    tied += ties;
    one_sided += dense.empty() != lexical.empty();

    const auto want = reference(dense, lexical, p);
    expect_same(fuse(dense, lexical, p), want, "trial " + std::to_string(trial));
    if (HasFailure()) return;
  }
  // The draw covered what it is meant to: shared keys, equal scores, one list empty.
  EXPECT_GT(overlapping, 1000u);
  EXPECT_GT(tied, 500u);
  EXPECT_GT(one_sided, 300u);
}

TEST(Fusion, EmptyListsAndTheCutAtK) {
  FusionParams p;
  EXPECT_TRUE(fuse({}, {}, p).empty());
  std::mt19937_64 rng(7);
  const auto dense = ranking(rng, 30, 30, false, false);
  const auto lexical = ranking(rng, 30, 30, false, true);
  for (const Fusion fusion : {Fusion::rrf, Fusion::weighted}) {
    p.fusion = fusion;
    p.k = 1000;
    const auto all = fuse(dense, lexical, p);
    ASSERT_EQ(all.size(), 30u);  // both lists rank the same 30 keys
    for (const std::size_t k : {1u, 5u, 29u, 30u}) {
      p.k = k;
      const auto top = fuse(dense, lexical, p);
      // The best k of the full fusion, in its order: cutting at k changes nothing above the cut.
      expect_same(top, std::vector<Fused>(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k)),
                  "k " + std::to_string(k));
    }
  }
}

TEST(Fusion, EqualScoresOrderByKey) {
  // Key 9 first in dense, key 3 first in lexical: RRF gives both 1/(k+1) + nothing, a tie.
  const std::vector<Ranked> dense = {{9, 0.9}}, lexical = {{3, -4.0}};
  FusionParams p;
  const auto hits = fuse(dense, lexical, p);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(hits[0].score, hits[1].score);
  EXPECT_EQ(hits[0].key, 3u);
  EXPECT_EQ(hits[1].key, 9u);
  EXPECT_EQ(hits[0].dense_rank, -1);
  EXPECT_EQ(hits[1].lexical_rank, -1);
}

}  // namespace
}  // namespace ruvllm::memory::detail
