// FNV-1a, the one non-cryptographic byte hash the rooms share: content ids, MinHash shingles, cache
// keys, index checksums, vocabulary fingerprints. Byte by byte, so a hash does not depend on how
// its input is cut into calls; values are persisted (ingest ids, MinHash bands, index checksums),
// so it must never change.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace ruvllm::common {

inline constexpr uint64_t kFnvOffset = 1469598103934665603ull;

// Continues the hash `h` over `n` bytes at `data`.
inline uint64_t fnv1a(const void* data, std::size_t n, uint64_t h = kFnvOffset) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

inline uint64_t fnv1a(std::string_view s, uint64_t h = kFnvOffset) { return fnv1a(s.data(), s.size(), h); }

// A 64-bit hash as 16 lowercase hex digits (log rows, cache keys).
inline std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace ruvllm::common
