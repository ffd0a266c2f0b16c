// Saved sequence states keyed by the exact token prefix they represent, evicted LRU by bytes.
// Restoring a state replaces prefill of those tokens; for hybrid models (LFM2) it is the only way
// to reuse a prefix, because their conv state cannot be rolled back to a shorter position.
#pragma once

#include <llama.h>

#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

namespace ruvllm::llm::detail {

class PrefixCache {
 public:
  explicit PrefixCache(std::size_t budget_bytes) : budget_(budget_bytes) {}

  struct Hit {
    std::size_t tokens = 0;
    std::span<const uint8_t> state;  // valid until the next insert
  };
  // The longest cached prefix of `tokens` no longer than `max_tokens`; marks it recently used.
  std::optional<Hit> find(std::span<const llama_token> tokens, std::size_t max_tokens);
  bool contains(std::span<const llama_token> prefix) const;
  // Stores a state; evicts the least recently used entries beyond the byte budget. A state larger
  // than the whole budget is not stored.
  void insert(std::span<const llama_token> prefix, std::vector<uint8_t> state);

  std::size_t entries() const;
  std::size_t bytes() const;

 private:
  struct Entry {
    std::vector<llama_token> tokens;
    std::vector<uint8_t> state;
  };
  mutable std::mutex mutex_;  // stats are read from other threads
  std::list<Entry> lru_;      // front = most recently used
  std::size_t budget_;
  std::size_t bytes_ = 0;
};

}  // namespace ruvllm::llm::detail
