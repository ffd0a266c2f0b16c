// `ruvllm router train|eval|calibrate|inspect` as a user runs them, on a generated outcome set in
// the schema of ../shared/data/router (models.json + train.jsonl + test.jsonl) whose queries are
// English words, so the GloVe table gives them vectors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "fixtures.h"
#include "ruvllm/embed.h"
#include "ruvllm/router.h"

namespace ruvllm::router {
namespace {
namespace fs = std::filesystem;

// Weather questions: the small model answers them. Mathematics: only the large one does.
const char* kWeather[] = {"rain", "cloud",  "sunny",  "wind",    "snow",  "storm",   "forecast", "cold",
                          "warm", "summer", "winter", "weather", "humid", "thunder", "breeze",   "frost"};
const char* kMaths[] = {"integral",  "theorem",  "proof",      "equation", "derivative", "matrix",
                        "algebra",   "calculus", "polynomial", "geometry", "eigenvalue", "vector",
                        "logarithm", "function", "prime",      "topology"};

nlohmann::json row(std::mt19937_64& rng, const std::string& id) {
  const bool maths = rng() % 2;
  const char** words = maths ? kMaths : kWeather;
  std::string query = rng() % 2 ? "what is the" : "explain the";
  const std::size_t n = 3 + rng() % 5;
  for (std::size_t i = 0; i < n; ++i) query += std::string(" ") + words[rng() % 16];
  query += "?";
  const double small = maths ? 0 : 1;
  return {
      {"id", id},
      {"query", query},
      {"task", maths ? "maths" : "weather"},
      {"outcomes",
       {{"small-model", {{"quality", small}, {"cost", 0.001}}}, {"large-model", {{"quality", 1.0}, {"cost", 0.01}}}}}};
}

std::string generated_set(const std::string& name) {
  const std::string dir = test::tmp_dir() + "/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  // The large model listed first: the ladder must order by the rows' mean cost.
  std::ofstream(dir + "/models.json") << R"([{"name": "large-model", "cost_per_call": null}, {"name": "small-model"}])";
  std::mt19937_64 rng(17);
  for (const auto& [split, rows] : {std::pair<std::string, int>{"train", 300}, {"test", 100}}) {
    std::ofstream out(dir + "/" + split + ".jsonl");
    for (int i = 0; i < rows; ++i) out << row(rng, split + "-" + std::to_string(i)).dump() << "\n";
  }
  return dir;
}

#define REQUIRE_WORD_VECTORS()                                                                \
  if (!fs::exists(embed::default_word_vectors())) {                                           \
    GTEST_SKIP() << "skipped: no word-vector table at " << embed::default_word_vectors()      \
                 << " (scripts/setup.sh converts it); the router CLI embeds queries with it"; \
  }

TEST(RouterCli, TrainEvalCalibrateAndInspectAGeneratedOutcomeSet) {
  REQUIRE_WORD_VECTORS();
  const std::string data = generated_set("router-cli-set"), model = test::tmp_dir() + "/router-cli.json",
                    out = test::tmp_dir() + "/router-cli-report";
  fs::remove(model);
  fs::remove_all(out);

  const auto train = test::run("router train --data " + data + " --out " + model +
                               " --epochs 24 --hidden 16 --rank-w 8 --rank-u 4 --batch 32 --learning-rate 0.01");
  ASSERT_EQ(train.status, 0) << train.out;
  EXPECT_NE(train.out.find("trained on 300 outcomes"), std::string::npos) << train.out;
  ASSERT_TRUE(fs::exists(model)) << train.out;
  const Router trained = Router::load(model);
  EXPECT_TRUE(trained.quantized());  // int8 unless --float
  EXPECT_EQ(trained.ladder().models, (std::vector<std::string>{"small-model", "large-model"}));
  EXPECT_EQ(trained.shape().hidden, 16u);

  const auto eval = test::run("router eval --data " + data + " --model " + model + " --out " + out);
  ASSERT_EQ(eval.status, 0) << eval.out;
  const std::string report = out + "/router-router-cli-set.json";
  ASSERT_TRUE(fs::exists(report)) << eval.out;
  EXPECT_TRUE(fs::exists(out + "/router-router-cli-set.md"));
  const auto json = nlohmann::json::parse(test::read_file(report));
  ASSERT_TRUE(json.contains("routers")) << json.dump();
  std::map<std::string, nlohmann::json> routers;
  for (const auto& r : json["routers"]) routers[r["name"].get<std::string>()] = r;
  for (const char* name :
       {"fastgrnn", "fastgrnn int8", "logistic regression", "random", "always small-model", "always large-model"}) {
    ASSERT_TRUE(routers.count(name)) << name << " missing: " << json.dump();
    EXPECT_EQ(routers[name]["rows"].get<std::size_t>(), 100u) << name;
  }
  // The weather/mathematics split is plain in the word vectors: the router learns it.
  EXPECT_GT(routers["fastgrnn"]["accuracy"].get<double>(), 0.9) << eval.out;
  EXPECT_GT(routers["fastgrnn int8"]["accuracy"].get<double>(), 0.9) << eval.out;
  EXPECT_GT(routers["fastgrnn"]["apgr"].get<double>(), routers["random"]["apgr"].get<double>() + 0.1) << eval.out;
  EXPECT_EQ(json["weight_bytes_int8"].get<std::size_t>(), trained.weight_bytes());

  const auto calibrate = test::run("router calibrate --data " + data + " --model " + model + " --largest-share 0.3");
  ASSERT_EQ(calibrate.status, 0) << calibrate.out;
  const Router calibrated = Router::load(model);
  EXPECT_NE(calibrated.threshold, trained.threshold);
  EXPECT_EQ(calibrated.parameters(), trained.parameters());
  // 30 % of the training queries (the reference split) now go to the large model.
  {
    const auto embedder = embed::open_word_vectors();
    auto reference = load_outcomes(data + "/train.jsonl", calibrated.ladder());
    std::size_t large = 0;
    for (auto& o : reference) {
      const auto e = embedder->embed(o.signals.query.text);
      o.signals.query.embedding = e.vector;
      o.signals.query.tokens = e.tokens;
      o.signals.query.known_tokens = e.known;
      large += calibrated.decide(o.signals).model == 1;
    }
    const double share = static_cast<double>(large) / static_cast<double>(reference.size());
    EXPECT_GE(share, 0.3 - 1e-12);
    EXPECT_LE(share, 0.3 + 1.0 / static_cast<double>(reference.size()) + 1e-12);
  }

  const auto inspect =
      test::run("router inspect --model " + model + " --query \"what is the integral of this polynomial?\"");
  ASSERT_EQ(inspect.status, 0) << inspect.out;
  EXPECT_NE(inspect.out.find("FastGRNN: hidden 16"), std::string::npos) << inspect.out;
  EXPECT_NE(inspect.out.find("decision: "), std::string::npos) << inspect.out;
  EXPECT_NE(inspect.out.find("embed.pc0="), std::string::npos) << inspect.out;
  const auto bare = test::run("router inspect --model " + model);
  ASSERT_EQ(bare.status, 0) << bare.out;
  EXPECT_EQ(bare.out.find("decision: "), std::string::npos) << bare.out;
}

TEST(RouterCli, BadInvocationsExitNonZeroWithAMessage) {
  REQUIRE_WORD_VECTORS();
  const std::string model = test::tmp_dir() + "/router-cli-bad.json";
  fs::remove(model);
  const auto missing = test::run("router train --data " + test::tmp_dir() + "/router-no-such-set --out " + model);
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.out.find("cannot read"), std::string::npos) << missing.out;
  EXPECT_FALSE(fs::exists(model));
  const auto no_data = test::run("router train --out " + model);
  EXPECT_NE(no_data.status, 0);
  EXPECT_NE(no_data.out.find("--data"), std::string::npos) << no_data.out;
  const auto no_subcommand = test::run("router");
  EXPECT_NE(no_subcommand.status, 0);

  // A malformed row: the file and line.
  const std::string data = generated_set("router-cli-bad-set");
  {
    std::ofstream out(data + "/train.jsonl", std::ios::app);
    out << R"({"query": "what is rain?", "outcomes": {"small-model": {"quality": 2}}})"
        << "\n";
  }
  const auto bad_row = test::run("router train --data " + data + " --out " + model + " --epochs 2");
  EXPECT_NE(bad_row.status, 0);
  EXPECT_NE(bad_row.out.find("train.jsonl:301"), std::string::npos) << bad_row.out;
  const auto bad_shape = test::run("router train --data " + data + " --split test --out " + model + " --steps 3");
  EXPECT_NE(bad_shape.status, 0);
  EXPECT_NE(bad_shape.out.find("steps"), std::string::npos) << bad_shape.out;
  EXPECT_FALSE(fs::exists(model));
  const auto no_model = test::run("router eval --data " + data + " --model " + model);
  EXPECT_NE(no_model.status, 0);
  EXPECT_NE(no_model.out.find("router-cli-bad.json"), std::string::npos) << no_model.out;
}

}  // namespace
}  // namespace ruvllm::router
