#include "llm/prefix_cache.h"

#include <gtest/gtest.h>

#include <random>

namespace ruvllm::llm::detail {
namespace {

std::vector<uint8_t> state_of(std::size_t bytes, uint8_t tag) { return std::vector<uint8_t>(bytes, tag); }

TEST(PrefixCache, FindsTheLongestCachedPrefixLikeBruteForce) {
  std::mt19937 rng(3);
  PrefixCache cache(std::size_t{1} << 30);
  std::vector<std::vector<llama_token>> stored;
  // Entries are prefixes of a few base sequences, so that queries share prefixes with many.
  std::vector<std::vector<llama_token>> bases(4);
  for (auto& b : bases) {
    for (int i = 0; i < 64; ++i) b.push_back(static_cast<llama_token>(rng() % 5));
  }
  for (int i = 0; i < 40; ++i) {
    const auto& b = bases[rng() % bases.size()];
    std::vector<llama_token> prefix(b.begin(), b.begin() + 1 + static_cast<std::ptrdiff_t>(rng() % 63));
    cache.insert(prefix, state_of(8, static_cast<uint8_t>(prefix.size())));
    stored.push_back(prefix);
  }
  for (int q = 0; q < 500; ++q) {
    auto query = bases[rng() % bases.size()];
    query.resize(1 + rng() % 64);
    if (rng() % 3 == 0) query[rng() % query.size()] = 9;  // diverge somewhere
    const std::size_t max_tokens = rng() % 70;
    std::size_t expected = 0;
    for (const auto& s : stored) {
      if (s.size() <= max_tokens && s.size() <= query.size() && std::equal(s.begin(), s.end(), query.begin())) {
        expected = std::max(expected, s.size());
      }
    }
    const auto hit = cache.find(query, max_tokens);
    ASSERT_EQ(hit ? hit->tokens : 0, expected) << "query " << q;
    if (hit) {
      ASSERT_EQ(hit->state.size(), 8u);
      ASSERT_EQ(hit->state[0], static_cast<uint8_t>(expected));  // the state stored with that prefix
    }
  }
}

TEST(PrefixCache, EvictsLeastRecentlyUsedBeyondItsBudget) {
  PrefixCache cache(250);
  cache.insert(std::vector<llama_token>{1}, state_of(100, 1));
  cache.insert(std::vector<llama_token>{2}, state_of(100, 2));
  ASSERT_TRUE(cache.find(std::vector<llama_token>{1, 5}, 10));  // 1 is now the most recent
  cache.insert(std::vector<llama_token>{3}, state_of(100, 3));  // 300 > 250: evict 2
  EXPECT_TRUE(cache.contains(std::vector<llama_token>{1}));
  EXPECT_FALSE(cache.contains(std::vector<llama_token>{2}));
  EXPECT_TRUE(cache.contains(std::vector<llama_token>{3}));
  EXPECT_EQ(cache.entries(), 2u);
  EXPECT_EQ(cache.bytes(), 200u);
}

TEST(PrefixCache, ReplacesTheSamePrefixAndRefusesStatesLargerThanTheBudget) {
  PrefixCache cache(150);
  const std::vector<llama_token> p{4, 5, 6};
  cache.insert(p, state_of(50, 1));
  cache.insert(p, state_of(60, 2));
  EXPECT_EQ(cache.entries(), 1u);
  EXPECT_EQ(cache.bytes(), 60u);
  EXPECT_EQ(cache.find(p, 3)->state[0], 2);
  cache.insert(std::vector<llama_token>{7}, state_of(151, 3));
  EXPECT_FALSE(cache.contains(std::vector<llama_token>{7}));
  EXPECT_EQ(cache.bytes(), 60u);
}

}  // namespace
}  // namespace ruvllm::llm::detail
