#include "utf8.h"

#include <string>

#include "ruvllm/error.h"

namespace ruvllm::common {

// Classifies the sequence starting at text[0]; `length` is its byte length when complete.
Utf8 classify_utf8(std::string_view text, std::size_t& length) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(0);
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte (RFC 3629, table 3-7)
  if (lead < 0x80) {
    length = 1;
    return Utf8::complete;
  } else if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) lo = 0xA0;
    if (lead == 0xED) hi = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return Utf8::invalid;
  }
  for (std::size_t i = 1; i < length; ++i) {
    if (i >= text.size()) return Utf8::incomplete;
    const unsigned char b = byte(i);
    const unsigned char min = i == 1 ? lo : 0x80, max = i == 1 ? hi : 0xBF;
    if (b < min || b > max) return Utf8::invalid;
  }
  return Utf8::complete;
}

std::optional<std::size_t> first_invalid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t length = 0;
    if (classify_utf8(text.substr(i), length) != Utf8::complete) return i;
    i += length;
  }
  return std::nullopt;
}

void require_utf8(std::string_view text, std::string_view what) {
  if (auto at = first_invalid_utf8(text))
    throw Error(std::string(what) + " is not valid UTF-8 (byte " + std::to_string(*at) + ")");
}

}  // namespace ruvllm::common
