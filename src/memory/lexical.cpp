#include "lexical.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include "ruvllm/memory.h"

namespace ruvllm::memory::detail {

struct FtsTokenizer::Impl {
  fts5_tokenizer api{};
  ::Fts5Tokenizer* instance = nullptr;
};

FtsTokenizer::FtsTokenizer(Db& db) : impl_(std::make_unique<Impl>()) {
  // The documented way to reach the FTS5 API: bind a pointer to `SELECT fts5(?1)`.
  fts5_api* fts = nullptr;
  {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db.handle(), "SELECT fts5(?1)", -1, &stmt, nullptr) == SQLITE_OK) {
      sqlite3_bind_pointer(stmt, 1, static_cast<void*>(&fts), "fts5_api_ptr", nullptr);
      sqlite3_step(stmt);
    }
    sqlite3_finalize(stmt);
  }
  if (!fts) throw Error("this SQLite has no FTS5");
  void* user_data = nullptr;
  if (fts->xFindTokenizer(fts, "porter", &user_data, &impl_->api) != SQLITE_OK)
    throw Error("FTS5 has no porter tokenizer");
  // Must match the table's `tokenize='porter unicode61 remove_diacritics 2'` (schema.cpp's schema).
  const char* args[] = {"unicode61", "remove_diacritics", "2"};
  if (impl_->api.xCreate(user_data, args, 3, &impl_->instance) != SQLITE_OK)
    throw Error("cannot create FTS5's porter tokenizer");
}

FtsTokenizer::~FtsTokenizer() {
  if (impl_->instance) impl_->api.xDelete(impl_->instance);
}

std::vector<std::string> FtsTokenizer::tokens(std::string_view text, bool query) const {
  std::vector<std::string> out;
  auto collect = [](void* ctx, int flags, const char* token, int n, int, int) -> int {
    // Colocated tokens (synonyms) are alternatives at one position; porter emits none.
    if (!(flags & FTS5_TOKEN_COLOCATED)) static_cast<std::vector<std::string>*>(ctx)->emplace_back(token, n);
    return SQLITE_OK;
  };
  const int rc = impl_->api.xTokenize(impl_->instance, &out, query ? FTS5_TOKENIZE_QUERY : FTS5_TOKENIZE_DOCUMENT,
                                      text.data(), static_cast<int>(text.size()), collect);
  if (rc != SQLITE_OK) throw Error("FTS5 tokenizer failed");
  return out;
}

void LexicalIndex::add(uint64_t key, std::string_view title, std::string_view text) {
  // Tokenize outside the lock: searches go on meanwhile.
  std::vector<std::string> tokens = tokenizer_->tokens(title, false);
  for (auto& t : tokenizer_->tokens(text, false)) tokens.push_back(std::move(t));
  std::unique_lock lock(mutex_);
  if (row_of_.count(key)) return;
  const auto row = static_cast<uint32_t>(rows_.size());
  Row r;
  r.key = key;
  r.length = static_cast<uint32_t>(tokens.size());
  r.live = true;
  std::unordered_map<uint32_t, uint32_t> freq;
  for (const auto& t : tokens) {
    auto [it, inserted] = term_ids_.try_emplace(t, static_cast<uint32_t>(postings_.size()));
    if (inserted) postings_.emplace_back();
    ++freq[it->second];
  }
  for (const auto& [term, f] : freq) {
    auto& list = postings_[term];
    // Keys ascend (AUTOINCREMENT), so appending keeps each list sorted by row; a replay of an older
    // key after a rebuild is the exception, hence the sorted insert.
    const auto pos =
        std::lower_bound(list.begin(), list.end(), row, [](const Posting& p, uint32_t r) { return p.row < r; });
    list.insert(pos, Posting{row, f});
    r.terms.push_back(term);
  }
  rows_.push_back(std::move(r));
  row_of_.emplace(key, row);
  ++live_rows_;
  total_tokens_ += tokens.size();
}

void LexicalIndex::remove(uint64_t key) {
  std::unique_lock lock(mutex_);
  const auto found = row_of_.find(key);
  if (found == row_of_.end()) return;
  const uint32_t row = found->second;
  Row& r = rows_[row];
  if (!r.live) return;
  for (uint32_t term : r.terms) {
    auto& list = postings_[term];
    const auto pos =
        std::lower_bound(list.begin(), list.end(), row, [](const Posting& p, uint32_t x) { return p.row < x; });
    if (pos != list.end() && pos->row == row) list.erase(pos);
  }
  r.terms = {};
  r.live = false;
  --live_rows_;
  total_tokens_ -= r.length;
}

std::optional<std::vector<std::string>> LexicalIndex::query_terms(const std::vector<std::string>& phrases) const {
  std::vector<std::string> terms;
  terms.reserve(phrases.size());
  for (const auto& p : phrases) {
    auto t = tokenizer_->tokens(p, true);
    if (t.size() != 1) return std::nullopt;
    terms.push_back(std::move(t.front()));
  }
  return terms;
}

std::vector<std::pair<uint64_t, double>> LexicalIndex::search(const std::vector<std::string>& terms, std::size_t n,
                                                              const std::function<bool(uint64_t)>& keep) const {
  std::shared_lock lock(mutex_);
  if (live_rows_ == 0 || n == 0) return {};
  // bm25() as FTS5 computes it (ext/fts5/fts5_aux.c): k1 = 1.2, b = 0.75, IDF clamped to 1e-6, one
  // term per phrase (so a term named by two phrases counts twice, as there).
  constexpr double k1 = 1.2, b = 0.75;
  const auto n_rows = static_cast<double>(live_rows_);
  const double avgdl = static_cast<double>(total_tokens_) / n_rows;
  // A term named k times adds k times its contribution: one pass over its postings, not k (a long
  // question names "the" and "of" a dozen times, and their lists hold most rows).
  std::vector<std::pair<uint32_t, uint32_t>> named;  // term id, times named
  named.reserve(terms.size());
  for (const auto& term : terms)
    if (const auto it = term_ids_.find(term); it != term_ids_.end()) named.emplace_back(it->second, 1);
  std::sort(named.begin(), named.end());
  std::size_t distinct = 0;
  for (std::size_t i = 0; i < named.size(); ++i) {
    if (distinct > 0 && named[distinct - 1].first == named[i].first) {
      ++named[distinct - 1].second;
    } else {
      named[distinct++] = named[i];
    }
  }
  named.resize(distinct);
  std::vector<double> score(rows_.size(), 0.0);
  std::vector<uint32_t> touched;
  for (const auto& [term, times] : named) {
    const auto& list = postings_[term];
    if (list.empty()) continue;
    const auto hits = static_cast<double>(list.size());
    double idf = std::log((n_rows - hits + 0.5) / (hits + 0.5));
    if (idf <= 0.0) idf = 1e-6;
    const double weight = idf * static_cast<double>(times);
    for (const Posting& p : list) {
      const double f = p.freq;
      const double dl = rows_[p.row].length;
      if (score[p.row] == 0.0) touched.push_back(p.row);
      score[p.row] += weight * (f * (k1 + 1.0)) / (f + k1 * (1 - b + b * dl / avgdl));
    }
  }
  std::vector<std::pair<uint64_t, double>> out;
  out.reserve(touched.size());
  for (uint32_t row : touched)
    if (keep(rows_[row].key)) out.emplace_back(rows_[row].key, -score[row]);
  const std::size_t keep_n = std::min(n, out.size());
  std::partial_sort(
      out.begin(), out.begin() + static_cast<std::ptrdiff_t>(keep_n), out.end(),
      [](const auto& x, const auto& y) { return x.second != y.second ? x.second < y.second : x.first < y.first; });
  out.resize(keep_n);
  return out;
}

std::size_t LexicalIndex::rows() const {
  std::shared_lock lock(mutex_);
  return live_rows_;
}

}  // namespace ruvllm::memory::detail
