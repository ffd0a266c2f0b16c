// `ruvllm attention train` as a user runs it on real multi-hop questions.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "fixtures.h"
#include "ruvllm/attention.h"
#include "ruvllm/embed.h"

namespace ruvllm::attention {
namespace {

double table_value(const std::string& out, const std::string& row, int column) {
  const auto at = out.find("| " + row + " |");
  if (at == std::string::npos) return -1;
  std::string line = out.substr(at, out.find('\n', at) - at);
  std::vector<std::string> cells;
  for (std::size_t p = 0; (p = line.find('|', p)) != std::string::npos && p + 1 < line.size(); ++p) {
    cells.push_back(line.substr(p + 1, line.find('|', p + 1) - p - 1));
  }
  return column < static_cast<int>(cells.size()) ? std::stod(cells[column]) : -1;
}

TEST(AttentionCli, TrainsOnHotpotQaAndBeatsRetrievalOrderOnHeldOutQuestions) {
  RUVLLM_REQUIRE_SHARED(questions, "qa/hotpotqa-100/questions.jsonl");
  RUVLLM_REQUIRE_SHARED(corpus, "qa/hotpotqa-100/corpus.jsonl");
  RUVLLM_REQUIRE_VECTORS();
  const std::string db = test::tmp_dir() + "/attention-cli.sqlite", model = test::tmp_dir() + "/attention-cli.json";
  for (const char* suffix : {"", "-wal", "-shm", ".usearch"}) std::filesystem::remove(db + suffix);
  const auto r = test::run("attention train --db " + db + " --corpus " + corpus + " --questions " + questions +
                           " --holdout 0.3 --out " + model);
  ASSERT_EQ(r.status, 0) << r.out;
  const double order_r5 = table_value(r.out, "retrieval order", 2),
               attention_r5 = table_value(r.out, "graph attention", 2);
  ASSERT_GE(order_r5, 0) << r.out;
  ASSERT_GE(attention_r5, 0) << r.out;
  EXPECT_GT(attention_r5, order_r5) << r.out;
  const auto loaded = AttentionModel::load(model);
  EXPECT_EQ(loaded.dimension(), 100u);

  // Bad questions: a clear error naming the line.
  const auto bad =
      test::run("attention train --db " + db + " --questions " +
                test::write_file("bad-questions.jsonl", "{\"question\": \"q\", \"supporting\": [\"a\"]}\n{oops\n") +
                " --out " + model);
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.out.find("bad-questions.jsonl:2"), std::string::npos) << bad.out;
  const auto missing = test::run("attention train --db " + db + " --questions /no/such/file.jsonl");
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.out.find("cannot read"), std::string::npos) << missing.out;
}

}  // namespace
}  // namespace ruvllm::attention
