#include "text.h"

#include <algorithm>

namespace ruvllm::llm::detail {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

enum class Utf8 { complete, incomplete, invalid };

// Classifies the sequence starting at text[0]; `length` is its byte length when complete.
Utf8 classify(std::string_view text, std::size_t& length) {
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

}  // namespace

std::optional<std::size_t> first_invalid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t length = 0;
    if (classify(text.substr(i), length) != Utf8::complete) return i;
    i += length;
  }
  return std::nullopt;
}

TextAssembler::TextAssembler(std::vector<std::string> stop_strings) : stop_(std::move(stop_strings)) {}

std::string_view TextAssembler::push(std::string_view token_bytes) {
  if (stopped_) return {};
  pending_.append(token_bytes);
  std::size_t i = 0;
  while (i < pending_.size()) {
    std::size_t length = 0;
    const Utf8 kind = classify(std::string_view(pending_).substr(i), length);
    if (kind == Utf8::incomplete) break;
    if (kind == Utf8::invalid) {
      text_.append(kReplacement);
      i += 1;
    } else {
      text_.append(pending_, i, length);
      i += length;
    }
  }
  pending_.erase(0, i);

  // A stop string can only start in text not yet released: earlier text was checked already.
  std::size_t stop_at = std::string::npos;
  for (const auto& s : stop_) {
    const std::size_t from = released_;
    const std::size_t found = text_.find(s, from);
    if (found != std::string::npos) stop_at = std::min(stop_at, found);
  }
  if (stop_at != std::string::npos) {
    text_.resize(stop_at);
    pending_.clear();
    stopped_ = true;
    return release(text_.size());
  }
  // Hold back the longest tail that could still grow into a stop string.
  std::size_t hold = 0;
  for (const auto& s : stop_) {
    const std::size_t max = std::min(s.size() - 1, text_.size() - released_);
    for (std::size_t k = max; k > hold; --k) {
      if (std::string_view(text_).substr(text_.size() - k) == std::string_view(s).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  return release(text_.size() - hold);
}

std::string_view TextAssembler::finish() {
  if (!stopped_ && !pending_.empty()) {
    text_.append(kReplacement);
    pending_.clear();
  }
  return release(text_.size());
}

std::string_view TextAssembler::release(std::size_t end) {
  const std::size_t begin = released_;
  released_ = std::max(released_, end);
  return std::string_view(text_).substr(begin, released_ - begin);
}

}  // namespace ruvllm::llm::detail
