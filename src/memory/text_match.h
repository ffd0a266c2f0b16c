// Text matching for memory: MinHash signatures for near-duplicates, Aho–Corasick for mentions.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ruvllm::memory::detail {

// MinHash over word 3-shingles (whole text when shorter): 64 hashes, banded 16 x 4 for LSH, so that
// a pair with Jaccard 0.8 shares a band with probability 1 - (1 - 0.8^4)^16 > 0.999.
constexpr std::size_t kMinHashes = 64, kBands = 16, kRows = kMinHashes / kBands;
using Signature = std::array<uint64_t, kMinHashes>;

Signature minhash(const std::vector<std::string>& tokens);
double jaccard_estimate(const Signature& a, const Signature& b);
std::array<int64_t, kBands> band_hashes(const Signature& s);

// Case-insensitive (ASCII) multi-pattern matcher on word boundaries.
class AhoCorasick {
 public:
  // Patterns shorter than `min_length` bytes are ignored (single letters match everywhere).
  explicit AhoCorasick(const std::vector<std::string>& patterns, std::size_t min_length = 4);
  // Indices of the patterns found in `text`, each once, in order of first appearance.
  std::vector<std::size_t> find(std::string_view text) const;

 private:
  struct State {
    std::vector<std::pair<unsigned char, int32_t>> next;  // sparse: memory grows with the titles' bytes
    int32_t fail = 0;
    int32_t output = -1;       // pattern ending here
    int32_t dict_suffix = -1;  // nearest state on the fail chain with an output
    uint32_t depth = 0;
  };
  int32_t step(int32_t s, unsigned char c) const;  // goto, following fail links
  std::vector<State> states_;
  std::size_t patterns_ = 0;
};

}  // namespace ruvllm::memory::detail
