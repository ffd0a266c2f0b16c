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

// `router evidence` over a real memory and the tiny LFM2's tokenizer, then train and eval with it.
TEST(RouterCli, EvidenceRowsTrainAndEvaluateTheContextHeads) {
  REQUIRE_WORD_VECTORS();
  const std::string dir = test::tmp_dir() + "/router-cli-evidence";
  fs::remove_all(dir);
  fs::create_directories(dir + "/data");
  {
    std::ofstream corpus(dir + "/corpus.jsonl");
    for (int i = 0; i < 8; ++i) {
      corpus << nlohmann::json{{"id", "weather-" + std::to_string(i)},
                               {"title", std::string("Weather ") + kWeather[i]},
                               {"text", std::string("The ") + kWeather[i] + " and the " + kWeather[i + 8] +
                                            " shape the weather forecast of a cold winter or a warm summer."}}
                    .dump()
             << "\n";
    }
    std::ofstream(dir + "/ruvllm.toml") << "[[model]]\nname = \"tiny\"\npath = \"" << test::tiny_lfm2()
                                        << "\"\n\n[memory]\ndata_dir = \"data\"\n";
    std::ofstream questions(dir + "/questions.jsonl");
    for (int i = 0; i < 8; ++i) {
      questions << nlohmann::json{{"id", "q" + std::to_string(i)},
                                  {"question", std::string("what is the ") + kWeather[i] + " forecast?"},
                                  {"supporting", {"weather-" + std::to_string(i)}}}
                       .dump()
                << "\n";
      questions << nlohmann::json{{"id", "m" + std::to_string(i)},
                                  {"question", std::string("prove the ") + kMaths[i] + " theorem"},
                                  {"supporting", {"maths-" + std::to_string(i)}}}  // not in this memory
                       .dump()
                << "\n";
    }
  }
  const auto ingest = test::run("ingest --db " + dir + "/data/memory.sqlite " + dir + "/corpus.jsonl");
  ASSERT_EQ(ingest.status, 0) << ingest.out;
  const auto ev = test::run("router evidence -c " + dir + "/ruvllm.toml --questions " + dir +
                            "/questions.jsonl --out " + dir + "/evidence.jsonl");
  ASSERT_EQ(ev.status, 0) << ev.out;
  std::ifstream in(dir + "/evidence.jsonl");
  std::size_t rows = 0, found = 0;
  for (std::string line; std::getline(in, line); ++rows) {
    const auto j = nlohmann::json::parse(line);
    ASSERT_EQ(j["settings"].size(), 16u);  // 4 strategies x 4 default bins
    double best = 0;
    for (const auto& s : j["settings"]) {
      best = std::max(best, s["quality"].get<double>());
      if (s["retrieval"] == "none") {
        EXPECT_EQ(s["quality"], 0);
      }
    }
    if (j["id"].get<std::string>()[0] == 'm') {
      EXPECT_EQ(best, 0) << line;  // evidence not in memory
    }
    found += best > 0;
  }
  EXPECT_EQ(rows, 16u);
  EXPECT_GE(found, 6u) << "weather questions whose own paragraph is in some context";

  const std::string data = generated_set("router-cli-evidence-set"), model = dir + "/router.json";
  const auto train = test::run("router train --data " + data + " --evidence " + dir + "/evidence.jsonl --out " + model +
                               " --epochs 12 --hidden 16 --rank-w 8 --rank-u 4");
  ASSERT_EQ(train.status, 0) << train.out;
  EXPECT_NE(train.out.find("trained on 316 outcomes"), std::string::npos) << train.out;
  EXPECT_NE(train.out.find("context yes, retrieval yes"), std::string::npos) << train.out;
  const auto eval = test::run("router eval --data " + data + " --model " + model + " --no-baselines --evidence " + dir +
                              "/evidence.jsonl --out " + dir + "/report");
  ASSERT_EQ(eval.status, 0) << eval.out;
  const auto report = nlohmann::json::parse(test::read_file(dir + "/report/router-router-cli-evidence-set.json"));
  ASSERT_EQ(report["evidence"].size(), 5u) << report.dump();
  // The fixed policies' rows, recomputed from the file: dense at 1,024 tokens (naive) and hybrid +
  // graph at the largest bin (the untrained default; also 1,024 here).
  double naive = 0, graph = 0;
  {
    std::ifstream again(dir + "/evidence.jsonl");
    for (std::string line; std::getline(again, line);) {
      const auto row = nlohmann::json::parse(line);  // alive for the loop below
      for (const auto& s : row["settings"]) {
        if (s["context_tokens"] != 1024) continue;
        if (s["retrieval"] == "dense") naive += s["quality"].get<double>() / 16;
        if (s["retrieval"] == "hybrid_graph") graph += s["quality"].get<double>() / 16;
      }
    }
  }
  EXPECT_GT(graph, 0);
  for (const auto& p : report["evidence"]) {
    EXPECT_EQ(p["rows"], 16);
    const std::string name = p["policy"];
    if (name.starts_with("naive")) {
      EXPECT_NEAR(p["recall"].get<double>(), naive, 1e-9);
    }
    if (name.starts_with("untrained")) {
      EXPECT_NEAR(p["recall"].get<double>(), graph, 1e-9);
    }
  }
  // Calibration: the smallest coverage on the grid whose contexts hold the naive flow's evidence.
  const auto cal =
      test::run("router calibrate --data " + data + " --model " + model + " --evidence " + dir + "/evidence.jsonl");
  ASSERT_EQ(cal.status, 0) << cal.out;
  const auto at = cal.out.find("evidence coverage ");
  ASSERT_NE(at, std::string::npos) << cal.out;
  const double coverage = std::stod(cal.out.substr(at + 18));
  EXPECT_EQ(Router::load(model).evidence_coverage, coverage);
  {
    Router r = Router::load(model);
    auto rows = load_outcomes(dir + "/evidence.jsonl", r.ladder());
    const auto embedder = embed::open_word_vectors();
    for (auto& o : rows) {
      const auto e = embedder->embed(o.signals.query.text);
      o.signals.query.embedding = e.vector;
      o.signals.query.tokens = e.tokens;
      o.signals.query.known_tokens = e.known;
    }
    // Recomputed by hand: the chosen coverage reaches the naive flow's evidence, the step below does not.
    auto recall = [&](double c) {
      r.evidence_coverage = c;
      double mine = 0, naive = 0;
      for (const auto& o : rows) {
        const auto d = r.decide(o.signals);
        for (const auto& t : o.trials) {
          if (t.retrieval == static_cast<int>(d.retrieval) &&
              (d.retrieval == Retrieval::none ? t.context_bin == 0 : t.context_bin == static_cast<int>(d.context_bin)))
            mine += t.quality;
          if (t.retrieval == 1 && r.ladder().context_bins[t.context_bin] == 1024) naive += t.quality;
        }
      }
      return std::pair(mine, naive);
    };
    if (coverage < 0.95) {
      const auto [mine, naive] = recall(coverage);
      EXPECT_GE(mine, naive - 1e-9);
    }
    if (coverage > 0.3 + 1e-9) {
      const auto [mine, naive] = recall(std::round(coverage * 20 - 1) / 20);
      EXPECT_LT(mine, naive);
    }
  }
  const auto bad = test::run("router evidence -c " + dir + "/ruvllm.toml --questions " + dir + "/corpus.jsonl --out " +
                             dir + "/bad.jsonl");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.out.find("corpus.jsonl:1"), std::string::npos) << bad.out;
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
