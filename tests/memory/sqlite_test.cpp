// The connection's cache of prepared statements: a cached statement starts clean on every use
// (no rows left over, no bindings), nested uses of one SQL are independent, and a statement that
// fails to prepare leaves the cache usable.
#include "memory/sqlite.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "fixtures.h"
#include "ruvllm/memory.h"

namespace ruvllm::memory::detail {
namespace {

TEST(SqliteStatementCache, EachUseStartsCleanAndNestedUsesAreIndependent) {
  const std::string path = test::tmp_dir() + "/statement-cache.sqlite";
  std::filesystem::remove(path);
  Db db(path, false);
  db.exec("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)");
  for (int k = 1; k <= 5; ++k)
    Statement(db, "INSERT INTO t(k, v) VALUES (?, ?)").bind(1, k).bind(2, "v" + std::to_string(k)).run();

  const char* kSql = "SELECT k, v FROM t WHERE k IN (SELECT value FROM json_each(?)) ORDER BY k";
  auto rows = [&](const char* keys) {
    Statement s(db, kSql, Statement::Cached{});
    s.bind(1, keys);
    std::vector<int64_t> out;
    while (s.step()) out.push_back(s.integer(0));
    return out;
  };
  EXPECT_EQ(rows("[2,4]"), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(rows("[5,1,3]"), (std::vector<int64_t>{1, 3, 5}));
  {
    // Abandoned after one row: the next use starts from the first row, with no binding left over.
    Statement s(db, kSql, Statement::Cached{});
    s.bind(1, "[1,2,3]");
    ASSERT_TRUE(s.step());
  }
  {
    Statement s(db, kSql, Statement::Cached{});
    EXPECT_FALSE(s.step());  // NULL binding: json_each(NULL) is empty
  }
  EXPECT_EQ(rows("[1,2,3]"), (std::vector<int64_t>{1, 2, 3}));

  // The same SQL open twice at once (a nested read): two statements, each with its own rows.
  Statement outer(db, kSql, Statement::Cached{});
  outer.bind(1, "[1,2]");
  std::vector<int64_t> inner_rows;
  std::vector<int64_t> outer_rows;
  while (outer.step()) {
    outer_rows.push_back(outer.integer(0));
    for (int64_t k : rows("[3,4,5]")) inner_rows.push_back(k);
  }
  EXPECT_EQ(outer_rows, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(inner_rows, (std::vector<int64_t>{3, 4, 5, 3, 4, 5}));

  EXPECT_THROW(Statement(db, "SELECT nope FROM missing", Statement::Cached{}), memory::Error);
  EXPECT_EQ(rows("[4]"), (std::vector<int64_t>{4}));  // the cache still serves after a failed prepare
}

}  // namespace
}  // namespace ruvllm::memory::detail
