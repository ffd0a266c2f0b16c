// The HNSW index: USearch's index_dense_gt behind a small, thread-safe wrapper that adds per-query
// efSearch, filters, growth, and a file format that records which store change it includes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "ruvllm/memory.h"

namespace ruvllm::memory::detail {

struct AnnMatch {
  uint64_t key;
  float distance;  // cosine: 1 - cos; inner product: 1 - ip; l2: squared distance
};

class AnnIndex {
 public:
  AnnIndex(std::size_t dimension, const IndexParams& params);
  ~AnnIndex();
  AnnIndex(AnnIndex&&) noexcept;
  AnnIndex& operator=(AnnIndex&&) noexcept;

  // Reads a file written by save(). nullopt with `why` set when it is missing, corrupt or built
  // with other parameters (the caller rebuilds from the store).
  static std::optional<AnnIndex> load(const std::string& path, std::size_t dimension, const IndexParams& params,
                                      uint64_t& seq, std::string& why);
  // Writes atomically (temporary file + fsync + rename) with `seq`, the last store change included.
  void save(const std::string& path, uint64_t seq) const;

  void reserve(std::size_t capacity);  // room for this many vectors without regrowth
  // Thread-safe with searches; grows the index as needed. Replaces an existing key's vector.
  void add(uint64_t key, std::span<const float> vector);
  bool remove(uint64_t key);
  bool contains(uint64_t key) const;
  std::size_t size() const;
  std::size_t memory_bytes() const;
  std::size_t dimension() const { return dimension_; }
  const IndexParams& params() const { return params_; }

  // Up to k nearest, best first, into `out` (reused: no allocation once it has grown). `filter`
  // (optional) is asked about each candidate key; efSearch 0 = the default.
  void search(std::span<const float> query, std::size_t k, std::size_t expansion_search, std::vector<AnnMatch>& out,
              const std::function<bool(uint64_t)>* filter = nullptr) const;
  // Exact search over every vector (the brute-force reference in tests and benchmarks).
  void search_exact(std::span<const float> query, std::size_t k, std::vector<AnnMatch>& out) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
  std::size_t dimension_ = 0;
  IndexParams params_;
};

}  // namespace ruvllm::memory::detail
