// The context builder: ranked candidates → "[Context i]" blocks within the router's budgets.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <set>

#include "common/utf8.h"
#include "ruvllm/attention.h"

namespace ruvllm::attention {
namespace {

// Lower-cased ASCII words (other bytes kept as they are): enough to see that two blocks repeat
// each other, without reaching into the embed room's tokenizer.
std::set<std::string> word_set(std::string_view text) {
  std::set<std::string> words;
  std::string w;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || u >= 0x80) {
      w.push_back(static_cast<char>(std::tolower(u)));
    } else if (!w.empty()) {
      words.insert(std::move(w));
      w.clear();
    }
  }
  if (!w.empty()) words.insert(std::move(w));
  return words;
}

double jaccard(const std::set<std::string>& a, const std::set<std::string>& b) {
  if (a.empty() && b.empty()) return 1;
  std::size_t inter = 0;
  for (const auto& w : a) inter += b.count(w);
  return static_cast<double>(inter) / static_cast<double>(a.size() + b.size() - inter);
}

// The longest prefix of `text` of at most `bytes` bytes that ends on a character boundary.
std::string_view utf8_prefix(std::string_view text, std::size_t bytes) {
  if (bytes >= text.size()) return text;
  while (bytes > 0 && (static_cast<unsigned char>(text[bytes]) & 0xC0) == 0x80) --bytes;
  return text.substr(0, bytes);
}

std::string header(std::size_t i, const Candidate& c) {
  char score[32];
  std::snprintf(score, sizeof score, "%.3f", c.score);
  return "[Context " + std::to_string(i) + "] (score=" + score + ", type=" + c.type + ", tags=" + c.tags + ")\n";
}

}  // namespace

Context build_context(const std::vector<Candidate>& candidates, const ContextParams& params) {
  if (!params.count_tokens) throw Error("context builder needs the model's token counter");
  for (const auto& c : candidates) {
    if (common::first_invalid_utf8(c.text) || common::first_invalid_utf8(c.type) ||
        common::first_invalid_utf8(c.tags)) {
      throw Error("context candidate is not valid UTF-8");
    }
    if (!std::isfinite(c.score)) throw Error("context candidate has a non-finite score");
  }
  std::vector<std::size_t> order(candidates.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return candidates[a].score > candidates[b].score; });
  Context ctx;
  std::vector<std::set<std::string>> kept_words;
  for (std::size_t idx : order) {
    if (ctx.used.size() >= params.max_docs) break;
    const Candidate& c = candidates[idx];
    auto words = word_set(c.text);
    bool repeat = false;
    for (const auto& k : kept_words) repeat = repeat || jaccard(words, k) >= params.duplicate_jaccard;
    if (repeat) {
      ++ctx.dropped_duplicates;
      continue;
    }
    const std::string head = header(ctx.used.size() + 1, c);
    const std::size_t left = params.max_tokens > ctx.tokens ? params.max_tokens - ctx.tokens : 0;
    std::string block = head + c.text + "\n\n";
    std::size_t cost = params.count_tokens(block);
    if (cost > left) {
      if (left < params.max_tokens / 4) break;  // too little room for a useful piece
      // Binary search the longest character-aligned prefix that fits.
      std::size_t lo = 0, hi = c.text.size();
      while (lo < hi) {
        const std::size_t mid = (lo + hi + 1) / 2;
        if (params.count_tokens(head + std::string(utf8_prefix(c.text, mid)) + "\n\n") <= left) {
          lo = mid;
        } else {
          hi = mid - 1;
        }
      }
      const std::string_view piece = utf8_prefix(c.text, lo);
      if (piece.empty()) break;
      block = head + std::string(piece) + "\n\n";
      cost = params.count_tokens(block);
      ++ctx.truncated;
    }
    ctx.text += block;
    ctx.tokens += cost;
    ctx.used.push_back(idx);
    kept_words.push_back(std::move(words));
  }
  ctx.tokens = params.count_tokens(ctx.text);  // exact: tokens may merge across block borders
  return ctx;
}

}  // namespace ruvllm::attention
