// `ruvllm ingest` and `ruvllm memory ...` as a user runs them: output, exit codes, errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "ruvllm/embed.h"

namespace ruvllm::memory {
namespace {

TEST(MemoryCli, IngestSearchGetLinkDelete) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string db = test::tmp_dir() + "/cli.sqlite";
  for (const char* suffix : {"", "-wal", "-shm", ".usearch"}) std::filesystem::remove(db + suffix);
  const std::string corpus = test::write_file(
      "cli.jsonl",
      R"({"id": "x1", "title": "Volcano", "text": "A volcano is a rupture in the crust of a planet where lava escapes."})"
      "\n"
      R"({"id": "x2", "title": "Glacier", "text": "A glacier is a persistent body of dense ice that moves under its own weight."})"
      "\n");
  const std::string at = " --db " + db;
  auto r = test::run("ingest" + at + " " + corpus);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("2 documents"), std::string::npos) << r.out;

  r = test::run("memory stats" + at);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto stats = nlohmann::json::parse(r.out);
  EXPECT_EQ(stats["nodes"], 2);
  EXPECT_EQ(stats["indexed"], 2);

  r = test::run("memory search" + at + " --json -k 1 'lava from the crust'");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto hits = nlohmann::json::parse(r.out)["hits"];
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0]["node"]["title"], "Volcano");
  const std::string volcano = hits[0]["id"];

  r = test::run("memory add" + at + " --type fact --tag geo 'Ice sheets are glaciers larger than 50,000 km2.'");
  ASSERT_EQ(r.status, 0) << r.out;
  const std::string fact = r.out.substr(0, r.out.find('\n'));
  r = test::run("memory link" + at + " " + fact + " " + volcano + " --rel contrasts --weight 0.5");
  ASSERT_EQ(r.status, 0) << r.out;
  r = test::run("memory get" + at + " " + fact);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto node = nlohmann::json::parse(r.out);
  EXPECT_EQ(node["type"], "fact");
  ASSERT_EQ(node["edges"].size(), 1u);
  EXPECT_EQ(node["edges"][0]["rel"], "contrasts");

  r = test::run("memory delete" + at + " " + fact);
  EXPECT_EQ(r.status, 0) << r.out;
  // Errors: a clear message and a non-zero exit, nothing changed.
  r = test::run("memory delete" + at + " " + fact);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("no node"), std::string::npos) << r.out;
  r = test::run("memory add" + at + " --type nonsense 'x'");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("unknown node type"), std::string::npos) << r.out;
  r = test::run("memory link" + at + " " + volcano + " missing --rel cites");
  EXPECT_NE(r.status, 0);
  r = test::run("ingest" + at + " " + test::write_file("broken.jsonl", "{\"text\": 1}\n"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("broken.jsonl:1"), std::string::npos) << r.out;
  r = test::run("memory search" + at + " --mode sideways x");
  EXPECT_NE(r.status, 0);
  r = test::run("memory stats" + at);
  EXPECT_EQ(nlohmann::json::parse(r.out)["nodes"], 2);
}

// A mistyped path is an error, never a new empty store: only ingest and memory add create one.
TEST(MemoryCli, ReadCommandsNeverCreateADatabase) {
  const std::string dir = test::fresh_dir("memory-cli-missing");
  const std::string db = dir + "/typo.sqlite";
  for (const std::string& command :
       {std::string("memory stats"), std::string("memory search lava"), std::string("memory get x1"),
        std::string("memory link x1 x2 --rel cites"), std::string("memory delete x1"), std::string("memory vacuum")}) {
    const auto r = test::run(command + " --db " + db);
    EXPECT_NE(r.status, 0) << command << ": " << r.out;
    EXPECT_NE(r.out.find(db + " does not exist"), std::string::npos) << command << ": " << r.out;
    EXPECT_NE(r.out.find("ruvllm ingest"), std::string::npos) << command << ": " << r.out;
    for (const char* suffix : {"", "-wal", "-shm", ".usearch"})
      EXPECT_FALSE(std::filesystem::exists(db + suffix)) << command << " created " << db << suffix;
  }
}

// ingest and memory commands read the configuration's memory path, as ask and serve do; --db wins.
TEST(MemoryCli, CommandsUseTheConfigurationsMemory) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = test::fresh_dir("memory-cli-config");
  // No [[model]]: the memory commands need no ladder.
  const std::string config = test::write_at(dir + "/ruvllm.toml", "[memory]\ndata_dir = \"data\"\n");
  const std::string corpus = test::write_at(
      dir + "/notes.jsonl",
      R"({"id": "v1", "title": "Volcano", "text": "A volcano is a rupture in the crust of a planet where lava escapes."})"
      "\n");
  auto r = test::run("ingest -c " + config + " " + corpus);
  ASSERT_EQ(r.status, 0) << r.out;
  const std::string expected = dir + "/data/memory.sqlite";
  EXPECT_NE(r.out.find("into " + expected), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::exists(expected));

  r = test::run("memory stats -c " + config);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["nodes"], 1);
  EXPECT_EQ(nlohmann::json::parse(r.out)["path"], expected);

  // $RUVLLM_CONFIG names the file when -c does not; the environment's overrides apply.
  ::setenv("RUVLLM_CONFIG", config.c_str(), 1);
  r = test::run("memory search --json -k 1 lava");
  ::unsetenv("RUVLLM_CONFIG");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["hits"][0]["node"]["title"], "Volcano");

  // --db beats the configuration.
  const std::string other = dir + "/other.sqlite";
  r = test::run("memory add -c " + config + " --db " + other + " 'Basalt is a volcanic rock.'");
  ASSERT_EQ(r.status, 0) << r.out;
  r = test::run("memory stats -c " + config);
  EXPECT_EQ(nlohmann::json::parse(r.out)["nodes"], 1) << r.out;
  r = test::run("memory stats --db " + other);
  EXPECT_EQ(nlohmann::json::parse(r.out)["nodes"], 1) << r.out;

  // A bad key in the file is reported, not ignored.
  const std::string bad = test::write_at(dir + "/bad.toml", "[memory]\ndata_dirr = \"data\"\n");
  r = test::run("memory stats -c " + bad);
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("memory.data_dirr"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace ruvllm::memory
