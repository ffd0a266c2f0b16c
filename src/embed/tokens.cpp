// Word tokenizer shared by the word-vector embedder, chunking and the router's query statistics.
#include <string>

#include "common/utf8.h"
#include "ruvllm/embed.h"

namespace ruvllm::embed {
namespace {

bool is_ascii_alnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Decodes one complete UTF-8 sequence of 2–4 bytes.
char32_t code_point(std::string_view ch) {
  const auto b = [&](std::size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(ch[i])); };
  if (ch.size() == 2) return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
  if (ch.size() == 3) return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
}

// Non-ASCII characters count as letters except the punctuation and spaces that separate words in
// real text: Latin-1 punctuation, ×, ÷, General Punctuation (dashes, curly quotes), CJK
// punctuation, the BOM and U+FFFD.
bool is_word_char(std::string_view ch) {
  const char32_t cp = code_point(ch);
  return !((cp >= 0x80 && cp <= 0xBF) || cp == 0xD7 || cp == 0xF7 || (cp >= 0x2000 && cp <= 0x206F) ||
           (cp >= 0x3000 && cp <= 0x303F) || cp == 0xFEFF || cp == 0xFFFD);
}

// Whether `rest` (valid UTF-8, not empty) starts with a word character.
bool starts_word(std::string_view rest) {
  const auto c = static_cast<unsigned char>(rest[0]);
  if (c < 0x80) return is_ascii_alnum(c);
  std::size_t length = 1;
  common::classify_utf8(rest, length);
  return is_word_char(rest.substr(0, length));
}

// Appends the lower-cased bytes of one character. ASCII and Latin-1 capitals (U+00C0–U+00DE, not
// U+00D7) are folded: GloVe-6B is lower-cased, and those cover the accented letters it knows.
void append_lower(std::string& out, std::string_view ch) {
  if (ch.size() == 1) {
    const char c = ch[0];
    out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  } else if (ch.size() == 2 && static_cast<unsigned char>(ch[0]) == 0xC3 && static_cast<unsigned char>(ch[1]) >= 0x80 &&
             static_cast<unsigned char>(ch[1]) <= 0x9E && static_cast<unsigned char>(ch[1]) != 0x97) {
    out.push_back(ch[0]);
    out.push_back(static_cast<char>(static_cast<unsigned char>(ch[1]) + 0x20));
  } else {
    out.append(ch);
  }
}

}  // namespace

std::vector<std::string> word_tokens(std::string_view text) {
  if (auto at = common::first_invalid_utf8(text)) {
    throw Error("text is not valid UTF-8 (byte " + std::to_string(*at) + ")");
  }
  std::vector<std::string> tokens;
  std::string word;
  std::size_t i = 0;
  const auto flush = [&] {
    if (!word.empty()) tokens.push_back(std::move(word));
    word.clear();
  };
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    std::size_t length = 1;
    if (c >= 0x80) common::classify_utf8(text.substr(i), length);
    if (is_ascii_alnum(c) || (c >= 0x80 && is_word_char(text.substr(i, length)))) {
      append_lower(word, text.substr(i, length));
    } else if ((c == '-' || c == '\'') && !word.empty() && i + 1 < text.size() && starts_word(text.substr(i + 1))) {
      word.push_back(static_cast<char>(c));  // inner hyphen or apostrophe: part of the word
    } else {
      flush();
    }
    i += length;
  }
  flush();
  return tokens;
}

}  // namespace ruvllm::embed
