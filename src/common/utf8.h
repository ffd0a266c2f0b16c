// UTF-8 validation shared by every room that accepts text (llm, embed, memory).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace ruvllm::common {

enum class Utf8 { complete, incomplete, invalid };

// Classifies the sequence starting at text[0] (RFC 3629: no overlongs, surrogates or code points
// above U+10FFFF); `length` is its byte length when complete. `text` must not be empty.
Utf8 classify_utf8(std::string_view text, std::size_t& length);

// Byte offset of the first invalid UTF-8 sequence in `text` (an incomplete sequence at the end
// counts as invalid), or nullopt when the whole text is valid.
std::optional<std::size_t> first_invalid_utf8(std::string_view text);

// Throws ruvllm::Error "<what> is not valid UTF-8 (byte N)" unless `text` is valid.
void require_utf8(std::string_view text, std::string_view what);

}  // namespace ruvllm::common
