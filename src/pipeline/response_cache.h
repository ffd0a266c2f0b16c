// The response cache: LRU over answers keyed by the request's normalised query, settings and the
// ids of the context it used; an entry dies when any of those nodes (or their edges) change.
#pragma once

#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ruvllm/pipeline.h"

namespace ruvllm::pipeline::detail {

class ResponseCache {
 public:
  explicit ResponseCache(std::size_t capacity) : capacity_(capacity) {}

  std::optional<Response> get(const std::string& key);
  void put(const std::string& key, const Response& response);  // no-op at capacity 0
  void clear();
  void invalidate(const std::vector<std::string>& node_ids);  // every entry that used one of them

 private:
  struct Entry {
    std::string key;
    Response response;
  };
  void erase(std::list<Entry>::iterator e);

  std::size_t capacity_;
  std::mutex mutex_;
  std::list<Entry> order_;
  std::unordered_map<std::string, std::list<Entry>::iterator> map_;
  std::unordered_map<std::string, std::unordered_set<std::string>> by_node_;
};

// Lower case, whitespace runs collapsed, ends trimmed: "What is X ?" and "what  is x ?" share a key.
std::string normalise_query(std::string_view q);

// The key of an answer: everything that changes it. `system_prompt` is the one the request uses.
std::string cache_key(const Request& req, const Response& out, int max_tokens, const llm::Sampling& sampling,
                      const std::string& system_prompt);

}  // namespace ruvllm::pipeline::detail
