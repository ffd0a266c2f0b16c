// The one UUID formatter (RFC 9562), for every id the rooms make:
//   v4, random: nodes, edges and requests (a request's id is also its write-back node's id);
//   v8, "custom": ids derived from content (ingest), so the same document always gets the same
//   node ids. Those are persisted: the bits of uuid_v8 must never change.
#pragma once

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>

namespace ruvllm::common {

// The 128 bits hi:lo as 8-4-4-4-12 lowercase hex, with the version nibble and the RFC 4122 variant
// written over the caller's bits (122 of them survive).
inline std::string format_uuid(uint64_t hi, uint64_t lo, unsigned version) {
  hi = (hi & ~uint64_t{0xF000}) | (uint64_t{version & 0xF} << 12);
  lo = (lo & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xFFFF), static_cast<unsigned>(hi & 0xFFFF),
                static_cast<unsigned>(lo >> 48), static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFull));
  return buf;
}

inline std::string uuid_v4(std::mt19937_64& rng) {
  const uint64_t hi = rng();
  const uint64_t lo = rng();
  return format_uuid(hi, lo, 4);
}

inline std::string uuid_v8(uint64_t hi, uint64_t lo) { return format_uuid(hi, lo, 8); }

}  // namespace ruvllm::common
