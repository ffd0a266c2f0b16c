// A bound on how deeply a JSON text nests, checked before it is parsed. nlohmann's parser is
// iterative, but dump(), comparisons and every walker over a parsed value recurse: one request of
// 80,000 nested arrays (160 KB) overflowed the server's stack in dump(). Every room that reads JSON
// from outside (HTTP bodies, JSONL files, model and router files, stored metadata) checks it first.
#pragma once

#include <cstddef>
#include <string_view>

namespace ruvllm::common {

// Deeper than any document ruvllm writes or an OpenAI client sends (a chat body nests 5 levels),
// and far from what overflows a stack.
inline constexpr std::size_t kMaxJsonDepth = 64;

// Whether `text` opens more than `max_depth` arrays or objects inside each other. Brackets inside
// strings do not count; the text need not be valid JSON (the parser says what else is wrong). O(n),
// no allocation.
bool json_nests_deeper_than(std::string_view text, std::size_t max_depth = kMaxJsonDepth);

}  // namespace ruvllm::common
