// Writes: validation, node and edge inserts, and change(), which commits a write and then brings
// the in-RAM tables and the indexes up to it (apply()); add, remove and supersede go through it.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/json_depth.h"
#include "common/uuid.h"
#include "store.h"
#include "text_match.h"

namespace ruvllm::memory {

using detail::Db;
using detail::require_utf8;
using detail::Statement;
using detail::Transaction;

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::span<const std::byte> as_bytes(const std::vector<float>& v) { return std::as_bytes(std::span(v)); }

}  // namespace

// ---- validation --------------------------------------------------------------------------------

std::string Memory::Impl::new_uuid() { return common::uuid_v4(rng); }

void Memory::Impl::check_vector(const std::vector<float>& v, std::string_view what) const {
  if (v.size() != dimension) {
    throw Error(std::string(what) + " has " + std::to_string(v.size()) + " dimensions, memory holds " +
                std::to_string(dimension));
  }
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) throw Error(std::string(what) + " has a non-finite value at " + std::to_string(i));
  }
  if (params.index.metric == Metric::cosine) {
    double norm = 0;
    for (float x : v) norm += static_cast<double>(x) * x;
    if (!(norm > 0)) throw Error(std::string(what) + " is all zeros (no direction for cosine)");
  }
}

void Memory::Impl::prepare(Node& n) const {
  if (n.text.empty()) throw Error("node text is empty");
  require_utf8(n.text, "node text");
  require_utf8(n.title, "node title");
  require_utf8(n.source, "node source");
  require_utf8(n.domain, "node domain");
  require_utf8(n.language, "node language");
  for (const auto& t : n.tags) {
    require_utf8(t, "node tag");
    if (t.empty()) throw Error("node tag is empty");
  }
  if (!(n.confidence >= 0 && n.confidence <= 1)) throw Error("node confidence must be in [0, 1]");
  if (n.valid_from && n.valid_to && *n.valid_to < *n.valid_from) throw Error("node valid_to is before valid_from");
  if (n.metadata.empty()) n.metadata = "{}";
  if (common::json_nests_deeper_than(n.metadata))
    throw Error("node metadata nests deeper than " + std::to_string(common::kMaxJsonDepth) + " levels");
  try {
    if (!nlohmann::json::parse(n.metadata).is_object()) throw Error("node metadata must be a JSON object");
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("node metadata is not valid JSON: ") + e.what());
  }
  if (!n.id.empty()) require_utf8(n.id, "node id");
  if (n.vector.empty()) {
    if (params.embedder) {
      try {
        n.vector = params.embedder->embed(n.text).vector;  // may stay empty: no known word
      } catch (const Error& e) {
        throw e.prefixed("node text: ");
      }
    }
  } else {
    check_vector(n.vector, "node vector");
  }
  if (n.timestamp_ms == 0) n.timestamp_ms = now_ms();
}

void Memory::Impl::check_edge(Edge& edge) const {
  if (edge.rel.empty()) throw Error("edge rel is empty");
  require_utf8(edge.rel, "edge rel");
  require_utf8(edge.created_by, "edge created_by");
  require_utf8(edge.id, "edge id");
  if (!std::isfinite(edge.weight) || !(edge.weight > 0)) throw Error("edge weight must be a positive number");
  if (!(edge.confidence >= 0 && edge.confidence <= 1)) throw Error("edge confidence must be in [0, 1]");
  if (edge.src == edge.dst) throw Error("edge from a node to itself (" + edge.src + ")");
  if (edge.timestamp_ms == 0) edge.timestamp_ms = now_ms();
}

// ---- writes (under write_mutex, inside a transaction) ------------------------------------------

uint64_t Memory::Impl::insert_node(Db& db, Node& n, Pending& pending) {
  if (n.id.empty()) n.id = new_uuid();
  Statement s(db,
              "INSERT INTO nodes(id, type, source, title, text, timestamp_ms, tags, domain, language, version, "
              "confidence, valid_from, valid_to, metadata) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  s.bind(1, n.id).bind(2, to_string(n.type)).bind(3, n.source).bind(4, n.title).bind(5, n.text);
  s.bind(6, n.timestamp_ms).bind(7, nlohmann::json(n.tags).dump()).bind(8, n.domain).bind(9, n.language);
  s.bind(10, n.version).bind(11, n.confidence).bind(12, n.valid_from).bind(13, n.valid_to).bind(14, n.metadata);
  try {
    s.run();
  } catch (const Error& e) {
    if (e.code() == ErrorCode::conflict) throw Error(ErrorCode::conflict, "node id " + n.id + " already exists");
    throw;
  }
  const auto key = static_cast<uint64_t>(db.last_insert_rowid());
  if (!n.vector.empty()) {
    Statement v(db, "INSERT INTO vectors(key, seq, data) VALUES (?, ?, ?)");
    v.bind(1, static_cast<int64_t>(key)).bind(2, static_cast<int64_t>(++seq)).bind_blob(3, as_bytes(n.vector)).run();
  }
  const auto bands = detail::band_hashes(detail::minhash(embed::word_tokens(n.text)));
  Statement m(db, "INSERT OR IGNORE INTO minhash(band, hash, key) VALUES (?, ?, ?)");
  for (std::size_t b = 0; b < bands.size(); ++b) {
    m.bind(1, static_cast<int64_t>(b)).bind(2, bands[b]).bind(3, static_cast<int64_t>(key)).run();
  }
  pending.added.emplace_back(key, &n);
  return key;
}

std::string Memory::Impl::upsert_edge(Db& db, Edge& edge, std::vector<uint64_t>& edge_ends) {
  const auto src = key_of(db, edge.src);
  if (!src) throw Error("edge source " + edge.src + " is not a node");
  const auto dst = key_of(db, edge.dst);
  if (!dst) throw Error("edge target " + edge.dst + " is not a node");
  if (edge.id.empty()) edge.id = new_uuid();
  Statement s(db,
              "INSERT INTO edges(id, src, dst, rel, weight, timestamp_ms, created_by, confidence) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(src, dst, rel) DO UPDATE SET weight = excluded.weight, "
              "timestamp_ms = excluded.timestamp_ms, created_by = excluded.created_by, "
              "confidence = excluded.confidence RETURNING id");
  s.bind(1, edge.id).bind(2, static_cast<int64_t>(*src)).bind(3, static_cast<int64_t>(*dst)).bind(4, edge.rel);
  s.bind(5, static_cast<double>(edge.weight)).bind(6, edge.timestamp_ms).bind(7, edge.created_by);
  s.bind(8, static_cast<double>(edge.confidence));
  try {
    if (s.step()) edge.id = s.text(0);
    s.reset();
  } catch (const Error& e) {
    if (e.code() == ErrorCode::conflict) throw Error(ErrorCode::conflict, "edge id " + edge.id + " already exists");
    throw;
  }
  edge_ends.push_back(*src);
  edge_ends.push_back(*dst);
  return edge.id;
}

template <typename Write, typename AfterCommit>
bool Memory::Impl::change(Write&& write, AfterCommit&& after_commit) {
  std::size_t changed = 0;
  {
    // write_mutex before in_flight, as in save_index(): a waiting save then holds off new changes
    // instead of being starved by them. in_flight stays held until the index has this change.
    std::unique_lock lock(write_mutex);
    std::shared_lock flight(in_flight);
    Pending pending;
    const uint64_t seq_before = seq;
    try {
      Transaction tx(*writer);
      if (!write(*writer, pending)) return false;
      commit_seq(*writer);
      tx.commit();
    } catch (...) {
      seq = seq_before;
      throw;
    }
    if (!pending.edge_ends.empty() || !pending.removed.empty())
      refresh_adjacency(*writer, std::move(pending.edge_ends), pending.removed);
    lock.unlock();
    after_commit();
    try {
      changed = apply(pending);
    } catch (const std::exception& e) {
      // Committed, so it must not look failed to the caller; the index is rebuilt on next open.
      index_stale = true;
      warn(std::string("vector index update failed after commit, rebuilt on next open: ") + e.what());
    }
  }
  note_changes(changed);
  return true;
}

std::size_t Memory::Impl::apply(const Pending& pending) {
  {
    std::unique_lock lock(meta_mutex);
    for (const auto& [key, node] : pending.added) set_key_meta(key, *node);
    for (uint64_t key : pending.removed) {
      if (key >= key_meta.size()) continue;
      key_meta[key].live = false;
      // Only if the id still names this key: changes apply after the writer lock is released, so
      // a re-add of the same id may have applied first.
      if (const auto it = key_of_id.find(key_meta[key].id); it != key_of_id.end() && it->second == key)
        key_of_id.erase(it);
      key_meta[key].id = std::string();  // frees it: a removed key never comes back
      key_meta[key].vector = std::vector<float>();
    }
  }
  if (lexical_index) {
    for (const auto& [key, node] : pending.added) lexical_index->add(key, node->title, node->text);
    for (uint64_t key : pending.removed) lexical_index->remove(key);
  }
  for (const auto& [key, node] : pending.added) {
    if (!node->vector.empty()) ann->add(key, node->vector);
  }
  for (uint64_t key : pending.removed) ann->remove(key);
  return pending.added.size() + pending.removed.size();
}

// ---- the public writes of nodes ----------------------------------------------------------------

std::string Memory::add(Node node) {
  std::vector<Node> one;
  one.push_back(std::move(node));
  return add_batch(std::move(one)).front();
}

std::vector<std::string> Memory::add_batch(std::vector<Node> nodes, std::vector<Edge> edges) {
  for (Edge& e : edges) impl_->check_edge(e);
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    try {
      impl_->prepare(nodes[i]);
    } catch (const Error& e) {
      if (nodes.size() > 1) throw e.prefixed("node " + std::to_string(i) + ": ");
      throw;
    }
  }
  impl_->change(
      [&](Db& db, Impl::Pending& pending) {
        for (Node& n : nodes) impl_->insert_node(db, n, pending);
        for (Edge& e : edges) impl_->upsert_edge(db, e, pending.edge_ends);
        return true;
      },
      [] {});
  std::vector<std::string> ids;
  for (const Node& n : nodes) ids.push_back(n.id);
  return ids;
}

bool Memory::remove(std::string_view id) {
  return impl_->change(
      [&](Db& db, Impl::Pending& pending) {
        const auto key = impl_->key_of(db, id);
        if (!key) return false;
        const auto k = static_cast<int64_t>(*key);
        Statement(db, "DELETE FROM minhash WHERE key = ?").bind(1, k).run();
        Statement(db, "DELETE FROM nodes WHERE key = ?").bind(1, k).run();
        Statement(db, "INSERT OR REPLACE INTO removed(key, seq) VALUES (?, ?)")
            .bind(1, k)
            .bind(2, static_cast<int64_t>(++impl_->seq))
            .run();
        pending.removed.push_back(*key);
        return true;
      },
      [] {});
}

std::string Memory::supersede(std::string_view id, Node replacement, int64_t valid_to_ms) {
  impl_->prepare(replacement);
  if (valid_to_ms == 0) valid_to_ms = now_ms();
  uint64_t old_key = 0;
  impl_->change(
      [&](Db& db, Impl::Pending& pending) {
        const auto key = impl_->key_of(db, id);
        if (!key) throw Error(ErrorCode::not_found, "supersede: unknown node " + std::string(id));
        old_key = *key;
        Statement from(db, "SELECT valid_from FROM nodes WHERE key = ?");
        from.bind(1, static_cast<int64_t>(old_key));
        if (from.step() && !from.is_null(0) && from.integer(0) > valid_to_ms)
          throw Error("supersede: valid_to is before the superseded node's valid_from");
        if (!replacement.valid_from) replacement.valid_from = valid_to_ms;
        if (replacement.valid_to && *replacement.valid_to < *replacement.valid_from)
          throw Error("supersede: the replacement's valid_to is before its valid_from");
        Statement(db, "UPDATE nodes SET valid_to = ? WHERE key = ?")
            .bind(1, valid_to_ms)
            .bind(2, static_cast<int64_t>(old_key))
            .run();
        const uint64_t new_key = impl_->insert_node(db, replacement, pending);
        Statement e(db,
                    "INSERT INTO edges(id, src, dst, rel, weight, timestamp_ms, created_by, confidence) "
                    "VALUES (?, ?, ?, 'supersedes', 1, ?, 'user', 1)");
        e.bind(1, impl_->new_uuid()).bind(2, static_cast<int64_t>(new_key)).bind(3, static_cast<int64_t>(old_key));
        e.bind(4, now_ms()).run();
        pending.edge_ends.push_back(new_key);
        pending.edge_ends.push_back(old_key);
        return true;
      },
      [&] {
        std::unique_lock lock(impl_->meta_mutex);
        if (old_key < impl_->key_meta.size()) impl_->key_meta[old_key].valid_to = valid_to_ms;
      });
  return replacement.id;
}

}  // namespace ruvllm::memory
