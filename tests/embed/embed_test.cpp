// The embedders against independent references: GloVe rows read from ../shared/data's fvecs, SIF
// weights recomputed here, and inner products before and after the adapter.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "fixtures.h"
#include "ruvllm/embed.h"
#include "ruvllm/llm.h"

namespace ruvllm::embed {
namespace {

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

std::vector<float> normalised(std::vector<double> v) {
  double n = 0;
  for (double x : v) n += x * x;
  n = std::sqrt(n);
  std::vector<float> out;
  for (double x : v) out.push_back(static_cast<float>(x / n));
  return out;
}

// The word vectors table, or a skip when set-up has not converted it on this machine.
std::unique_ptr<Embedder> glove() {
  if (!std::filesystem::exists(default_word_vectors())) return nullptr;
  return open_word_vectors();
}
#define REQUIRE_GLOVE(var) \
  auto var = glove();      \
  if (!var)                \
    GTEST_SKIP() << "skipped: no word-vector table at " << default_word_vectors() << " (scripts/setup.sh converts it)";

// GloVe-6B's top-50k words and vectors from ../shared/data, in frequency order.
struct SharedGlove {
  std::vector<std::string> words;
  std::vector<std::vector<float>> vectors;
  int row(const std::string& w) const {
    for (std::size_t i = 0; i < words.size(); ++i) {
      if (words[i] == w) return static_cast<int>(i);
    }
    return -1;
  }
};

SharedGlove read_shared(const std::string& fvecs, const std::string& vocab) {
  SharedGlove g;
  std::ifstream v(vocab);
  for (std::string w; std::getline(v, w);) g.words.push_back(w);
  std::ifstream f(fvecs, std::ios::binary);
  int32_t dim = 0;
  while (f.read(reinterpret_cast<char*>(&dim), 4)) {
    std::vector<float> row(static_cast<std::size_t>(dim));
    f.read(reinterpret_cast<char*>(row.data()), dim * 4);
    g.vectors.push_back(std::move(row));
  }
  return g;
}

TEST(WordTokens, SplitsLowercasesAndKeepsInnerJoiners) {
  EXPECT_EQ(word_tokens("The Cross-Country ski, O'Neill's 2nd—try!"),
            (std::vector<std::string>{"the", "cross-country", "ski", "o'neill's", "2nd", "try"}));
  EXPECT_EQ(word_tokens("ÉCOLE naïve"), (std::vector<std::string>{"école", "naïve"}));
  EXPECT_EQ(word_tokens("  -leading trailing- 'quoted' "), (std::vector<std::string>{"leading", "trailing", "quoted"}));
  EXPECT_TRUE(word_tokens("").empty());
  EXPECT_THROW(word_tokens("bad \xC3("), Error);
}

TEST(WordVectors, SingleWordIsTheNormalisedGloveRow) {
  REQUIRE_GLOVE(e);
  RUVLLM_REQUIRE_SHARED(fvecs, "embeddings/glove-6B-100d-top50k.fvecs");
  RUVLLM_REQUIRE_SHARED(vocab, "embeddings/glove-6B-100d-top50k.vocab.txt");
  const SharedGlove g = read_shared(fvecs, vocab);
  ASSERT_EQ(e->dimension(), g.vectors.at(0).size());
  for (const std::string w : {"king", "queen", "paris", "the", "computer"}) {
    const int r = g.row(w);
    ASSERT_GE(r, 0) << w;
    const Embedding got = e->embed(w);
    EXPECT_EQ(got.known, 1u);
    const std::vector<double> ref(g.vectors[r].begin(), g.vectors[r].end());
    EXPECT_GT(dot(got.vector, normalised(ref)), 0.99999) << w;
  }
}

TEST(WordVectors, EveryWordOfTheSharedTop50kFindsItsOwnRow) {
  REQUIRE_GLOVE(e);
  RUVLLM_REQUIRE_SHARED(fvecs, "embeddings/glove-6B-100d-top50k.fvecs");
  RUVLLM_REQUIRE_SHARED(vocab, "embeddings/glove-6B-100d-top50k.vocab.txt");
  const SharedGlove g = read_shared(fvecs, vocab);
  ASSERT_EQ(g.words.size(), g.vectors.size());
  std::size_t compared = 0;
  for (std::size_t r = 0; r < g.words.size(); ++r) {
    const std::string& w = g.words[r];
    if (word_tokens(w) != std::vector<std::string>{w}) continue;  // punctuation, clitics: not one token
    const Embedding got = e->embed(w);
    ASSERT_EQ(got.known, 1u) << w;
    const std::vector<double> ref(g.vectors[r].begin(), g.vectors[r].end());
    ASSERT_GT(dot(got.vector, normalised(ref)), 0.99999) << w << " (row " << r << ")";
    ++compared;
  }
  EXPECT_GT(compared, 45000u);
  // Near misses of known words are not found.
  for (const char* w : {"kingqx", "queenzq", "computerzq", "zzqzzqzz"}) EXPECT_EQ(e->embed(w).known, 0u) << w;
}

TEST(WordVectors, SentenceIsTheSifWeightedMean) {
  REQUIRE_GLOVE(e);
  RUVLLM_REQUIRE_SHARED(fvecs, "embeddings/glove-6B-100d-top50k.fvecs");
  RUVLLM_REQUIRE_SHARED(vocab, "embeddings/glove-6B-100d-top50k.vocab.txt");
  const SharedGlove g = read_shared(fvecs, vocab);
  const std::vector<std::string> words = {"the", "king", "of", "france", "was", "crowned", "in", "reims"};
  std::string text;
  for (const auto& w : words) text += w + " ";
  // SIF with a = 1e-3 and Zipf frequencies over the full 341,479-word table (rank order is GloVe's,
  // which the shared top-50k file has too).
  const double harmonic = std::log(341479.0) + 0.5772156649;
  std::vector<double> ref(g.vectors[0].size(), 0.0);
  for (const auto& w : words) {
    const int r = g.row(w);
    ASSERT_GE(r, 0) << w;
    const double weight = 1e-3 / (1e-3 + 1.0 / ((r + 1.0) * harmonic));
    for (std::size_t d = 0; d < ref.size(); ++d) ref[d] += weight * g.vectors[r][d];
  }
  const Embedding got = e->embed(text);
  EXPECT_EQ(got.tokens, words.size());
  EXPECT_EQ(got.known, words.size());
  EXPECT_GT(dot(got.vector, normalised(ref)), 0.99999);
  // The weighting matters: the unweighted mean points elsewhere.
  std::vector<double> plain(ref.size(), 0.0);
  for (const auto& w : words) {
    for (std::size_t d = 0; d < ref.size(); ++d) plain[d] += g.vectors[g.row(w)][d];
  }
  EXPECT_LT(dot(got.vector, normalised(plain)), 0.999);
}

TEST(WordVectors, UnknownWordsGiveNoVectorAndMeaningIsKept) {
  REQUIRE_GLOVE(e);
  const Embedding none = e->embed("qzxv wvvqj");
  EXPECT_TRUE(none.vector.empty());
  EXPECT_EQ(none.tokens, 2u);
  EXPECT_EQ(none.known, 0u);
  EXPECT_TRUE(e->embed("").vector.empty());
  const Embedding half = e->embed("qzxv king");
  EXPECT_EQ(half.known, 1u);
  EXPECT_GT(dot(half.vector, e->embed("king").vector), 0.99999);
  // Contractions split as GloVe's tokenizer did.
  EXPECT_EQ(e->embed("don't").known, 2u);
  const auto king = e->embed("king").vector, queen = e->embed("queen").vector, carrot = e->embed("carrot").vector;
  EXPECT_GT(dot(king, queen), dot(king, carrot));
  EXPECT_THROW(e->embed("caf\xC3"), Error);
}

TEST(WordVectors, RejectsForeignAndTruncatedTables) {
  const std::string bad = test::write_file("bad.words", "not a table at all, just text");
  EXPECT_THROW(open_word_vectors({.path = bad}), Error);
  EXPECT_THROW(open_word_vectors({.path = test::tmp_dir() + "/missing.words"}), Error);
  if (std::filesystem::exists(default_word_vectors())) {
    std::ifstream in(default_word_vectors(), std::ios::binary);
    std::string head(4096, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    const std::string cut = test::write_file("cut.words", head);
    EXPECT_THROW(open_word_vectors({.path = cut}), Error);
  }
}

// A fixed-table embedder for the adapter tests: random unit vectors per word.
class RandomEmbedder final : public Embedder {
 public:
  explicit RandomEmbedder(std::size_t dim) : dim_(dim) {}
  std::size_t dimension() const override { return dim_; }
  std::string name() const override { return "random"; }
  Embedding embed(std::string_view text) const override {
    std::mt19937_64 rng(std::hash<std::string_view>{}(text));
    std::normal_distribution<double> n;
    std::vector<double> v(dim_);
    for (double& x : v) x = n(rng);
    return {normalised(v), 1, 1};
  }

 private:
  std::size_t dim_;
};

TEST(Adapter, ProjectsToTheDimensionAndKeepsInnerProducts) {
  auto inner = std::make_shared<RandomEmbedder>(100);
  auto adapted = adapt(std::make_unique<RandomEmbedder>(100), {.output_dim = 512, .layer_norm = false});
  EXPECT_EQ(adapted->dimension(), 512u);
  // Correlated pairs: mix two random vectors so that true cosines spread over [-1, 1].
  double worst = 0;
  for (int i = 0; i < 50; ++i) {
    const auto a = inner->embed("a" + std::to_string(i)).vector, b = inner->embed("b" + std::to_string(i)).vector;
    const auto pa = adapted->embed("a" + std::to_string(i)).vector, pb = adapted->embed("b" + std::to_string(i)).vector;
    EXPECT_NEAR(dot(pa, pa), 1.0, 1e-5);
    worst = std::max(worst, std::abs(dot(a, b) - dot(pa, pb)));
  }
  // JL: the error of a 512-d Gaussian projection is ~ 1/sqrt(512) ≈ 0.044 per pair.
  EXPECT_LT(worst, 0.25);
  auto ln = adapt(std::make_unique<RandomEmbedder>(100), {.output_dim = 64});
  const auto v = ln->embed("x").vector;
  double mean = 0;
  for (float x : v) mean += x;
  EXPECT_NEAR(mean / 64, 0.0, 1e-6);  // LayerNorm centred it
  EXPECT_THROW(adapt(std::make_unique<RandomEmbedder>(10), {.output_dim = 0}), Error);
}

TEST(ModelEmbedder, MatchesTheEngine) {
  llm::EngineParams params;
  params.ladder = {{"tiny", test::tiny_lfm2()}};
  params.threads = 2;
  auto engine = std::make_shared<llm::Engine>(params);
  auto e = open_model_embedder(engine, "tiny");
  const auto info = engine->info("tiny");
  EXPECT_EQ(e->dimension(), static_cast<std::size_t>(info.n_embd));
  const Embedding got = e->embed("hello world");
  const auto ref = engine->embed("tiny", "hello world");
  ASSERT_EQ(got.vector.size(), ref.size());
  EXPECT_GT(dot(got.vector, ref), 0.99999);
  EXPECT_TRUE(e->embed("").vector.empty());
  EXPECT_THROW(open_model_embedder(engine, "nope"), Error);
}

}  // namespace
}  // namespace ruvllm::embed
