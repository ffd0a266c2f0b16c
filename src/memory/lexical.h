// The lexical index in RAM: FTS5's own tokenizer and FTS5's bm25(), without FTS5's per-row cost.
//
// FTS5 scores a query of P phrases in O(matching rows × P) through its auxiliary-function API; a
// 60-word question ORs ~40 terms that match nearly every row, 4 ms on 3,700 chunks. This index holds
// the same postings (term → rows, frequency) and row lengths, tokenized by the very tokenizer the
// FTS5 table uses (found through fts5_api), and sums each term's contribution over its postings
// only: the scores equal bm25(fts, 1.0, 1.0) (tests/memory compares them row by row). FTS5 stays the
// persisted form; this one is rebuilt when the memory opens and follows every committed change.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sqlite.h"

namespace ruvllm::memory::detail {

// FTS5's 'porter unicode61 remove_diacritics 2' tokenizer, called directly. Bound to the connection
// it was found through: keep that connection open while this lives. Thread-safe (FTS5's built-in
// tokenizers keep no state between calls).
class FtsTokenizer {
 public:
  explicit FtsTokenizer(Db& db);  // throws Error when SQLite lacks FTS5 or the tokenizer
  ~FtsTokenizer();
  FtsTokenizer(const FtsTokenizer&) = delete;
  FtsTokenizer& operator=(const FtsTokenizer&) = delete;

  // The terms of `text`, in order (a document's tokens, or one query phrase's).
  std::vector<std::string> tokens(std::string_view text, bool query) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class LexicalIndex {
 public:
  explicit LexicalIndex(std::shared_ptr<const FtsTokenizer> tokenizer) : tokenizer_(std::move(tokenizer)) {}

  // Rows are indexed as FTS5 indexes them: title and text, both columns' tokens counted in length
  // and frequency (the table's bm25 weights are 1, 1). Adding a key twice is a no-op; so is
  // removing an absent key, so that replays after a rebuild are safe.
  void add(uint64_t key, std::string_view title, std::string_view text);
  void remove(uint64_t key);

  // `phrases` as FTS5 parses `"p1" OR "p2" ...`: each one word that tokenizes to one term. Returns
  // nothing when a phrase tokenizes to several terms (a phrase query: the caller asks FTS5).
  std::optional<std::vector<std::string>> query_terms(const std::vector<std::string>& phrases) const;
  // The n best rows for the OR of `terms` that `keep(key)` accepts, best first, with FTS5's
  // bm25() value (negative; lower is better); ties by key.
  std::vector<std::pair<uint64_t, double>> search(const std::vector<std::string>& terms, std::size_t n,
                                                  const std::function<bool(uint64_t)>& keep) const;

  std::size_t rows() const;

 private:
  struct Posting {
    uint32_t row;  // index into rows_
    uint32_t freq;
  };
  struct Row {
    uint64_t key = 0;
    uint32_t length = 0;  // tokens in title + text
    bool live = false;
    std::vector<uint32_t> terms;  // distinct term ids, to undo on removal
  };

  std::shared_ptr<const FtsTokenizer> tokenizer_;
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, uint32_t> term_ids_;
  std::vector<std::vector<Posting>> postings_;  // by term id, by row ascending
  std::vector<Row> rows_;                       // in order of addition (keys ascend: AUTOINCREMENT)
  std::unordered_map<uint64_t, uint32_t> row_of_;
  std::size_t live_rows_ = 0;
  uint64_t total_tokens_ = 0;
};

}  // namespace ruvllm::memory::detail
