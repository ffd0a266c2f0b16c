// The depth bound agrees with a recursive walk over what nlohmann parses, on generated documents
// whose strings hold brackets, quotes and escapes; and it is what makes the server survive a
// request nested far deeper than any stack.
#include "common/json_depth.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>

namespace ruvllm::common {
namespace {

std::size_t depth_of(const nlohmann::json& j) {  // brute force: the parsed value's own depth
  if (!j.is_array() && !j.is_object()) return 0;
  std::size_t deepest = 0;
  for (const auto& child : j) deepest = std::max(deepest, depth_of(child));
  return deepest + 1;
}

// A random JSON value of at most `budget` levels; strings hold the characters a scanner can trip on.
// Keys differ within an object: the parser keeps only the last of equal keys, and the brute force
// would not see the value it dropped.
std::string random_value(std::mt19937_64& rng, int budget) {
  static const char* strings[] = {R"("plain")",  R"("[{")",   R"("\"]")",    R"("\\")",
                                  R"("\\\"[[")", R"("}}]]")", R"("é\u005b")"};
  const auto pick = rng() % 6;
  if (budget == 0 || pick == 0) return strings[rng() % std::size(strings)];
  if (pick == 1) return std::to_string(rng() % 1000);
  const bool array = pick % 2 == 0;
  std::string out(1, array ? '[' : '{');
  const auto n = rng() % 4;
  for (std::size_t i = 0; i < n; ++i) {
    if (i) out += ',';
    if (!array) {
      const std::string key = strings[rng() % std::size(strings)];
      out += key.substr(0, key.size() - 1) + std::to_string(i) + "\":";
    }
    out += random_value(rng, budget - 1);
  }
  out += array ? ']' : '}';
  return out;
}

TEST(JsonDepth, AgreesWithTheParsedValuesDepthOnGeneratedDocuments) {
  std::mt19937_64 rng(7);
  std::size_t checked = 0, deep = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::string text = random_value(rng, 12);
    const auto parsed = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << text;
    const std::size_t depth = depth_of(parsed);
    for (std::size_t limit : {std::size_t{0}, depth > 0 ? depth - 1 : 0, depth, depth + 1}) {
      EXPECT_EQ(json_nests_deeper_than(text, limit), depth > limit) << text << " limit " << limit;
      ++checked;
    }
    deep += depth >= 4;
  }
  EXPECT_GT(deep, 300u);  // the generator reaches real depths, not only scalars
  EXPECT_EQ(checked, 12000u);
}

TEST(JsonDepth, CountsOnlyBracketsOutsideStrings) {
  EXPECT_FALSE(json_nests_deeper_than(R"(["[[[[", "\"[[[["])", 1));
  EXPECT_TRUE(json_nests_deeper_than(R"([["\\"]])", 1));  // an escaped backslash does not hide the quote
  EXPECT_FALSE(json_nests_deeper_than(std::string(64, '[') + std::string(64, ']')));
  EXPECT_TRUE(json_nests_deeper_than(std::string(65, '[') + std::string(65, ']')));
  EXPECT_TRUE(json_nests_deeper_than(std::string(80000, '[')));  // unbalanced, still refused early
  EXPECT_FALSE(json_nests_deeper_than("]]]]", 0));               // stray closers never go below zero
}

}  // namespace
}  // namespace ruvllm::common
