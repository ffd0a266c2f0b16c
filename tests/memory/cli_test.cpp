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

}  // namespace
}  // namespace ruvllm::memory
