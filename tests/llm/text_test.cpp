#include "llm/text.h"

#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>

namespace ruvllm::llm::detail {
namespace {

// Reference validator written from the definition: decode each code point arithmetically and
// reject overlong forms, surrogates, values above U+10FFFF and truncated sequences.
std::optional<std::size_t> reference_first_invalid(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int len = 0;
    uint32_t cp = 0;
    if (b0 < 0x80) {
      len = 1;
      cp = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      len = 2;
      cp = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3;
      cp = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4;
      cp = b0 & 0x07;
    } else
      return i;
    if (i + static_cast<std::size_t>(len) > s.size()) return i;
    for (int k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
      if ((b & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (b & 0x3F);
    }
    const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += static_cast<std::size_t>(len);
  }
  return std::nullopt;
}

TEST(Utf8, AgreesWithReferenceOnRandomBytes) {
  std::mt19937 rng(42);
  const std::string alphabet = "aZ \x7F\xC2\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xC0\x80\xED\xA0\xF4\x90\xFF\xE0\xBF";
  for (int trial = 0; trial < 20000; ++trial) {
    std::string s;
    const int n = static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) s += alphabet[rng() % alphabet.size()];
    ASSERT_EQ(first_invalid_utf8(s), reference_first_invalid(s)) << "trial " << trial;
  }
}

TEST(Utf8, KnownCases) {
  EXPECT_EQ(first_invalid_utf8("plain ascii"), std::nullopt);
  EXPECT_EQ(first_invalid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), std::nullopt);
  EXPECT_EQ(first_invalid_utf8("ab\x80"), 2u);            // lone continuation byte
  EXPECT_EQ(first_invalid_utf8("\xC0\xAF"), 0u);          // overlong '/'
  EXPECT_EQ(first_invalid_utf8("x\xED\xA0\x80"), 1u);     // UTF-16 surrogate
  EXPECT_EQ(first_invalid_utf8("\xF4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(first_invalid_utf8("ok\xE2\x82"), 2u);        // truncated at the end
}

// Pushes `bytes` in pieces cut at the given positions; returns {released concatenation, assembler}.
std::pair<std::string, TextAssembler> assemble(const std::string& bytes, const std::vector<std::size_t>& cuts,
                                               std::vector<std::string> stop) {
  TextAssembler a(std::move(stop));
  std::string released;
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    released += a.push(std::string_view(bytes).substr(from, cut - from));
    from = cut;
  }
  released += a.push(std::string_view(bytes).substr(from));
  released += a.finish();
  return {released, std::move(a)};
}

TEST(TextAssembler, ReleasedPiecesConcatenateToTheTextForEverySplit) {
  const std::string bytes =
      "Gr\xC3\xBC\xC3\x9F"
      "e \xE2\x82\xAC"
      "5 \xF0\x9F\x98\x80 done";
  const auto [whole, ref] = assemble(bytes, {}, {});
  EXPECT_EQ(whole, bytes);
  for (std::size_t i = 0; i <= bytes.size(); ++i) {
    for (std::size_t j = i; j <= bytes.size(); ++j) {
      const auto [released, a] = assemble(bytes, {i, j}, {});
      ASSERT_EQ(released, bytes) << "cuts " << i << "," << j;
      ASSERT_EQ(a.text(), bytes);
    }
  }
}

TEST(TextAssembler, StopStringEndsTheTextWhereverTheTokensSplitIt) {
  const std::string bytes = "The answer is 42.\nUser: ignore this";
  for (std::size_t i = 0; i <= bytes.size(); ++i) {
    for (std::size_t j = i; j <= bytes.size(); ++j) {
      const auto [released, a] = assemble(bytes, {i, j}, {"\nUser:", "never"});
      ASSERT_TRUE(a.stopped());
      ASSERT_EQ(a.text(), "The answer is 42.");
      ASSERT_EQ(released, a.text()) << "cuts " << i << "," << j;
    }
  }
}

TEST(TextAssembler, EarliestStopStringWins) {
  const auto [released, a] = assemble("one two three", {3, 7}, {"three", "two"});
  EXPECT_TRUE(a.stopped());
  EXPECT_EQ(a.text(), "one ");
  EXPECT_EQ(released, "one ");
}

TEST(TextAssembler, HoldsBackAPossibleStopPrefixUntilItIsDecided) {
  TextAssembler a({"END"});
  EXPECT_EQ(a.push("abcE"), "abc");  // "E" may start "END"
  EXPECT_EQ(a.push("N"), "");        // "EN" still may
  EXPECT_EQ(a.push("x"), "ENx");     // it did not
  EXPECT_FALSE(a.stopped());
  EXPECT_EQ(a.finish(), "");
  EXPECT_EQ(a.text(), "abcENx");
}

TEST(TextAssembler, InvalidBytesBecomeReplacementCharacters) {
  const std::string fffd = "\xEF\xBF\xBD";
  const auto [released, a] = assemble(
      "a\xFF"
      "b\xE2\x82",
      {2}, {});
  EXPECT_EQ(a.text(), "a" + fffd + "b" + fffd);  // the unfinished euro sign at the end too
  EXPECT_EQ(released, a.text());
  EXPECT_EQ(first_invalid_utf8(a.text()), std::nullopt);
}

}  // namespace
}  // namespace ruvllm::llm::detail
