// Scorers against closed forms and brute force; the context builder against its budgets.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/utf8.h"
#include "ruvllm/attention.h"

namespace ruvllm::attention {
namespace {

GraphInput random_graph(std::size_t n, std::size_t m, std::size_t seeds, uint64_t seed) {
  std::mt19937_64 rng(seed);
  GraphInput g;
  g.nodes.resize(n);
  for (std::size_t i = 0; i < seeds; ++i) {
    g.nodes[i].seed = true;
    g.nodes[i].retrieval_rank = static_cast<int>(i);
    g.nodes[i].retrieval_score = 1.0 / (1.0 + static_cast<double>(i));
  }
  // A ring keeps every node connected (no dangling mass), then random chords.
  for (std::size_t i = 0; i < n; ++i) g.edges.push_back({i, (i + 1) % n, "follows", 1.0, 1.0, 0});
  std::uniform_real_distribution<double> w(0.1, 2.0);
  for (std::size_t e = 0; e < m; ++e)
    g.edges.push_back({rng() % n, rng() % n, "mentions", w(rng), 0.5 + w(rng) / 4, 0});
  return g;
}

// p = (1 - d) (I - d M)^-1 r with M[i][j] = w_ij / W_j, solved by Gaussian elimination.
std::vector<double> pagerank_closed_form(const GraphInput& g, double d) {
  const std::size_t n = g.nodes.size();
  std::vector<std::vector<double>> w(n, std::vector<double>(n, 0.0));
  for (const auto& e : g.edges) {
    if (e.src == e.dst) continue;
    w[e.src][e.dst] += e.weight * e.confidence;
    w[e.dst][e.src] += e.weight * e.confidence;
  }
  std::vector<double> col(n, 0.0), r(n, 0.0);
  double mass = 0;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) col[j] += w[i][j];
    if (g.nodes[i].seed) mass += (r[i] = g.nodes[i].retrieval_score);
  }
  std::vector<std::vector<double>> a(n, std::vector<double>(n + 1, 0.0));
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) a[i][j] = (i == j ? 1.0 : 0.0) - d * w[i][j] / col[j];
    a[i][n] = (1 - d) * r[i] / mass;
  }
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t pivot = c;
    for (std::size_t i = c + 1; i < n; ++i) {
      if (std::abs(a[i][c]) > std::abs(a[pivot][c])) pivot = i;
    }
    std::swap(a[c], a[pivot]);
    for (std::size_t i = 0; i < n; ++i) {
      if (i == c) continue;
      const double f = a[i][c] / a[c][c];
      for (std::size_t j = c; j <= n; ++j) a[i][j] -= f * a[c][j];
    }
  }
  std::vector<double> p(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = a[i][n] / a[i][i];
  return p;
}

TEST(PageRank, MatchesTheClosedForm) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    const GraphInput g = random_graph(40, 60, 5, seed);
    for (double d : {0.5, 0.85}) {
      const auto got = personalized_pagerank({.damping = d, .max_iterations = 1000, .tolerance = 1e-14})->score(g);
      const auto want = pagerank_closed_form(g, d);
      ASSERT_EQ(got.score.size(), want.size());
      for (std::size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got.score[i], want[i], 1e-9) << "node " << i;
      EXPECT_GT(got.entropy, 0);
    }
  }
}

TEST(PageRank, BridgesBetweenSeedsRiseAndMassIsKept) {
  GraphInput g;
  g.nodes.resize(5);
  g.nodes[0].seed = g.nodes[1].seed = true;
  g.nodes[0].retrieval_rank = 0;
  g.nodes[1].retrieval_rank = 1;
  g.nodes[0].retrieval_score = g.nodes[1].retrieval_score = 1;
  g.nodes[2].depth = g.nodes[3].depth = 1;
  g.nodes[4].depth = 2;  // dangling: no edges
  g.edges = {{0, 2, "mentions"}, {1, 2, "mentions"}, {0, 3, "mentions"}, {3, 3, "self"}};
  const auto s = personalized_pagerank()->score(g);
  EXPECT_GT(s.score[2], s.score[3]);  // reached from both seeds
  double total = 0;
  for (double x : s.score) total += x;
  EXPECT_NEAR(total, 1.0, 1e-9);
  EXPECT_EQ(s.score[4], 0.0);
  EXPECT_EQ(s.depth_touched, 1);
  // The self-loop changes nothing.
  g.edges.pop_back();
  const auto without = personalized_pagerank()->score(g);
  for (std::size_t i = 0; i < 5; ++i) EXPECT_NEAR(s.score[i], without.score[i], 1e-12);
}

TEST(Scorers, RetrievalOrderAndBadInput) {
  GraphInput g = random_graph(6, 3, 3, 9);
  g.nodes[3].depth = 1;
  g.nodes[4].depth = 2;
  g.nodes[5].depth = 1;
  const auto s = retrieval_order()->score(g);
  EXPECT_GT(s.score[0], s.score[1]);
  EXPECT_GT(s.score[1], s.score[2]);
  EXPECT_GT(s.score[2], s.score[3]);
  EXPECT_GT(s.score[3], s.score[4]);  // hop 1 before hop 2
  for (const auto& scorer : {retrieval_order(), personalized_pagerank()}) {
    EXPECT_TRUE(scorer->score(GraphInput{}).score.empty());
    GraphInput bad = g;
    bad.edges.push_back({0, 99, "cites"});
    EXPECT_THROW(scorer->score(bad), Error);
    bad = g;
    bad.nodes[1].embedding = {1.0f, NAN};
    EXPECT_THROW(scorer->score(bad), Error);
    bad = g;
    bad.edges[0].weight = NAN;
    EXPECT_THROW(scorer->score(bad), Error);
  }
  GraphInput no_seeds = g;
  for (auto& n : no_seeds.nodes) n.seed = false;
  EXPECT_THROW(personalized_pagerank()->score(no_seeds), Error);
  EXPECT_THROW(personalized_pagerank({.damping = 1.0}), Error);
}

std::size_t words(std::string_view s) {  // a stand-in tokenizer: one token per space-separated word
  std::size_t n = 0;
  bool in = false;
  for (char c : s) {
    const bool space = c == ' ' || c == '\n';
    n += !space && !in;
    in = !space;
  }
  return n;
}

TEST(Context, OrdersDropsRepeatsAndKeepsTheBudget) {
  std::vector<Candidate> c = {{"low score text about rivers", "chunk", "", 0.1},
                              {"the best answer about mountains and valleys", "document", "geo", 0.9},
                              {"The best answer about mountains and valleys!", "chunk", "", 0.8},  // a repeat
                              {"a middle answer about lakes", "fact", "", 0.5}};
  ContextParams p;
  p.count_tokens = words;
  p.max_docs = 2;
  p.max_tokens = 1000;
  const Context ctx = build_context(c, p);
  ASSERT_EQ(ctx.used, (std::vector<std::size_t>{1, 3}));
  EXPECT_EQ(ctx.dropped_duplicates, 1u);
  EXPECT_EQ(ctx.text.rfind("[Context 1] (score=0.900, type=document, tags=geo)\nthe best answer", 0), 0u);
  EXPECT_NE(ctx.text.find("[Context 2] (score=0.500, type=fact"), std::string::npos);
  EXPECT_EQ(ctx.tokens, words(ctx.text));
  for (std::size_t budget : {8u, 12u, 20u, 30u}) {
    p.max_tokens = budget;
    p.max_docs = 8;
    const Context small = build_context(c, p);
    EXPECT_LE(small.tokens, budget);
  }
  p.count_tokens = nullptr;
  EXPECT_THROW(build_context(c, p), Error);
  p.count_tokens = words;
  c.push_back({"bad \xFF", "chunk", "", 1});
  EXPECT_THROW(build_context(c, p), Error);
}

TEST(Context, TruncationNeverSplitsACharacter) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "é€😀";  // 2-, 3- and 4-byte characters, no spaces
  ContextParams p;
  p.count_tokens = [](std::string_view s) { return s.size() / 5; };  // ~ bytes per token
  for (std::size_t budget = 20; budget < 200; budget += 7) {
    p.max_tokens = budget;
    const Context ctx = build_context({{text, "chunk", "", 1.0}}, p);
    ASSERT_EQ(ctx.used.size(), 1u);
    EXPECT_EQ(ctx.truncated, 1u);
    EXPECT_LE(ctx.tokens, budget);
    EXPECT_EQ(common::first_invalid_utf8(ctx.text), std::nullopt) << budget;
  }
}

}  // namespace
}  // namespace ruvllm::attention
