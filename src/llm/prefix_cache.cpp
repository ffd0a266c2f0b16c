#include "prefix_cache.h"

#include <algorithm>

namespace ruvllm::llm::detail {
namespace {

bool is_prefix(std::span<const llama_token> prefix, std::span<const llama_token> tokens) {
  return prefix.size() <= tokens.size() && std::equal(prefix.begin(), prefix.end(), tokens.begin());
}

}  // namespace

std::optional<PrefixCache::Hit> PrefixCache::find(std::span<const llama_token> tokens, std::size_t max_tokens) {
  std::lock_guard lock(mutex_);
  auto best = lru_.end();
  for (auto it = lru_.begin(); it != lru_.end(); ++it) {
    const std::size_t n = it->tokens.size();
    if (n <= max_tokens && (best == lru_.end() || n > best->tokens.size()) && is_prefix(it->tokens, tokens)) {
      best = it;
    }
  }
  if (best == lru_.end()) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, best);
  return Hit{lru_.front().tokens.size(), lru_.front().state};
}

bool PrefixCache::contains(std::span<const llama_token> prefix) const {
  std::lock_guard lock(mutex_);
  return std::any_of(lru_.begin(), lru_.end(),
                     [&](const Entry& e) { return e.tokens.size() == prefix.size() && is_prefix(e.tokens, prefix); });
}

void PrefixCache::insert(std::span<const llama_token> prefix, std::vector<uint8_t> state) {
  std::lock_guard lock(mutex_);
  if (state.size() > budget_) return;
  lru_.remove_if([&](const Entry& e) {
    const bool same = e.tokens.size() == prefix.size() && is_prefix(e.tokens, prefix);
    if (same) bytes_ -= e.state.size();
    return same;
  });
  bytes_ += state.size();
  lru_.push_front(Entry{{prefix.begin(), prefix.end()}, std::move(state)});
  while (bytes_ > budget_) {
    bytes_ -= lru_.back().state.size();
    lru_.pop_back();
  }
}

std::size_t PrefixCache::entries() const {
  std::lock_guard lock(mutex_);
  return lru_.size();
}

std::size_t PrefixCache::bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

}  // namespace ruvllm::llm::detail
