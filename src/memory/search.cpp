// Search: the dense ranking (HNSW, filtered through the key table), the lexical one (the index in
// RAM, or FTS5), run side by side, and their fusion (fusion.cpp) into hits.
#include <algorithm>
#include <chrono>
#include <string>
#include <unordered_set>

#include "store.h"

namespace ruvllm::memory {

using detail::AnnMatch;
using detail::Ranked;
using detail::require_utf8;
using detail::Statement;

namespace {

int64_t micros_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
}

// FTS5 query: every word token quoted (so that no user text is FTS syntax), OR-ed; BM25 ranks.
// English function words are left out: their IDF is ~0, so they barely move BM25, but an OR over
// them matches nearly every row and made each query scan the whole table (Cranfield: 9 ms P50).
std::vector<std::string> query_phrases(const std::string& text) {
  // English function words, and "s" and "t": what is left of "queen's" and "don't" once split.
  static const std::unordered_set<std::string_view> kStopwords = {
      "a",    "an",     "and",  "are",   "as",   "at",   "be",   "been",  "but",   "by",    "can",   "could", "did",
      "do",   "does",   "for",  "from",  "had",  "has",  "have", "he",    "her",   "his",   "how",   "i",     "if",
      "in",   "into",   "is",   "it",    "its",  "may",  "must", "no",    "not",   "of",    "on",    "or",    "our",
      "she",  "should", "so",   "such",  "than", "that", "the",  "their", "them",  "then",  "there", "these", "they",
      "this", "those",  "to",   "was",   "we",   "were", "what", "when",  "where", "which", "while", "who",   "whom",
      "why",  "will",   "with", "would", "you",  "your", "s",    "t"};
  std::vector<std::string> tokens = embed::word_tokens(text);
  std::unordered_set<std::string> seen;
  std::vector<std::string> phrases;
  bool only_stopwords = true;
  for (const auto& t : tokens) only_stopwords = only_stopwords && kStopwords.count(t);
  for (const auto& word : tokens) {
    // A bag of words: "well-known" and "queen's" are OR-ed as their parts, as FTS5's tokenizer
    // splits them, rather than as FTS5 phrase queries (which the in-memory index does not do).
    std::size_t begin = 0;
    while (begin <= word.size()) {
      std::size_t end = word.find_first_of("-'", begin);
      if (end == std::string::npos) end = word.size();
      std::string t = word.substr(begin, end - begin);
      begin = end + 1;
      if (t.empty() || seen.size() >= 64) continue;
      if (!only_stopwords && kStopwords.count(t)) continue;  // a query of function words keeps them
      if (!seen.insert(t).second) continue;
      phrases.push_back(std::move(t));
    }
  }
  return phrases;
}

std::string fts_query(const std::vector<std::string>& phrases) {
  std::string q;
  for (const auto& t : phrases) {
    if (!q.empty()) q += " OR ";
    q += '"';
    for (char c : t) {
      if (c == '"') q += '"';
      q += c;
    }
    q += '"';
  }
  return q;
}

void check_query(const SearchQuery& query) {
  if (query.k == 0 || query.k > 10000) throw Error("search k must be in [1, 10000]");
  if (!(query.rrf_k > 0)) throw Error("search rrf_k must be positive");
  if (!(query.dense_weight >= 0 && query.dense_weight <= 1)) throw Error("search dense_weight must be in [0, 1]");
  require_utf8(query.text, "query text");
  if (query.mode == SearchMode::lexical && query.text.empty()) throw Error("lexical search needs query text");
  if (query.text.empty() && query.vector.empty()) throw Error("search needs query text or a vector");
}

}  // namespace

// ---- dense -------------------------------------------------------------------------------------

std::vector<float> Memory::Impl::query_vector(const SearchQuery& query, SearchResult& result) const {
  if (!query.vector.empty()) {
    check_vector(query.vector, "query vector");
    return query.vector;
  }
  if (!params.embedder) throw Error("dense search of text needs an embedder (or pass a vector)");
  const auto t0 = std::chrono::steady_clock::now();
  try {
    result.query_embedding = params.embedder->embed(query.text);
  } catch (const Error& e) {
    throw e.prefixed("query text: ");
  }
  result.embed_us = micros_since(t0);
  return result.query_embedding.vector;
}

std::vector<Ranked> Memory::Impl::dense(const std::vector<float>& q, const SearchQuery& query, std::size_t n) const {
  std::vector<AnnMatch> matches;
  if (filter_empty(query.filter)) {
    ann->search(q, n, query.expansion_search, matches);
  } else {
    std::shared_lock lock(meta_mutex);
    const auto predicate = filter_predicate(query.filter);
    if (!predicate) return {};
    ann->search(q, n, query.expansion_search, matches, &*predicate);
  }
  std::vector<Ranked> out;
  out.reserve(matches.size());
  for (const auto& m : matches) {
    // Similarity, higher is better: cosine and inner product as USearch's 1 - x, L2 negated.
    const double sim = params.index.metric == Metric::l2 ? -static_cast<double>(m.distance) : 1.0 - m.distance;
    out.push_back({m.key, sim});
  }
  return out;
}

// ---- lexical -----------------------------------------------------------------------------------

Memory::Impl::LexicalList Memory::Impl::lexical(const SearchQuery& query, std::size_t n) const {
  const auto phrases = query_phrases(query.text);
  if (phrases.empty()) return {};
  if (lexical_index) {
    if (auto terms = lexical_index->query_terms(phrases)) {
      std::vector<std::pair<uint64_t, double>> ranked;
      {
        std::shared_lock lock(meta_mutex);  // an empty filter passes every live row
        if (const auto predicate = filter_predicate(query.filter))
          ranked = lexical_index->search(*terms, n, *predicate);
      }
      LexicalList out;  // no ids: looked up for the hits kept
      out.ranked.reserve(ranked.size());
      for (const auto& [key, s] : ranked) out.ranked.push_back({key, s});
      return out;
    }
  }
  return lexical_fts(phrases, query.filter, n);
}

Memory::Impl::LexicalList Memory::Impl::lexical_fts(const std::vector<std::string>& phrases, const Filter& f,
                                                    std::size_t n) const {
  const std::string match = fts_query(phrases);
  LexicalList out;
  const auto read = [&](Statement& s) {
    while (s.step()) {
      out.ranked.push_back({static_cast<uint64_t>(s.integer(0)), s.real(2)});
      out.ids.push_back(s.text(1));
    }
  };
  if (filter_empty(f)) {
    // Unfiltered: rank inside FTS5 first and join only the top n (joining every match before the
    // sort cost ~2x on long queries).
    Reader reader(*this);
    Statement s(*reader,
                "SELECT n.key, n.id, f.s FROM (SELECT rowid, bm25(fts, 1.0, 1.0) AS s FROM fts WHERE fts MATCH ? "
                "ORDER BY s LIMIT ?) f JOIN nodes n ON n.key = f.rowid ORDER BY f.s");
    s.bind(1, match).bind(2, static_cast<int64_t>(n));
    read(s);
    return out;
  }
  std::string sql =
      "SELECT n.key, n.id, bm25(fts, 1.0, 1.0) AS s FROM fts JOIN nodes n ON n.key = fts.rowid WHERE fts MATCH ?";
  if (!f.types.empty()) {
    sql += " AND n.type IN (";
    for (std::size_t i = 0; i < f.types.size(); ++i) sql += i ? ",?" : "?";
    sql += ")";
  }
  if (!f.domain.empty()) sql += " AND n.domain = ?";
  for (std::size_t i = 0; i < f.tags.size(); ++i) {
    sql += " AND EXISTS (SELECT 1 FROM json_each(n.tags) WHERE value = ?)";
  }
  if (f.valid_at) sql += " AND (n.valid_from IS NULL OR n.valid_from <= ?) AND (n.valid_to IS NULL OR n.valid_to > ?)";
  sql += " ORDER BY s LIMIT ?";
  Reader reader(*this);
  Statement s(*reader, sql);
  int i = 1;
  s.bind(i++, match);
  for (NodeType t : f.types) s.bind(i++, to_string(t));
  if (!f.domain.empty()) s.bind(i++, f.domain);
  for (const auto& t : f.tags) s.bind(i++, t);
  if (f.valid_at) {
    s.bind(i++, *f.valid_at);
    s.bind(i++, *f.valid_at);
  }
  s.bind(i++, static_cast<int64_t>(n));
  read(s);
  return out;
}

// ---- hits --------------------------------------------------------------------------------------

void Memory::Impl::name_hits(const std::vector<detail::Fused>& fused, const std::vector<std::string>& lexical_ids,
                             std::vector<Hit>& hits) const {
  std::vector<std::string> ids(fused.size());
  for (std::size_t i = 0; i < fused.size(); ++i) {
    const auto r = static_cast<std::size_t>(fused[i].lexical_rank);
    if (fused[i].lexical_rank >= 0 && r < lexical_ids.size()) ids[i] = lexical_ids[r];
  }
  {
    std::shared_lock lock(meta_mutex);  // the ids of the hits kept, from RAM
    for (std::size_t i = 0; i < fused.size(); ++i) {
      const uint64_t key = fused[i].key;
      if (ids[i].empty() && key < key_meta.size() && key_meta[key].live) ids[i] = key_meta[key].id;
    }
  }
  for (std::size_t i = 0; i < fused.size(); ++i) {
    if (ids[i].empty()) continue;  // removed between the index search and the lookup
    const detail::Fused& f = fused[i];
    hits.push_back(Hit{std::move(ids[i]), f.score, f.dense_rank, f.lexical_rank, f.similarity, f.bm25});
  }
}

SearchResult Memory::search(const SearchQuery& query) const {
  check_query(query);
  const std::size_t n = query.candidates ? std::max(query.candidates, query.k) : std::max<std::size_t>(4 * query.k, 50);
  SearchResult result;
  const bool want_dense = query.mode != SearchMode::lexical;
  const bool want_lexical = query.mode != SearchMode::dense;

  // Lexical search on the sidecar while this thread embeds and searches the vectors.
  Impl::LexicalList lexical;
  auto lexical_search = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    lexical = impl_->lexical(query, query.mode == SearchMode::lexical ? query.k : n);
    result.lexical_us = micros_since(t0);
  };
  const bool run_lexical = want_lexical && !query.text.empty();
  std::optional<common::Sidecar::Task> lexical_task;
  if (run_lexical && want_dense) lexical_task.emplace(impl_->sidecar, lexical_search);

  std::vector<Ranked> dense;
  if (want_dense) {
    const std::vector<float> q = impl_->query_vector(query, result);
    result.query_has_vector = !q.empty();
    if (!q.empty()) {
      const auto t0 = std::chrono::steady_clock::now();
      dense = impl_->dense(q, query, query.mode == SearchMode::dense ? query.k : n);
      result.dense_us = micros_since(t0);
    }
  }
  if (lexical_task) {
    lexical_task->get();
  } else if (run_lexical) {
    lexical_search();
  }
  result.dense_candidates = dense.size();
  result.lexical_candidates = lexical.ranked.size();

  const auto t0 = std::chrono::steady_clock::now();
  const auto fused =
      detail::fuse(dense, lexical.ranked, {query.mode, query.fusion, query.rrf_k, query.dense_weight, query.k});
  impl_->name_hits(fused, lexical.ids, result.hits);
  result.fuse_us = micros_since(t0);
  return result;
}

std::string_view to_string(SearchMode mode) {
  switch (mode) {
    case SearchMode::dense: return "dense";
    case SearchMode::lexical: return "lexical";
    case SearchMode::hybrid: return "hybrid";
  }
  return "hybrid";
}

SearchMode parse_search_mode(std::string_view name) {
  for (auto mode : {SearchMode::dense, SearchMode::lexical, SearchMode::hybrid})
    if (name == to_string(mode)) return mode;
  throw Error("search mode '" + std::string(name) + "' is not dense, lexical or hybrid");
}

std::string_view to_string(Fusion fusion) { return fusion == Fusion::rrf ? "rrf" : "weighted"; }

Fusion parse_fusion(std::string_view name) {
  if (name == "rrf") return Fusion::rrf;
  if (name == "weighted") return Fusion::weighted;
  throw Error("fusion '" + std::string(name) + "' is not rrf or weighted");
}

}  // namespace ruvllm::memory
