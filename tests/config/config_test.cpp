// The configuration file: every key read, checked and overridden; every mistake named by its key.
#include "ruvllm/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "fixtures.h"

namespace ruvllm::config {
namespace {

namespace fs = std::filesystem;

using test::fresh_dir;
using test::write_at;

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~ScopedEnv() { unsetenv(name_); }

 private:
  const char* name_;
};

// ==== configuration =============================================================================

TEST(Config, LoadsTheLadderEnvironmentOverridesAndRelativePaths) {
  const std::string dir = fresh_dir("config-load");
  fs::create_directories(dir + "/conf");
  const std::string file = write_at(dir + "/conf/ruvllm.toml", R"(
[models]
default = "small"
threads = 2

[[model]]
name = "small"
path = "models/../models/tiny.gguf"
size_class = "tiny"
relative_cost = 1

[[model]]
name = "large"
path = "/opt/models/large.gguf"
relative_cost = 3.5

[memory]
data_dir = "data"

[server]
port = 8081
api_keys = ["k1", "k2"]

[router.models]
"r-a" = "small"

[generation]
temperature = 0.25
seed = 7
)");
  const std::string conf = fs::path(dir + "/conf").lexically_normal().string();
  {
    const Settings c = load(file);
    ASSERT_EQ(c.models.size(), 2u);
    EXPECT_EQ(c.models[0].name, "small");
    EXPECT_EQ(c.models[0].path, (fs::path(conf) / "models/tiny.gguf").string());
    EXPECT_EQ(c.models[0].size_class, "tiny");
    EXPECT_DOUBLE_EQ(c.models[0].relative_cost, 1.0);
    EXPECT_EQ(c.models[0].tier, 0);
    EXPECT_EQ(c.models[1].name, "large");
    EXPECT_EQ(c.models[1].path, "/opt/models/large.gguf");  // absolute paths stay
    EXPECT_DOUBLE_EQ(c.models[1].relative_cost, 3.5);
    EXPECT_EQ(c.models[1].tier, 1);
    EXPECT_EQ(c.default_model, "small");
    EXPECT_EQ(c.threads, 2);
    // data_dir is relative to the file's folder, not to the working directory; the memory and the
    // request log default to files inside it.
    EXPECT_EQ(c.data_dir, conf + "/data");
    EXPECT_EQ(c.memory_path, conf + "/data/memory.sqlite");
    EXPECT_EQ(c.request_log, conf + "/data/requests.jsonl");
    EXPECT_EQ(c.server.port, 8081);
    EXPECT_EQ(c.server.api_keys, (std::vector<std::string>{"k1", "k2"}));
    EXPECT_EQ(c.router_models.at("r-a"), "small");
    EXPECT_FLOAT_EQ(c.sampling.temperature, 0.25f);
    ASSERT_TRUE(c.sampling.seed.has_value());
    EXPECT_EQ(*c.sampling.seed, 7u);
    // Keys the file leaves out keep their defaults.
    EXPECT_EQ(c.server.max_queue, Settings{}.server.max_queue);
    EXPECT_EQ(c.max_tokens, Settings{}.max_tokens);
  }
  {
    // The environment wins over the file.
    ScopedEnv port("RUVLLM_SERVER_PORT", "9123");
    ScopedEnv tokens("RUVLLM_GENERATION_MAX_TOKENS", "33");
    ScopedEnv model("RUVLLM_MODELS_DEFAULT", "large");
    ScopedEnv keys("RUVLLM_SERVER_API_KEYS", "a,b");
    const Settings c = load(file);
    EXPECT_EQ(c.server.port, 9123);
    EXPECT_EQ(c.max_tokens, 33);
    EXPECT_EQ(c.default_model, "large");
    EXPECT_EQ(c.server.api_keys, (std::vector<std::string>{"a", "b"}));
  }
  // And is gone when unset.
  EXPECT_EQ(load(file).server.port, 8081);
}

struct BadConfig {
  const char* name;
  std::string toml;
  std::string key;  // the key the error must name
};

const std::string kModel = "[[model]]\nname = \"m\"\npath = \"m.gguf\"\n";

TEST(Config, EveryBadConfigurationNamesItsKey) {
  const std::string dir = fresh_dir("config-bad");
  const std::vector<BadConfig> cases = {
      {"unknown key", kModel + "[server]\nprot = 1\n", "server.prot"},
      {"unknown section", kModel + "[serverr]\nport = 1\n", "serverr.port"},
      {"unknown top-level scalar", "foo = 1\n" + kModel, "foo"},
      {"string for an integer", kModel + "[server]\nport = \"80\"\n", "server.port"},
      {"integer for a boolean", kModel + "[pipeline]\nwriteback = 1\n", "pipeline.writeback"},
      {"real for an integer", kModel + "[context]\nmax_docs = 2.5\n", "context.max_docs"},
      {"port out of range", kModel + "[server]\nport = 70000\n", "server.port"},
      {"negative max_tokens", kModel + "[generation]\nmax_tokens = -1\n", "generation.max_tokens"},
      {"weight out of range", kModel + "[retrieval]\ndense_weight = 1.5\n", "retrieval.dense_weight"},
      {"top_p zero", kModel + "[generation]\ntop_p = 0\n", "generation.top_p"},
      {"unknown enum value", kModel + "[retrieval]\nmode = \"fuzzy\"\n", "retrieval.mode"},
      {"unknown load mode", kModel + "[models]\nload = \"stream\"\n", "models.load"},
      {"unknown scorer", kModel + "[attention]\nscorer = \"magic\"\n", "attention.scorer"},
      {"tiny body limit", kModel + "[server]\nmax_body_bytes = 10\n", "server.max_body_bytes"},
      {"empty host", kModel + "[server]\nhost = \"\"\n", "server.host"},
      {"api_keys not an array", kModel + "[server]\napi_keys = \"k\"\n", "server.api_keys"},
      {"empty api key", kModel + "[server]\napi_keys = [\"\"]\n", "server.api_keys"},
      {"seed out of range", kModel + "[generation]\nseed = -3\n", "generation.seed"},
      {"router threshold out of range", kModel + "[router]\nthreshold = 2\n", "router.threshold"},
      {"duplicate model name", kModel + kModel, "model[1].name"},
      {"model without a name", "[[model]]\npath = \"m.gguf\"\n", "model[0].name"},
      {"model without a path", "[[model]]\nname = \"m\"\n", "model[0].path"},
      {"model with an unknown key", kModel + "colour = \"red\"\n", "model[0].colour"},
      {"model named auto", "[[model]]\nname = \"auto\"\npath = \"m.gguf\"\n", "model[0].name"},
      {"model cost not positive", kModel + "relative_cost = -1\n", "model[0].relative_cost"},
      {"model path not a string", "[[model]]\nname = \"m\"\npath = 3\n", "model[0].path"},
      {"model not a table array", "model = 3\n", "model"},
      {"no model at all", "[server]\nport = 1\n", "model"},
      {"default not on the ladder", kModel + "[models]\ndefault = \"huge\"\n", "models.default"},
      {"router target not on the ladder", kModel + "[router.models]\n\"r\" = \"ghost\"\n", "router.models.r"},
      {"router models not a table", kModel + "[router]\nmodels = 3\n", "router.models"},
      {"seeds above candidates", kModel + "[retrieval]\ncandidates = 4\nseeds = 5\n", "retrieval.seeds"},
      {"attention scorer without file", kModel + "[attention]\nscorer = \"attention\"\n", "attention.file"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    SCOPED_TRACE(c.name);
    const std::string file = write_at(dir + "/bad" + std::to_string(i) + ".toml", c.toml);
    try {
      (void)load(file);
      ADD_FAILURE() << c.name << ": load accepted\n" << c.toml;
    } catch (const Error& e) {
      const std::string what = e.what();
      // "<file>:\n  <key>: <message>"
      EXPECT_NE(what.find("\n  " + c.key + ": "), std::string::npos) << c.name << ": " << what;
      EXPECT_NE(what.find(file), std::string::npos) << what;
    }
    // check sees the same problem under the same key.
    const auto issues = check(file);
    EXPECT_TRUE(std::any_of(issues.begin(), issues.end(), [&](const ConfigIssue& is) { return is.key == c.key; }))
        << c.name << ": check did not report " << c.key;
  }
}

TEST(Config, ListsEveryIssueOfAFileAtOnce) {
  const std::string dir = fresh_dir("config-many");
  const std::string file =
      write_at(dir + "/many.toml", kModel + "[server]\nport = -1\nthreads = 0\n[retrieval]\nmode = 3\n");
  try {
    (void)load(file);
    FAIL() << "accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    for (const char* key : {"server.port", "server.threads", "retrieval.mode"})
      EXPECT_NE(what.find(std::string("\n  ") + key + ": "), std::string::npos) << key << " missing from " << what;
  }
  EXPECT_EQ(check(file).size(), 3u);
}

TEST(Config, MalformedTomlNamesTheLine) {
  const std::string dir = fresh_dir("config-syntax");
  const std::string file = write_at(dir + "/broken.toml", kModel + "[server]\nport = = 1\n");  // line 5
  try {
    (void)load(file);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(file + ":5:"), std::string::npos) << e.what();
  }
  const auto issues = check(file);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].message.find(":5:"), std::string::npos) << issues[0].message;
  // A file that does not exist is an error too, not the defaults.
  EXPECT_THROW(load(dir + "/absent.toml"), Error);
}

TEST(Config, BadEnvironmentOverrideNamesKeyAndVariable) {
  const std::string dir = fresh_dir("config-env");
  const std::string file = write_at(dir + "/ok.toml", kModel);
  {
    ScopedEnv port("RUVLLM_SERVER_PORT", "eighty");
    try {
      (void)load(file);
      FAIL() << "accepted RUVLLM_SERVER_PORT=eighty";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("server.port"), std::string::npos) << what;
      EXPECT_NE(what.find("RUVLLM_SERVER_PORT"), std::string::npos) << what;
    }
  }
  {
    ScopedEnv wb("RUVLLM_PIPELINE_WRITEBACK", "true");
    EXPECT_TRUE(load(file).writeback);
  }
  EXPECT_FALSE(load(file).writeback);
}

TEST(Config, CheckReportsAMissingOrBrokenModelFileByItsKey) {
  const std::string dir = fresh_dir("config-check");
  const std::string good =
      write_at(dir + "/good.toml", "[[model]]\nname = \"t\"\npath = \"" + test::tiny_lfm2() + "\"\n");
  EXPECT_TRUE(check(good).empty());

  const std::string missing =
      write_at(dir + "/missing.toml", "[[model]]\nname = \"t\"\npath = \"" + test::tiny_lfm2() +
                                          "\"\n[[model]]\nname = \"u\"\npath = \"nope.gguf\"\n");
  auto issues = check(missing);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].key, "model[1].path");
  EXPECT_NE(issues[0].message.find(dir + "/nope.gguf"), std::string::npos) << issues[0].message;
  // load only reads; the disk is check's business.
  EXPECT_NO_THROW(load(missing));

  write_at(dir + "/junk.gguf", "this is not a GGUF file at all");
  const std::string junk = write_at(dir + "/junk.toml", "[[model]]\nname = \"j\"\npath = \"junk.gguf\"\n");
  issues = check(junk);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].key, "model[0].path");

  const std::string vectors = write_at(dir + "/vectors.toml", "[[model]]\nname = \"t\"\npath = \"" + test::tiny_lfm2() +
                                                                  "\"\n[memory]\nword_vectors = \"none.words\"\n");
  issues = check(vectors);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].key, "memory.word_vectors");
}

TEST(Config, PrintedDefaultsLoadAndEqualTheBuiltInDefaults) {
  const std::string dir = fresh_dir("config-defaults");
  const std::string file = write_at(
      dir + "/defaults.toml", defaults_toml() + "\n[[model]]\nname = \"m\"\npath = \"" + test::tiny_lfm2() + "\"\n");
  Settings c;
  ASSERT_NO_THROW(c = load(file));
  EXPECT_TRUE(check(file).empty());
  const Settings d;
  EXPECT_EQ(c.default_model, "m");  // "" = the last [[model]]
  EXPECT_EQ(c.load_mode, d.load_mode);
  EXPECT_EQ(c.threads, d.threads);
  EXPECT_EQ(c.gpu_layers, d.gpu_layers);
  EXPECT_EQ(c.context, d.context);
  EXPECT_EQ(c.parallel, d.parallel);
  EXPECT_EQ(c.data_dir, dir + "/" + d.data_dir);
  EXPECT_EQ(c.word_vectors, d.word_vectors);
  EXPECT_EQ(c.retrieve.mode, d.retrieve.mode);
  EXPECT_DOUBLE_EQ(c.retrieve.dense_weight, d.retrieve.dense_weight);
  EXPECT_EQ(c.retrieve.candidates, d.retrieve.candidates);
  EXPECT_EQ(c.retrieve.seeds, d.retrieve.seeds);
  EXPECT_EQ(c.retrieve.expand.hops, d.retrieve.expand.hops);
  EXPECT_EQ(c.retrieve.expand.max_nodes, d.retrieve.expand.max_nodes);
  EXPECT_EQ(c.retrieve.expand.degree_budget, d.retrieve.expand.degree_budget);
  EXPECT_EQ(c.scorer, d.scorer);
  EXPECT_EQ(c.router_file, d.router_file);
  EXPECT_FALSE(c.router_threshold.has_value());
  EXPECT_DOUBLE_EQ(c.confidence_floor, d.confidence_floor);
  EXPECT_EQ(c.system_prompt, d.system_prompt);
  EXPECT_EQ(c.max_docs, d.max_docs);
  EXPECT_EQ(c.max_context_tokens, d.max_context_tokens);
  EXPECT_EQ(c.max_tokens, d.max_tokens);
  EXPECT_FLOAT_EQ(c.sampling.temperature, d.sampling.temperature);
  EXPECT_FLOAT_EQ(c.sampling.top_p, d.sampling.top_p);
  EXPECT_EQ(c.sampling.top_k, d.sampling.top_k);
  EXPECT_FLOAT_EQ(c.sampling.min_p, d.sampling.min_p);
  EXPECT_FLOAT_EQ(c.sampling.repeat_penalty, d.sampling.repeat_penalty);
  EXPECT_FALSE(c.sampling.seed.has_value());
  EXPECT_EQ(c.writeback, d.writeback);
  EXPECT_EQ(c.cache_entries, d.cache_entries);
  EXPECT_EQ(c.server.host, d.server.host);
  EXPECT_EQ(c.server.port, d.server.port);
  EXPECT_TRUE(c.server.api_keys.empty());
  EXPECT_EQ(c.server.max_body_bytes, d.server.max_body_bytes);
  EXPECT_EQ(c.server.max_tokens, d.server.max_tokens);
  EXPECT_DOUBLE_EQ(c.server.request_timeout_s, d.server.request_timeout_s);
  EXPECT_EQ(c.server.max_queue, d.server.max_queue);
  EXPECT_EQ(c.server.threads, d.server.threads);
}

}  // namespace
}  // namespace ruvllm::config
