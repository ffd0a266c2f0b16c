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
  const std::size_t tail_cost = params.count_tokens("\n\n");
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
    // Counted in parts: the caller caches a text's count, and the header (whose score changes
    // every request) is short. Parts meet at newlines, where tokenizers split anyway.
    const std::size_t head_cost = params.count_tokens(head);
    const std::size_t text_cost = params.count_tokens(c.text);
    std::size_t cost = head_cost + text_cost + tail_cost;
    std::string_view piece = c.text;
    if (cost > left) {
      if (left < params.max_tokens / 4 || left <= head_cost + tail_cost) break;  // too little room
      // A prefix that fits: guessed from the text's bytes per token, then shrunk — two or three
      // counts instead of a binary search's ~log2(bytes).
      const std::size_t room = left - head_cost - tail_cost;
      std::size_t bytes = text_cost ? c.text.size() * room / text_cost : c.text.size();
      std::size_t n = 0;
      for (;;) {
        piece = utf8_prefix(c.text, bytes);
        if (piece.empty()) break;
        n = params.count_tokens(piece);
        if (n <= room) break;
        bytes = std::min(piece.size() - 1,
                         static_cast<std::size_t>(static_cast<double>(piece.size()) * static_cast<double>(room) /
                                                  static_cast<double>(n) * 0.95));
      }
      if (piece.empty()) break;
      cost = head_cost + n + tail_cost;
      ++ctx.truncated;
    }
    ctx.text += head;
    ctx.text += piece;
    ctx.text += "\n\n";
    ctx.tokens += cost;
    ctx.used.push_back(idx);
    kept_words.push_back(std::move(words));
  }
  return ctx;
}

}  // namespace ruvllm::attention
