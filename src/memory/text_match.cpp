#include "text_match.h"

#include <algorithm>
#include <queue>

#include "common/hash.h"

namespace ruvllm::memory::detail {
namespace {

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

unsigned char fold(unsigned char c) { return c >= 'A' && c <= 'Z' ? static_cast<unsigned char>(c - 'A' + 'a') : c; }
bool is_word_byte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

}  // namespace

Signature minhash(const std::vector<std::string>& tokens) {
  Signature sig;
  sig.fill(~uint64_t{0});
  const std::size_t n = tokens.size() < 3 ? (tokens.empty() ? 0 : 1) : tokens.size() - 2;
  for (std::size_t i = 0; i < n; ++i) {
    uint64_t h = 1469598103934665603ull;
    for (std::size_t j = i; j < std::min(i + 3, tokens.size()); ++j) h = common::fnv1a(tokens[j], h ^ 0x20);
    for (std::size_t k = 0; k < kMinHashes; ++k) sig[k] = std::min(sig[k], mix(h ^ (k * 0x9e3779b97f4a7c15ull)));
  }
  return sig;
}

double jaccard_estimate(const Signature& a, const Signature& b) {
  std::size_t same = 0;
  for (std::size_t k = 0; k < kMinHashes; ++k) same += a[k] == b[k];
  return static_cast<double>(same) / kMinHashes;
}

std::array<int64_t, kBands> band_hashes(const Signature& s) {
  std::array<int64_t, kBands> bands{};
  for (std::size_t b = 0; b < kBands; ++b) {
    uint64_t h = mix(b + 1);
    for (std::size_t r = 0; r < kRows; ++r) h = mix(h ^ s[b * kRows + r]);
    bands[b] = static_cast<int64_t>(h);  // SQLite integers are signed
  }
  return bands;
}

namespace {
int32_t child(const std::vector<std::pair<unsigned char, int32_t>>& next, unsigned char c) {
  for (const auto& [byte, target] : next) {
    if (byte == c) return target;
  }
  return -1;
}
}  // namespace

AhoCorasick::AhoCorasick(const std::vector<std::string>& patterns, std::size_t min_length)
    : patterns_(patterns.size()) {
  states_.emplace_back();
  for (std::size_t p = 0; p < patterns.size(); ++p) {
    if (patterns[p].size() < min_length) continue;
    int32_t s = 0;
    for (unsigned char c : patterns[p]) {
      c = fold(c);
      int32_t t = child(states_[s].next, c);
      if (t < 0) {
        t = static_cast<int32_t>(states_.size());
        states_[s].next.emplace_back(c, t);
        State fresh;
        fresh.depth = states_[s].depth + 1;
        states_.push_back(std::move(fresh));
      }
      s = t;
    }
    if (states_[s].output < 0) states_[s].output = static_cast<int32_t>(p);  // first of equal titles wins
  }
  // Breadth-first: a state's fail link is the longest proper suffix of its path that is in the trie.
  std::queue<int32_t> queue;
  for (const auto& [c, t] : states_[0].next) queue.push(t);
  while (!queue.empty()) {
    const int32_t s = queue.front();
    queue.pop();
    const int32_t f = states_[s].fail;
    states_[s].dict_suffix = s == 0 ? -1 : (states_[f].output >= 0 ? f : states_[f].dict_suffix);
    for (const auto& [c, t] : states_[s].next) {
      states_[t].fail = s == 0 ? 0 : step(f, c);
      queue.push(t);
    }
  }
}

int32_t AhoCorasick::step(int32_t s, unsigned char c) const {
  while (true) {
    const int32_t t = child(states_[s].next, c);
    if (t >= 0) return t;
    if (s == 0) return 0;
    s = states_[s].fail;
  }
}

std::vector<std::size_t> AhoCorasick::find(std::string_view text) const {
  std::vector<std::size_t> found;
  std::vector<bool> seen(patterns_, false);
  int32_t s = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    s = step(s, fold(static_cast<unsigned char>(text[i])));
    const bool end_ok = i + 1 == text.size() || !is_word_byte(static_cast<unsigned char>(text[i + 1]));
    if (!end_ok) continue;
    for (int32_t o = states_[s].output >= 0 ? s : states_[s].dict_suffix; o >= 0; o = states_[o].dict_suffix) {
      const std::size_t start = i + 1 - states_[o].depth;
      const bool start_ok = start == 0 || !is_word_byte(static_cast<unsigned char>(text[start - 1]));
      const auto p = static_cast<std::size_t>(states_[o].output);
      if (start_ok && !seen[p]) {
        seen[p] = true;
        found.push_back(p);
      }
    }
  }
  return found;
}

}  // namespace ruvllm::memory::detail
