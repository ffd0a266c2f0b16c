// Turning generated token bytes into the text a caller sees: valid UTF-8, stop strings honoured,
// and streamed pieces that concatenate to exactly the final text.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/utf8.h"

namespace ruvllm::llm::detail {

using common::first_invalid_utf8;

class TextAssembler {
 public:
  explicit TextAssembler(std::vector<std::string> stop_strings);

  // Adds the bytes of one token and returns the text that became final: complete characters
  // (invalid byte sequences become U+FFFD) that cannot be the start of a stop string. After a stop
  // string appears, stopped() is true and the text ends just before it.
  std::string_view push(std::string_view token_bytes);
  // Ends the text: returns everything not yet returned (an unfinished character becomes U+FFFD).
  std::string_view finish();

  bool stopped() const { return stopped_; }
  const std::string& text() const { return text_; }

 private:
  std::string_view release(std::size_t end);

  std::vector<std::string> stop_;
  std::string pending_;  // bytes of a character still being completed
  std::string text_;     // valid UTF-8 so far (cut at the stop string once found)
  std::size_t released_ = 0;
  bool stopped_ = false;
};

}  // namespace ruvllm::llm::detail
