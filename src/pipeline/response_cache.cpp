#include "response_cache.h"

#include <cctype>
#include <cstdio>

#include "common/hash.h"

namespace ruvllm::pipeline::detail {

std::optional<Response> ResponseCache::get(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  order_.splice(order_.begin(), order_, it->second);
  return it->second->response;
}

void ResponseCache::put(const std::string& key, const Response& response) {
  if (capacity_ == 0) return;
  std::lock_guard lock(mutex_);
  if (auto it = map_.find(key); it != map_.end()) erase(it->second);
  order_.push_front({key, response});
  map_[key] = order_.begin();
  for (const auto& b : response.context) by_node_[b.node_id].insert(key);
  while (map_.size() > capacity_) erase(std::prev(order_.end()));
}

void ResponseCache::clear() {
  std::lock_guard lock(mutex_);
  order_.clear();
  map_.clear();
  by_node_.clear();
}

void ResponseCache::invalidate(const std::vector<std::string>& node_ids) {
  std::lock_guard lock(mutex_);
  for (const auto& id : node_ids) {
    auto it = by_node_.find(id);
    if (it == by_node_.end()) continue;
    const auto keys = it->second;
    for (const auto& key : keys)
      if (auto m = map_.find(key); m != map_.end()) erase(m->second);
  }
}

void ResponseCache::erase(std::list<Entry>::iterator e) {
  for (const auto& b : e->response.context) {
    auto it = by_node_.find(b.node_id);
    if (it == by_node_.end()) continue;
    it->second.erase(e->key);
    if (it->second.empty()) by_node_.erase(it);
  }
  map_.erase(e->key);
  order_.erase(e);
}

std::string normalise_query(std::string_view q) {
  std::string out;
  bool space = false;
  for (unsigned char c : q) {
    if (std::isspace(c)) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += static_cast<char>(std::tolower(c));
  }
  return out;
}

std::string cache_key(const Request& req, const Response& out, int max_tokens, const llm::Sampling& sampling,
                      const std::string& system_prompt) {
  const std::string prompt_hash = common::hex64(common::fnv1a(system_prompt));
  std::string key = normalise_query(req.query) + '\x1f' + out.model + '\x1f' +
                    (req.flow == Flow::naive ? "naive" : "routed") + '\x1f' + std::to_string(max_tokens) + '\x1f' +
                    std::to_string(sampling.temperature) + '\x1f' + std::to_string(sampling.top_p) + '\x1f' +
                    (sampling.seed ? std::to_string(*sampling.seed) : "-") + '\x1f' + (req.ignore_eos ? "1" : "0") +
                    '\x1f' + prompt_hash;
  for (const auto& stop : req.stop) key += '\x1f' + stop;
  for (const auto& b : out.context) key += '\x1e' + b.node_id;
  return key;
}

}  // namespace ruvllm::pipeline::detail
