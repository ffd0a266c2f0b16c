#include "text.h"

#include <algorithm>

namespace ruvllm::llm::detail {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
}  // namespace

TextAssembler::TextAssembler(std::vector<std::string> stop_strings) : stop_(std::move(stop_strings)) {}

std::string_view TextAssembler::push(std::string_view token_bytes) {
  if (stopped_) return {};
  pending_.append(token_bytes);
  std::size_t i = 0;
  while (i < pending_.size()) {
    std::size_t length = 0;
    const common::Utf8 kind = common::classify_utf8(std::string_view(pending_).substr(i), length);
    if (kind == common::Utf8::incomplete) break;
    if (kind == common::Utf8::invalid) {
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
