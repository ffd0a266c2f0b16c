// Nodes and edges as JSON, one shape for every front end (HTTP and CLI).
#include <nlohmann/json.hpp>

#include "ruvllm/memory.h"

namespace ruvllm::memory {

using json = nlohmann::json;

// The store validates UTF-8 on write, but a file written by an older build or by hand may not be;
// a reader gets U+FFFD for those bytes rather than an exception.
namespace {
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }
}  // namespace

std::string to_json(const Node& n, bool with_vector) {
  json j = {{"id", n.id},
            {"type", to_string(n.type)},
            {"source", n.source},
            {"title", n.title},
            {"text", n.text},
            {"timestamp_ms", n.timestamp_ms},
            {"tags", n.tags},
            {"domain", n.domain},
            {"language", n.language},
            {"version", n.version},
            {"confidence", n.confidence}};
  // The store validates metadata on write; an object is what every reader may expect.
  j["metadata"] = json::parse(n.metadata, nullptr, false);
  if (!j["metadata"].is_object()) j["metadata"] = json::object();
  j["valid_from"] = n.valid_from ? json(*n.valid_from) : json(nullptr);
  j["valid_to"] = n.valid_to ? json(*n.valid_to) : json(nullptr);
  if (with_vector && !n.vector.empty()) j["vector"] = n.vector;
  return dump(j);
}

std::string to_json(const Edge& e) {
  return dump(json{{"id", e.id},
                   {"src", e.src},
                   {"dst", e.dst},
                   {"rel", e.rel},
                   {"weight", e.weight},
                   {"confidence", e.confidence},
                   {"timestamp_ms", e.timestamp_ms},
                   {"created_by", e.created_by}});
}

}  // namespace ruvllm::memory
