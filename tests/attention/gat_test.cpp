// Graph attention: gradients against finite differences, learning on a generated task whose answer
// is known, determinism, the model file, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "ruvllm/attention.h"

namespace ruvllm::attention {
namespace {

const std::string kTmp = RUVLLM_TEST_TMP;

std::vector<float> random_vector(std::mt19937_64& rng, std::size_t dim) {
  std::normal_distribution<float> g;
  std::vector<float> v(dim);
  for (float& x : v) x = g(rng);
  return v;
}

// A retrieval-shaped subgraph: `seeds` ranked seeds, the rest neighbours at depth 1–2, random edges
// of several relations (cycles and self-loops included), some nodes without vectors.
GraphInput random_subgraph(std::mt19937_64& rng, std::size_t n, std::size_t seeds, std::size_t dim) {
  GraphInput g;
  g.query = random_vector(rng, dim);
  g.nodes.resize(n);
  std::uniform_real_distribution<double> u(0, 1);
  for (std::size_t i = 0; i < n; ++i) {
    GraphNode& node = g.nodes[i];
    node.seed = i < seeds;
    node.retrieval_rank = i < seeds + 3 ? static_cast<int>(i) : -1;
    node.lexical_rank = rng() % 3 == 0 ? -1 : static_cast<int>(rng() % 40);
    node.dense_rank = rng() % 3 == 0 ? -1 : static_cast<int>(rng() % 40);
    node.retrieval_score = node.retrieval_rank >= 0 ? 1.0 / (1 + node.retrieval_rank) : 0;
    node.depth = node.seed ? 0 : 1 + static_cast<int>(rng() % 2);
    node.type = static_cast<int>(rng() % 3);
    node.age_days = 400 * u(rng);
    node.confidence = u(rng);
    if (rng() % 5 != 0) node.embedding = random_vector(rng, dim);
  }
  const char* rels[] = {"follows", "mentions", "same_topic", "part_of", "custom"};
  for (std::size_t e = 0; e < 3 * n; ++e) {
    g.edges.push_back({rng() % n, rng() % n, rels[rng() % 5], 0.1 + u(rng), u(rng), 30 * u(rng)});
  }
  g.edges.push_back({1, 1, "mentions", 1, 1, 0});  // a self-loop
  return g;
}

TEST(GraphAttention, AnalyticGradientMatchesFiniteDifferences) {
  std::mt19937_64 rng(7);
  const std::size_t dim = 6;
  std::vector<Example> examples;
  for (int i = 0; i < 3; ++i) {
    Example ex{random_subgraph(rng, 14, 4, dim), {}};
    ex.relevant = {static_cast<std::size_t>(rng() % 14), static_cast<std::size_t>(rng() % 14)};
    examples.push_back(std::move(ex));
  }
  AttentionModel model(dim, {.hidden = 5, .heads = 3, .query_interaction = true}, 11);
  // Away from the initial point, so that β and ω (zero at first) carry gradient to every part.
  std::normal_distribution<double> g(0, 0.3);
  for (double& t : model.parameters()) t += g(rng);
  std::vector<double> analytic;
  const double l2 = 0.05;
  model.loss(examples, &analytic, l2);
  double worst = 0;
  std::size_t kinks = 0;
  for (std::size_t i = 0; i < model.parameters().size(); ++i) {
    const double h = 1e-5, keep = model.parameters()[i];
    model.parameters()[i] = keep + h;
    const double up = model.loss(examples, nullptr, l2);
    model.parameters()[i] = keep - h;
    const double down = model.loss(examples, nullptr, l2);
    model.parameters()[i] = keep;
    const double numeric = (up - down) / (2 * h);
    const double err = std::abs(numeric - analytic[i]) / std::max(1.0, std::abs(numeric));
    // LeakyReLU has a kink at 0: a central difference straddling it may disagree; allow a few.
    if (err > 1e-5) ++kinks;
    worst = std::max(worst, err);
  }
  EXPECT_LE(kinks, 2u) << "worst relative error " << worst;
  EXPECT_GT(model.parameter_count(), 100u);
}

// The known answer: the gold node is the neighbour that the top seed `mentions`. Its own features
// match the distractors' (depth 1, never retrieved): some are mentioned by low-ranked seeds, some
// are `same_topic` neighbours of the top seed. Only attention over the edges can tell them apart.
Example bridge_task(std::mt19937_64& rng) {
  const std::size_t seeds = 8, n = 24;
  Example ex;
  GraphInput& g = ex.input;
  g.nodes.resize(n);
  std::vector<std::size_t> order(seeds);
  for (std::size_t i = 0; i < seeds; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  for (std::size_t i = 0; i < n; ++i) {
    g.nodes[i].depth = i < seeds ? 0 : 1;
    g.nodes[i].type = 0;
  }
  for (std::size_t r = 0; r < seeds; ++r) {
    GraphNode& s = g.nodes[order[r]];
    s.seed = true;
    s.retrieval_rank = s.lexical_rank = static_cast<int>(r);
    s.retrieval_score = 1.0 / (1.0 + r);
  }
  std::vector<std::size_t> others;
  for (std::size_t i = seeds; i < n; ++i) others.push_back(i);
  std::shuffle(others.begin(), others.end(), rng);
  const std::size_t top = order[0], gold = others[0];
  g.edges.push_back({top, gold, "mentions", 1, 1, 0});
  for (std::size_t k = 1; k < others.size(); ++k) {
    if (k % 2) {
      g.edges.push_back({top, others[k], "same_topic", 1, 1, 0});
    } else {
      g.edges.push_back({order[4 + k % 4], others[k], "mentions", 1, 1, 0});
    }
  }
  for (std::size_t r = 0; r + 1 < seeds; ++r) g.edges.push_back({order[r], order[r + 1], "follows", 1, 1, 0});
  ex.relevant = {gold, top};
  return ex;
}

double recall_at(const Scorer& scorer, const std::vector<Example>& set, std::size_t k) {
  double total = 0;
  for (const Example& ex : set) {
    const auto s = scorer.score(ex.input).score;
    std::vector<std::size_t> order(s.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return s[a] > s[b]; });
    std::size_t hit = 0;
    for (std::size_t i = 0; i < k; ++i) hit += std::count(ex.relevant.begin(), ex.relevant.end(), order[i]);
    total += static_cast<double>(hit) / static_cast<double>(ex.relevant.size());
  }
  return total / static_cast<double>(set.size());
}

TEST(GraphAttention, TrainingLearnsTheBridgeAndGeneralises) {
  std::mt19937_64 rng(3);
  std::vector<Example> train, held_out;
  for (int i = 0; i < 60; ++i) train.push_back(bridge_task(rng));
  for (int i = 0; i < 40; ++i) held_out.push_back(bridge_task(rng));
  auto model = std::make_shared<AttentionModel>(0);
  const auto untrained = graph_attention(std::make_shared<AttentionModel>(model->dimension()));
  // Untrained it ranks like retrieval order: the seeds fill the top, the gold neighbour is below them.
  EXPECT_NEAR(recall_at(*untrained, held_out, 2), recall_at(*retrieval_order(), held_out, 2), 1e-12);
  EXPECT_NEAR(recall_at(*untrained, held_out, 2), 0.5, 1e-12);
  std::vector<double> losses;
  const auto report = model->train(train, {.epochs = 200, .progress = [&](int, double l) { losses.push_back(l); }});
  EXPECT_EQ(report.examples, 60u);
  EXPECT_EQ(losses.size(), 200u);
  EXPECT_LT(report.final_loss, 0.5 * report.initial_loss);
  const auto trained = graph_attention(model);
  EXPECT_GE(recall_at(*trained, held_out, 2), 0.95);
  // What PageRank does with the same graphs, for scale: it cannot read the relation.
  EXPECT_LT(recall_at(*personalized_pagerank(), held_out, 2), 0.9);
}

TEST(GraphAttention, SameSeedSameModelAndTheFileRoundTrips) {
  std::mt19937_64 rng(5);
  std::vector<Example> train;
  for (int i = 0; i < 10; ++i) train.push_back(bridge_task(rng));
  AttentionModel a(0, {}, 9), b(0, {}, 9), c(0, {}, 10);
  a.train(train, {.epochs = 20});
  b.train(train, {.epochs = 20});
  c.train(train, {.epochs = 20});
  EXPECT_EQ(a.parameters(), b.parameters());
  EXPECT_NE(a.parameters(), c.parameters());
  std::filesystem::create_directories(kTmp);
  const std::string path = kTmp + "/attention-model.json";
  a.save(path);
  const auto loaded = std::make_shared<AttentionModel>(AttentionModel::load(path));
  EXPECT_EQ(loaded->parameters(), a.parameters());
  const auto x = graph_attention(std::make_shared<AttentionModel>(a))->score(train[0].input);
  const auto y = graph_attention(loaded)->score(train[0].input);
  EXPECT_EQ(x.score, y.score);
  // A damaged file is a clear error, never a model.
  for (const std::string& text : {std::string("{"), std::string("{\"format\":\"other\"}"), std::string("[1,2,3]"),
                                  std::string("{\"format\":\"ruvllm-attention\",\"version\":2}"),
                                  std::string(80000, '[') + std::string(80000, ']')}) {
    std::ofstream(path, std::ios::trunc) << text;
    EXPECT_THROW(AttentionModel::load(path), Error) << text;
  }
  EXPECT_THROW(AttentionModel::load(kTmp + "/no-such-model.json"), Error);
}

TEST(GraphAttention, BadInputIsAClearErrorAndOddGraphsWork) {
  std::mt19937_64 rng(1);
  const auto model = std::make_shared<AttentionModel>(4);
  const auto gat = graph_attention(model);
  EXPECT_TRUE(gat->score(GraphInput{}).score.empty());
  GraphInput g = random_subgraph(rng, 10, 3, 4);
  const auto s = gat->score(g);
  ASSERT_EQ(s.score.size(), 10u);
  for (double x : s.score) EXPECT_TRUE(std::isfinite(x));
  EXPECT_GT(s.entropy, 0);
  // Self-loops add nothing (every node attends to itself once).
  GraphInput looped = g;
  looped.edges.push_back({2, 2, "follows", 1, 1, 0});
  EXPECT_EQ(gat->score(looped).score, s.score);
  // No vectors anywhere and no query vector: still scores, from the other features.
  GraphInput bare = g;
  bare.query.clear();
  for (auto& n : bare.nodes) n.embedding.clear();
  EXPECT_EQ(gat->score(bare).score.size(), 10u);
  auto expect_error = [&](GraphInput bad) { EXPECT_THROW(gat->score(bad), Error); };
  GraphInput bad = g;
  bad.nodes[3].embedding = {1, 2, NAN, 4};
  expect_error(bad);
  bad = g;
  bad.nodes[3].embedding = {1, 2, 3};  // wrong dimension
  expect_error(bad);
  bad = g;
  bad.query = {1, 2};
  expect_error(bad);
  bad = g;
  bad.nodes[0].retrieval_score = NAN;
  expect_error(bad);
  bad = g;
  bad.edges.push_back({0, 10, "follows", 1, 1, 0});
  expect_error(bad);
  bad = g;
  bad.edges[0].confidence = -1;
  expect_error(bad);
  // Training: a relevant index outside the graph, no usable example, bad parameters.
  AttentionModel m(4);
  EXPECT_THROW(m.train({{g, {10}}}), Error);
  EXPECT_THROW(m.train({{g, {}}}), Error);
  EXPECT_THROW(m.train({{g, {1}}}, {.learning_rate = -1}), Error);
  EXPECT_THROW(AttentionModel(4, {.hidden = 0}), Error);
  // An absurd edge weight stays finite (the prior is bounded in log space).
  GraphInput heavy = g;
  heavy.edges.push_back({0, 1, "mentions", 1e200, 1e200, 0});
  for (double x : gat->score(heavy).score) EXPECT_TRUE(std::isfinite(x));
  // A diverging run is an error and leaves the model as it was.
  const auto kept = m.parameters();
  EXPECT_THROW(m.train({{g, {1}}}, {.epochs = 5, .learning_rate = 1e200}), Error);
  EXPECT_EQ(m.parameters(), kept);
}

TEST(GraphAttention, ModelFileNumbersMustBeWhole) {
  std::filesystem::create_directories(kTmp);
  const std::string path = kTmp + "/attention-numbers.json";
  AttentionModel(3).save(path);
  const std::string good = [&] {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  EXPECT_EQ(AttentionModel::load(path).dimension(), 3u);
  for (const auto& [from, to] :
       std::vector<std::pair<std::string, std::string>>{{"\"hidden\":16", "\"hidden\":16.9"},
                                                        {"\"dimension\":3", "\"dimension\":1e20"},
                                                        {"\"heads\":4", "\"heads\":-4"},
                                                        {"\"version\":1", "\"version\":\"1\""}}) {
    std::string text = good;
    const auto at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    std::ofstream(path, std::ios::trunc) << text;
    EXPECT_THROW(AttentionModel::load(path), Error) << to;
  }
}

}  // namespace
}  // namespace ruvllm::attention
