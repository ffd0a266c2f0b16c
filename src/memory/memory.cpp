// Memory: SQLite (source of truth) + HNSW (derived, caught up on open) + FTS5 + graph + dedup.
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <shared_mutex>
#include <unordered_map>
#include <unordered_set>

#include "ann.h"
#include "common/json_depth.h"
#include "common/sidecar.h"
#include "common/utf8.h"
#include "lexical.h"
#include "sqlite.h"
#include "text_match.h"

namespace ruvllm::memory {

using detail::AnnIndex;
using detail::AnnMatch;
using detail::Db;
using detail::Statement;
using detail::Transaction;

namespace {

constexpr int kSchemaVersion = 1;

constexpr std::string_view kTypeNames[] = {"document", "chunk",  "query", "qa",         "summary",
                                           "fact",     "memory", "trace", "agent_step", "tool_result"};

// Version 1. Vectors live in their own table so that scans of node rows never page them in.
// `seq` numbers every change the ANN index must replay (vector added, node removed).
constexpr std::string_view kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE nodes(
  key INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the index and tombstones refer to it
  id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, source TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',
  text TEXT NOT NULL, timestamp_ms INTEGER NOT NULL, tags TEXT NOT NULL DEFAULT '[]',
  domain TEXT NOT NULL DEFAULT '', language TEXT NOT NULL DEFAULT '', version INTEGER NOT NULL DEFAULT 1,
  confidence REAL NOT NULL DEFAULT 1, valid_from INTEGER, valid_to INTEGER, metadata TEXT NOT NULL DEFAULT '{}');
CREATE TABLE vectors(key INTEGER PRIMARY KEY REFERENCES nodes(key) ON DELETE CASCADE,
                     seq INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX vectors_seq ON vectors(seq);
CREATE TABLE removed(key INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
CREATE INDEX removed_seq ON removed(seq);
CREATE TABLE edges(
  key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
  src INTEGER NOT NULL REFERENCES nodes(key) ON DELETE CASCADE,
  dst INTEGER NOT NULL REFERENCES nodes(key) ON DELETE CASCADE,
  rel TEXT NOT NULL, weight REAL NOT NULL, timestamp_ms INTEGER NOT NULL, created_by TEXT NOT NULL,
  confidence REAL NOT NULL, UNIQUE(src, dst, rel));
CREATE INDEX edges_dst ON edges(dst, rel);
CREATE TABLE minhash(band INTEGER NOT NULL, hash INTEGER NOT NULL, key INTEGER NOT NULL,
                     PRIMARY KEY(band, hash, key)) WITHOUT ROWID;
CREATE INDEX minhash_key ON minhash(key);
CREATE TABLE notes(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE VIRTUAL TABLE fts USING fts5(title, text, content='nodes', content_rowid='key',
                                    tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER nodes_fts_insert AFTER INSERT ON nodes BEGIN
  INSERT INTO fts(rowid, title, text) VALUES (new.key, new.title, new.text); END;
CREATE TRIGGER nodes_fts_delete AFTER DELETE ON nodes BEGIN
  INSERT INTO fts(fts, rowid, title, text) VALUES ('delete', old.key, old.title, old.text); END;
CREATE TRIGGER nodes_fts_update AFTER UPDATE OF title, text ON nodes BEGIN
  INSERT INTO fts(fts, rowid, title, text) VALUES ('delete', old.key, old.title, old.text);
  INSERT INTO fts(rowid, title, text) VALUES (new.key, new.title, new.text); END;
)sql";

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t micros_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
}

void require_utf8(std::string_view text, std::string_view what) {
  if (auto at = common::first_invalid_utf8(text)) {
    throw Error(std::string(what) + " is not valid UTF-8 (byte " + std::to_string(*at) + ")");
  }
}

std::span<const std::byte> as_bytes(const std::vector<float>& v) { return std::as_bytes(std::span(v)); }

std::vector<float> to_floats(std::span<const std::byte> blob) {
  std::vector<float> v(blob.size() / sizeof(float));
  if (!v.empty()) std::memcpy(v.data(), blob.data(), v.size() * sizeof(float));
  return v;
}

// Per-key facts the dense filter needs without a database round trip.
struct KeyMeta {
  std::string id;  // so that a search's hits need no statement to name them
  bool live = false;
  uint8_t type = 0;
  uint32_t domain = 0;         // interned; 0 = none
  std::vector<uint32_t> tags;  // interned, sorted
  int64_t valid_from = INT64_MIN, valid_to = INT64_MAX;
  int64_t timestamp_ms = 0;   // with confidence and vector: what graph scoring reads, for expansions
  double confidence = 1;      // without rows
  std::vector<float> vector;  // MemoryParams::vectors_in_memory only
};

// Keys as a JSON array, bound to `IN (SELECT value FROM json_each(?))`: one SQL text for any list,
// so the statement is prepared once per connection instead of once per list.
std::string key_array(const std::vector<uint64_t>& keys) {
  std::string out = "[";
  char buf[24];
  for (uint64_t k : keys) {
    if (out.size() > 1) out += ',';
    out.append(buf,
               static_cast<std::size_t>(std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(k))));
  }
  return out += ']';
}

std::size_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::size_t>(st.st_size) : 0;
}

}  // namespace

std::string_view to_string(NodeType type) { return kTypeNames[static_cast<int>(type)]; }

NodeType parse_node_type(std::string_view name) {
  for (std::size_t i = 0; i < std::size(kTypeNames); ++i) {
    if (kTypeNames[i] == name) return static_cast<NodeType>(i);
  }
  std::string all;
  for (auto n : kTypeNames) all += (all.empty() ? "" : ", ") + std::string(n);
  throw Error("unknown node type '" + std::string(name) + "' (one of: " + all + ")");
}

struct Memory::Impl {
  MemoryParams params;
  std::string index_path;
  std::size_t dimension = 0;
  std::string space;

  // Writes: one connection, one writer at a time. Reads: a pool of connections (WAL lets readers
  // run beside the writer).
  std::mutex write_mutex;
  std::unique_ptr<Db> writer;
  // Bound to `writer`'s connection (declared after it, so destroyed before it). Null when
  // params.lexical_in_memory is off: lexical search then asks FTS5.
  std::shared_ptr<const detail::FtsTokenizer> tokenizer;
  std::unique_ptr<detail::LexicalIndex> lexical_index;
  mutable std::mutex readers_mutex;
  mutable std::vector<std::unique_ptr<Db>> readers;

  std::unique_ptr<AnnIndex> ann;
  uint64_t seq = 0;  // last change numbered (under write_mutex)
  std::atomic<std::size_t> unsaved{0};
  std::mutex save_mutex;
  // Held shared by every change from before its commit until the index has it (see save_index).
  std::shared_mutex in_flight;
  std::atomic<bool> index_stale{false};

  // The graph in RAM: per node its edges (both directions, heaviest then newest first) with every
  // column but the id, and the ids by edge key, so that expansion walks and returns the edges among
  // the chosen nodes without a statement (~180 bytes per edge: two 48-byte entries and the id). Derived like key_meta:
  // loaded on open, and every edge change reloads the lists of the nodes it touched before the writer lock is released.
  struct Adjacent {
    uint64_t other = 0, edge = 0;  // the node at the other end; the edge's key
    int64_t timestamp_ms = 0;
    float weight = 0, confidence = 0;
    uint32_t rel = 0, created_by = 0;  // interned in `graph_names`
    bool out = false;                  // this node is the edge's source
  };
  mutable std::shared_mutex graph_mutex;                  // guards the four below
  std::vector<std::vector<Adjacent>> adjacency;           // by node key
  std::vector<std::string> edge_ids;                      // by edge key
  std::unordered_map<std::string, uint32_t> graph_names;  // relations and creators, interned
  std::vector<std::string> graph_name_of;                 // and back

  mutable std::shared_mutex meta_mutex;                 // guards the three below
  std::vector<KeyMeta> key_meta;                        // by key
  std::unordered_map<std::string, uint64_t> key_of_id;  // live nodes: expansion's seeds without a statement
  std::unordered_map<std::string, uint32_t> interned;
  std::mt19937_64 rng{std::random_device{}()};  // UUIDs (under write_mutex)
  // Runs one half of a search or an expansion beside the other (see common/sidecar.h).
  mutable common::Sidecar sidecar;

  void warn(const std::string& message) const {
    if (params.warn) {
      params.warn(message);
    } else {
      std::fprintf(stderr, "ruvllm: memory: warning: %s\n", message.c_str());
    }
  }

  // ---- connections --------------------------------------------------------------------------

  class Reader {
   public:
    // `snapshot`: one read transaction for every statement run through this reader. Several reads
    // then see one state of the store, and pay SQLite's WAL read-lock handshake (a few fcntl and
    // fstat calls) once instead of once per statement.
    explicit Reader(const Impl& impl, bool snapshot = false) : impl_(impl) {
      std::lock_guard lock(impl_.readers_mutex);
      if (!impl_.readers.empty()) {
        db_ = std::move(impl_.readers.back());
        impl_.readers.pop_back();
      }
      if (!db_) {
        db_ = std::make_unique<Db>(impl_.params.path, false);
        db_->exec("PRAGMA query_only = 1");
        // Reads of a hot store come from memory: SQLite's default page cache is 2 MB per
        // connection, smaller than the FTS index of a few thousand documents.
        db_->exec("PRAGMA cache_size = -65536");
        db_->exec("PRAGMA mmap_size = 268435456");
      }
      if (snapshot) db_->exec("BEGIN");
    }
    ~Reader() {
      if (!sqlite3_get_autocommit(db_->handle())) {
        sqlite3_exec(db_->handle(), "COMMIT", nullptr, nullptr, nullptr);
        if (!sqlite3_get_autocommit(db_->handle())) return;  // stuck in a transaction: not reused
      }
      std::lock_guard lock(impl_.readers_mutex);
      impl_.readers.push_back(std::move(db_));
    }
    Db& operator*() { return *db_; }

   private:
    const Impl& impl_;
    std::unique_ptr<Db> db_;
  };

  // ---- open ---------------------------------------------------------------------------------

  void open() {
    if (params.path.empty()) throw Error("memory: no database path");
    index_path = params.path + ".usearch";
    writer = std::make_unique<Db>(params.path, false);
    Db& db = *writer;
    db.exec("PRAGMA journal_mode = WAL");
    db.exec(params.durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
    db.exec("PRAGMA foreign_keys = ON");
    migrate(db);
    check_space(db);
    load_key_meta(db);
    open_index(db);
    if (params.lexical_in_memory) load_lexical_index(db);
    std::unique_lock lock(graph_mutex);
    load_adjacency(db, {});
  }

  void forget_edge_ids(const std::vector<Adjacent>& list) {  // under graph_mutex (exclusive)
    for (const Adjacent& a : list)
      if (a.out) edge_ids[a.edge] = std::string();
  }

  // Reloads the adjacency lists of `keys` from the store (all lists when `keys` is empty). Under
  // graph_mutex (exclusive), and under write_mutex once the memory is open.
  void load_adjacency(Db& db, const std::vector<uint64_t>& keys) {
    auto slot = [&](uint64_t key) -> std::vector<Adjacent>& {
      if (key >= adjacency.size()) adjacency.resize(std::max<std::size_t>(key + 1, adjacency.size() * 3 / 2 + 16));
      return adjacency[key];
    };
    auto intern = [&](std::string name) {
      const auto [it, added] = graph_names.try_emplace(name, static_cast<uint32_t>(graph_name_of.size()));
      if (added) graph_name_of.push_back(std::move(name));
      return it->second;
    };
    auto add = [&](uint64_t node, const Statement& s, bool out) {
      const auto edge = static_cast<uint64_t>(s.integer(0));
      slot(node).push_back(Adjacent{static_cast<uint64_t>(s.integer(out ? 2 : 1)), edge, s.integer(5),
                                    static_cast<float>(s.real(4)), static_cast<float>(s.real(7)), intern(s.text(3)),
                                    intern(s.text(6)), out});
      if (edge >= edge_ids.size()) edge_ids.resize(std::max<std::size_t>(edge + 1, edge_ids.size() * 3 / 2 + 16));
      if (out) edge_ids[edge] = s.text(8);
    };
    constexpr const char* kColumns =
        "SELECT key, src, dst, rel, weight, timestamp_ms, created_by, confidence, id FROM edges";
    std::vector<uint64_t> touched;
    if (keys.empty()) {
      adjacency.clear();
      edge_ids.clear();
      Statement s(db, kColumns);
      while (s.step()) {
        add(static_cast<uint64_t>(s.integer(1)), s, true);
        add(static_cast<uint64_t>(s.integer(2)), s, false);
      }
      for (uint64_t k = 0; k < adjacency.size(); ++k) touched.push_back(k);
    } else {
      Statement out(db, std::string(kColumns) + " WHERE src = ?");
      Statement in(db, std::string(kColumns) + " WHERE dst = ?");
      for (uint64_t key : keys) {
        forget_edge_ids(slot(key));  // the edges that still exist get theirs back below
        slot(key).clear();
        out.bind(1, static_cast<int64_t>(key));
        while (out.step()) add(key, out, true);
        out.reset();
        in.bind(1, static_cast<int64_t>(key));
        while (in.step()) add(key, in, false);
        in.reset();
        touched.push_back(key);
      }
    }
    for (uint64_t key : touched) {
      auto& list = adjacency[key];
      std::sort(list.begin(), list.end(), [](const Adjacent& a, const Adjacent& b) {
        if (a.weight != b.weight) return a.weight > b.weight;
        if (a.timestamp_ms != b.timestamp_ms) return a.timestamp_ms > b.timestamp_ms;
        return a.edge < b.edge;
      });
      list.shrink_to_fit();
    }
  }

  // After a committed edge change: the lists of `keys` (and of removed nodes, emptied) follow it.
  void refresh_adjacency(Db& db, std::vector<uint64_t> keys, const std::vector<uint64_t>& removed = {}) {
    std::unique_lock lock(graph_mutex);
    for (uint64_t key : removed) {
      if (key >= adjacency.size()) continue;
      for (const Adjacent& a : adjacency[key]) keys.push_back(a.other);  // its neighbours lose the edges
      forget_edge_ids(adjacency[key]);
      adjacency[key].clear();
      adjacency[key].shrink_to_fit();
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    keys.erase(
        std::remove_if(keys.begin(), keys.end(),
                       [&](uint64_t k) { return std::find(removed.begin(), removed.end(), k) != removed.end(); }),
        keys.end());
    if (!keys.empty()) load_adjacency(db, keys);
  }

  void load_lexical_index(Db& db) {
    tokenizer = std::make_shared<detail::FtsTokenizer>(db);
    lexical_index = std::make_unique<detail::LexicalIndex>(tokenizer);
    Statement s(db, "SELECT key, title, text FROM nodes ORDER BY key");
    while (s.step()) lexical_index->add(static_cast<uint64_t>(s.integer(0)), s.text(1), s.text(2));
  }

  std::optional<std::string> meta_value(Db& db, std::string_view key) {
    Statement s(db, "SELECT value FROM meta WHERE key = ?");
    s.bind(1, key);
    if (s.step()) return s.text(0);
    return std::nullopt;
  }

  void set_meta(Db& db, std::string_view key, std::string_view value) {
    Statement s(db, "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    s.bind(1, key).bind(2, value).run();
  }

  void migrate(Db& db) {
    db.exec("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)");
    const auto stored = meta_value(db, "schema_version");
    const int version = stored ? std::atoi(stored->c_str()) : 0;
    if (version > kSchemaVersion) {
      throw Error(params.path + ": database schema version " + std::to_string(version) +
                  " is newer than this build understands (" + std::to_string(kSchemaVersion) +
                  "); upgrade ruvllm, the file is left untouched");
    }
    if (version == kSchemaVersion) return;
    Transaction tx(db);
    if (version == 0) db.exec(kSchemaV1);
    // Later versions: `if (version < 2) db.exec(kMigrateV1toV2);` and so on, in this transaction.
    set_meta(db, "schema_version", std::to_string(kSchemaVersion));
    set_meta(db, "seq", "0");
    tx.commit();
  }

  void check_space(Db& db) {
    const std::size_t wanted =
        params.dimension ? params.dimension : (params.embedder ? params.embedder->dimension() : 0);
    if (params.embedder && params.dimension && params.dimension != params.embedder->dimension()) {
      throw Error("memory: dimension " + std::to_string(params.dimension) + " differs from the embedder's " +
                  std::to_string(params.embedder->dimension()) + " (use embed::adapt to align them)");
    }
    const auto stored_dim = meta_value(db, "dimension");
    const auto stored_space = meta_value(db, "embedder");
    if (stored_dim) {
      dimension = static_cast<std::size_t>(std::stoull(*stored_dim));
      if (wanted && wanted != dimension) {
        throw Error(params.path + ": memory holds " + *stored_dim + "-d vectors (" + stored_space.value_or("?") +
                    "), asked for " + std::to_string(wanted) + "-d");
      }
      if (params.embedder && stored_space && *stored_space != params.embedder->name() && *stored_space != "") {
        throw Error(params.path + ": memory was built with embedder " + *stored_space + ", opened with " +
                    params.embedder->name() + " (their vectors are not comparable)");
      }
      space = stored_space.value_or("");
      if (space.empty() && params.embedder) {  // a vector-only memory adopts the first embedder
        space = params.embedder->name();
        set_meta(db, "embedder", space);
      }
    } else {
      if (!wanted) throw Error("memory: a new memory needs an embedder or a dimension");
      dimension = wanted;
      space = params.embedder ? params.embedder->name() : "";
      Transaction tx(db);
      set_meta(db, "dimension", std::to_string(dimension));
      set_meta(db, "embedder", space);
      tx.commit();
    }
    seq = std::stoull(meta_value(db, "seq").value_or("0"));
  }

  uint32_t intern(const std::string& s) {  // under meta_mutex (exclusive)
    if (s.empty()) return 0;
    auto [it, inserted] = interned.try_emplace(s, static_cast<uint32_t>(interned.size() + 1));
    return it->second;
  }

  void set_key_meta(uint64_t key, const Node& node) {  // under meta_mutex (exclusive)
    if (key >= key_meta.size()) key_meta.resize(std::max<std::size_t>(key + 1, key_meta.size() * 3 / 2 + 16));
    KeyMeta& m = key_meta[key];
    m.id = node.id;
    key_of_id[node.id] = key;
    m.live = true;
    m.type = static_cast<uint8_t>(node.type);
    m.domain = intern(node.domain);
    m.tags.clear();
    for (const auto& t : node.tags) m.tags.push_back(intern(t));
    std::sort(m.tags.begin(), m.tags.end());
    m.valid_from = node.valid_from.value_or(INT64_MIN);
    m.valid_to = node.valid_to.value_or(INT64_MAX);
    m.timestamp_ms = node.timestamp_ms;
    m.confidence = node.confidence;
    if (params.vectors_in_memory) m.vector = node.vector;
  }

  // A node as an expansion without rows gives it (under meta_mutex, shared; `key` live).
  Node scoring_facts(uint64_t key, std::vector<float> vector) const {
    const KeyMeta& m = key_meta[key];
    Node n;
    n.id = m.id;
    n.type = static_cast<NodeType>(m.type);
    n.timestamp_ms = m.timestamp_ms;
    n.confidence = m.confidence;
    if (m.valid_from != INT64_MIN) n.valid_from = m.valid_from;
    if (m.valid_to != INT64_MAX) n.valid_to = m.valid_to;
    n.vector = std::move(vector);
    return n;
  }

  void load_key_meta(Db& db) {
    Statement s(db,
                params.vectors_in_memory
                    ? "SELECT n.key, type, domain, tags, valid_from, valid_to, id, timestamp_ms, confidence, "
                      "v.data FROM nodes n LEFT JOIN vectors v ON v.key = n.key"
                    : "SELECT key, type, domain, tags, valid_from, valid_to, id, timestamp_ms, confidence FROM nodes");
    std::unique_lock lock(meta_mutex);
    while (s.step()) {
      Node n;
      n.id = s.text(6);
      n.timestamp_ms = s.integer(7);
      n.confidence = s.real(8);
      if (params.vectors_in_memory && !s.is_null(9)) n.vector = to_floats(s.blob(9));
      n.type = parse_node_type(s.text(1));
      n.domain = s.text(2);
      for (const auto& t : nlohmann::json::parse(s.text(3))) n.tags.push_back(t.get<std::string>());
      if (!s.is_null(4)) n.valid_from = s.integer(4);
      if (!s.is_null(5)) n.valid_to = s.integer(5);
      set_key_meta(static_cast<uint64_t>(s.integer(0)), n);
    }
  }

  std::size_t stored_vectors(Db& db) {
    Statement s(db, "SELECT count(*) FROM vectors");
    s.step();
    return static_cast<std::size_t>(s.integer(0));
  }

  void open_index(Db& db) {
    uint64_t indexed_seq = 0;
    std::string why;
    auto loaded = AnnIndex::load(index_path, dimension, params.index, indexed_seq, why);
    const std::size_t expected = stored_vectors(db);
    if (loaded && indexed_seq <= seq) {
      ann = std::make_unique<AnnIndex>(std::move(*loaded));
      // Replay what the store committed after the index was saved.
      std::size_t replayed = 0;
      Statement added(db, "SELECT key, data FROM vectors WHERE seq > ?");
      added.bind(1, static_cast<int64_t>(indexed_seq));
      while (added.step()) {
        ann->add(static_cast<uint64_t>(added.integer(0)), to_floats(added.blob(1)));
        ++replayed;
      }
      Statement removed(db, "SELECT key FROM removed WHERE seq > ?");
      removed.bind(1, static_cast<int64_t>(indexed_seq));
      while (removed.step()) {
        ann->remove(static_cast<uint64_t>(removed.integer(0)));
        ++replayed;
      }
      unsaved = replayed;
      if (ann->size() == expected) return;
      why = "index holds " + std::to_string(ann->size()) + " vectors, the store " + std::to_string(expected);
    } else if (loaded) {
      why = "index is newer than the store";
    }
    if (expected > 0 || why != "no index file") {
      warn("rebuilding the vector index of " + params.path + " from the store (" + why + ")");
    }
    ann = std::make_unique<AnnIndex>(dimension, params.index);
    Statement all(db, "SELECT key, data FROM vectors");
    while (all.step()) ann->add(static_cast<uint64_t>(all.integer(0)), to_floats(all.blob(1)));
    unsaved = expected + 1;  // save on close even when empty, so that the next open finds a file
  }

  void save_index() {
    std::lock_guard save_lock(save_mutex);
    uint64_t at;
    {
      // write_mutex first stops new changes (see change()); the exclusive in_flight then waits for
      // committed ones to reach the index, so that `at` never claims a change the index lacks.
      // Changes committed after this point are replayed on open, whether or not the save sees them.
      std::lock_guard lock(write_mutex);
      std::unique_lock flight(in_flight);
      at = seq;
      unsaved = 0;
    }
    if (index_stale) {  // an index update failed after its commit: let the next open rebuild
      std::remove(index_path.c_str());
      return;
    }
    ann->save(index_path, at);
  }

  void note_changes(std::size_t n) {
    if (!params.autosave_every || (unsaved += n) < params.autosave_every) return;
    try {
      save_index();
    } catch (const std::exception& e) {  // the change itself is committed: report, retry later
      unsaved += n;
      warn(std::string("could not save the vector index (it is caught up on open): ") + e.what());
    }
  }

  // ---- validation ---------------------------------------------------------------------------

  std::string new_uuid() {                                                        // under write_mutex
    const uint64_t hi = (rng() & 0xFFFFFFFFFFFF0FFFull) | 0x0000000000004000ull;  // version 4
    const uint64_t lo = (rng() & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;  // RFC 4122 variant
    char buf[37];
    std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                  static_cast<unsigned>((hi >> 16) & 0xFFFF), static_cast<unsigned>(hi & 0xFFFF),
                  static_cast<unsigned>(lo >> 48), static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFull));
    return buf;
  }

  void check_vector(const std::vector<float>& v, std::string_view what) const {
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

  // Validates and completes a node for insertion (embedding its text when it brings no vector).
  void prepare(Node& n) const {
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
        } catch (const embed::Error& e) {
          throw Error(std::string("node text: ") + e.what());
        }
      }
    } else {
      check_vector(n.vector, "node vector");
    }
    if (n.timestamp_ms == 0) n.timestamp_ms = now_ms();
  }

  // ---- writes (under write_mutex, inside a transaction) --------------------------------------

  struct Pending {  // applied to the index and key_meta after the commit
    std::vector<std::pair<uint64_t, const Node*>> added;
    std::vector<uint64_t> removed;
    std::vector<uint64_t> edge_ends;  // nodes whose edges changed
  };

  uint64_t insert_node(Db& db, Node& n, Pending& pending) {
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
      if (std::string(e.what()).find("UNIQUE") != std::string::npos) throw Error("node id " + n.id + " already exists");
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

  void check_edge(Edge& edge) const {
    if (edge.rel.empty()) throw Error("edge rel is empty");
    require_utf8(edge.rel, "edge rel");
    require_utf8(edge.created_by, "edge created_by");
    require_utf8(edge.id, "edge id");
    if (!std::isfinite(edge.weight) || !(edge.weight > 0)) throw Error("edge weight must be a positive number");
    if (!(edge.confidence >= 0 && edge.confidence <= 1)) throw Error("edge confidence must be in [0, 1]");
    if (edge.src == edge.dst) throw Error("edge from a node to itself (" + edge.src + ")");
    if (edge.timestamp_ms == 0) edge.timestamp_ms = now_ms();
  }

  // Inserts, or updates the edge with the same (src, dst, rel); returns its id. Under write_mutex.
  std::string upsert_edge(Db& db, Edge& edge, std::vector<uint64_t>& edge_ends) {
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
      if (std::string(e.what()).find("UNIQUE") != std::string::npos)
        throw Error("edge id " + edge.id + " already exists");
      throw;
    }
    edge_ends.push_back(*src);
    edge_ends.push_back(*dst);
    return edge.id;
  }

  void commit_seq(Db& db) { set_meta(db, "seq", std::to_string(seq)); }

  // Runs `write(db, pending)` in one transaction under the writer lock (it returns false when there
  // is nothing to do), then brings key_meta and the index up to the commit: `after_commit()` first,
  // for what apply() does not know about. Returns whether anything was written.
  template <typename Write, typename AfterCommit>
  bool change(Write&& write, AfterCommit&& after_commit) {
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

  // Brings key_meta and the index up to a committed change; returns how many changes it was.
  std::size_t apply(const Pending& pending) {
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

  std::optional<uint64_t> key_of(Db& db, std::string_view id) const {
    Statement s(db, "SELECT key FROM nodes WHERE id = ?");
    s.bind(1, id);
    if (s.step()) return static_cast<uint64_t>(s.integer(0));
    return std::nullopt;
  }

  // ---- reads --------------------------------------------------------------------------------

  static constexpr std::string_view kNodeColumns =
      "n.key, n.id, n.type, n.source, n.title, n.text, n.timestamp_ms, n.tags, n.domain, n.language, n.version, "
      "n.confidence, n.valid_from, n.valid_to, n.metadata";

  static Node read_node(const Statement& s) {  // columns as kNodeColumns
    Node n;
    n.id = s.text(1);
    n.type = parse_node_type(s.text(2));
    n.source = s.text(3);
    n.title = s.text(4);
    n.text = s.text(5);
    n.timestamp_ms = s.integer(6);
    if (const std::string tags = s.text(7); tags != "[]")  // most nodes: no tags, no parse
      for (const auto& t : nlohmann::json::parse(tags)) n.tags.push_back(t.get<std::string>());
    n.domain = s.text(8);
    n.language = s.text(9);
    n.version = static_cast<int>(s.integer(10));
    n.confidence = s.real(11);
    if (!s.is_null(12)) n.valid_from = s.integer(12);
    if (!s.is_null(13)) n.valid_to = s.integer(13);
    n.metadata = s.text(14);
    return n;
  }

  bool passes(const Filter& f, const KeyMeta& m, const std::vector<uint32_t>& tag_ids, uint32_t domain_id) const {
    if (!m.live) return false;
    if (!f.types.empty() && std::find(f.types.begin(), f.types.end(), static_cast<NodeType>(m.type)) == f.types.end()) {
      return false;
    }
    if (!f.domain.empty() && m.domain != domain_id) return false;
    for (uint32_t t : tag_ids) {
      if (!std::binary_search(m.tags.begin(), m.tags.end(), t)) return false;
    }
    if (f.valid_at && !(m.valid_from <= *f.valid_at && *f.valid_at < m.valid_to)) return false;
    return true;
  }

  // `filter` as a test of keys; nullopt when nothing can pass (a tag or domain never seen).
  // Under meta_mutex (shared) for as long as the predicate is used.
  std::optional<std::function<bool(uint64_t)>> filter_predicate(const Filter& filter) const {
    std::vector<uint32_t> tag_ids;
    uint32_t domain_id = 0;
    for (const auto& t : filter.tags) {
      auto it = interned.find(t);
      if (it == interned.end()) return std::nullopt;
      tag_ids.push_back(it->second);
    }
    if (!filter.domain.empty()) {
      auto it = interned.find(filter.domain);
      if (it == interned.end()) return std::nullopt;
      domain_id = it->second;
    }
    return [this, &filter, tag_ids = std::move(tag_ids), domain_id](uint64_t key) {
      return key < key_meta.size() && passes(filter, key_meta[key], tag_ids, domain_id);
    };
  }

  static bool filter_empty(const Filter& f) {
    return f.types.empty() && f.domain.empty() && f.tags.empty() && !f.valid_at;
  }

  std::vector<std::pair<uint64_t, double>> dense(const std::vector<float>& q, const SearchQuery& query,
                                                 std::size_t n) const {
    std::vector<AnnMatch> matches;
    if (filter_empty(query.filter)) {
      ann->search(q, n, query.expansion_search, matches);
    } else {
      std::shared_lock lock(meta_mutex);
      const auto predicate = filter_predicate(query.filter);
      if (!predicate) return {};
      ann->search(q, n, query.expansion_search, matches, &*predicate);
    }
    std::vector<std::pair<uint64_t, double>> out;
    out.reserve(matches.size());
    for (const auto& m : matches) {
      // Similarity, higher is better: cosine and inner product as USearch's 1 - x, L2 negated.
      const double sim = params.index.metric == Metric::l2 ? -static_cast<double>(m.distance) : 1.0 - m.distance;
      out.emplace_back(m.key, sim);
    }
    return out;
  }

  // FTS5 query: every word token quoted (so that no user text is FTS syntax), OR-ed; BM25 ranks.
  // English function words are left out: their IDF is ~0, so they barely move BM25, but an OR over
  // them matches nearly every row and made each query scan the whole table (Cranfield: 9 ms P50).
  static std::vector<std::string> query_phrases(const std::string& text) {
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

  static std::string fts_query(const std::vector<std::string>& phrases) {
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

  std::vector<std::tuple<uint64_t, std::string, double>> lexical(const SearchQuery& query, std::size_t n) const {
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
        std::vector<std::tuple<uint64_t, std::string, double>> out;  // ids: looked up for the hits kept
        out.reserve(ranked.size());
        for (const auto& [key, s] : ranked) out.emplace_back(key, std::string(), s);
        return out;
      }
    }
    const std::string match = fts_query(phrases);
    const Filter& f = query.filter;
    if (filter_empty(f)) {
      // Unfiltered: rank inside FTS5 first and join only the top n (joining every match before the
      // sort cost ~2x on long queries).
      Reader reader(*this);
      Statement s(*reader,
                  "SELECT n.key, n.id, f.s FROM (SELECT rowid, bm25(fts, 1.0, 1.0) AS s FROM fts WHERE fts MATCH ? "
                  "ORDER BY s LIMIT ?) f JOIN nodes n ON n.key = f.rowid ORDER BY f.s");
      s.bind(1, match).bind(2, static_cast<int64_t>(n));
      std::vector<std::tuple<uint64_t, std::string, double>> out;
      while (s.step()) out.emplace_back(static_cast<uint64_t>(s.integer(0)), s.text(1), s.real(2));
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
    if (f.valid_at)
      sql += " AND (n.valid_from IS NULL OR n.valid_from <= ?) AND (n.valid_to IS NULL OR n.valid_to > ?)";
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
    std::vector<std::tuple<uint64_t, std::string, double>> out;
    while (s.step()) out.emplace_back(static_cast<uint64_t>(s.integer(0)), s.text(1), s.real(2));
    return out;
  }
};

Memory::Memory(MemoryParams params) : impl_(std::make_unique<Impl>()) {
  impl_->params = std::move(params);
  impl_->open();
}

Memory::~Memory() {
  try {
    if (impl_ && impl_->ann && impl_->unsaved > 0) impl_->save_index();
  } catch (const std::exception& e) {
    impl_->warn(std::string("could not save the index on close (it is rebuilt on open): ") + e.what());
  }
}

const embed::Embedder* Memory::embedder() const { return impl_->params.embedder.get(); }

std::string Memory::add(Node node) {
  std::vector<Node> one;
  one.push_back(std::move(node));
  return add_batch(std::move(one)).front();
}

std::optional<std::string> Memory::note(std::string_view key) const {
  Impl::Reader reader(*impl_);
  Statement s(*reader, "SELECT value FROM notes WHERE key = ?");
  s.bind(1, key);
  if (s.step()) return s.text(0);
  return std::nullopt;
}

void Memory::set_note(std::string_view key, std::string_view value) {
  require_utf8(key, "note key");
  require_utf8(value, "note value");
  std::lock_guard lock(impl_->write_mutex);
  Statement(*impl_->writer,
            "INSERT INTO notes(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
      .bind(1, key)
      .bind(2, value)
      .run();
}

std::vector<std::string> Memory::add_batch(std::vector<Node> nodes, std::vector<Edge> edges) {
  for (Edge& e : edges) impl_->check_edge(e);
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    try {
      impl_->prepare(nodes[i]);
    } catch (const Error& e) {
      throw Error(nodes.size() > 1 ? "node " + std::to_string(i) + ": " + e.what() : e.what());
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

std::optional<Node> Memory::get(std::string_view id, bool with_vector) const {
  Impl::Reader reader(*impl_);
  Statement s(*reader, "SELECT " + std::string(Impl::kNodeColumns) + " FROM nodes n WHERE n.id = ?",
              Statement::Cached{});
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  Node n = Impl::read_node(s);
  if (with_vector) {
    Statement v(*reader, "SELECT data FROM vectors WHERE key = ?", Statement::Cached{});
    v.bind(1, s.integer(0));
    if (v.step()) n.vector = to_floats(v.blob(0));
  }
  return n;
}

std::vector<std::optional<Node>> Memory::get_many(const std::vector<std::string>& ids, bool with_vector) const {
  std::vector<std::optional<Node>> out(ids.size());
  if (ids.empty()) return out;
  for (const auto& id : ids) require_utf8(id, "node id");
  // By id in the store, as get() reads one: the ids as one JSON array (one SQL text for any list).
  std::unordered_map<std::string_view, std::vector<std::size_t>> positions;  // an id asked twice gets two copies
  for (std::size_t i = 0; i < ids.size(); ++i) positions[ids[i]].push_back(i);
  Impl::Reader reader(*impl_);
  Statement s(*reader,
              with_vector ? "SELECT " + std::string(Impl::kNodeColumns) +
                                ", v.data FROM nodes n LEFT JOIN vectors v ON v.key = n.key "
                                "WHERE n.id IN (SELECT value FROM json_each(?))"
                          : "SELECT " + std::string(Impl::kNodeColumns) +
                                " FROM nodes n WHERE n.id IN (SELECT value FROM json_each(?))",
              Statement::Cached{});
  s.bind(1, nlohmann::json(ids).dump());
  while (s.step()) {
    Node n = Impl::read_node(s);
    if (with_vector && !s.is_null(15)) n.vector = to_floats(s.blob(15));
    const auto& at = positions.at(n.id);
    for (std::size_t k = 1; k < at.size(); ++k) out[at[k]] = n;
    out[at.front()] = std::move(n);
  }
  return out;
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
        if (!key) throw Error("supersede: unknown node " + std::string(id));
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

namespace {
// Steps a statement ending in `RETURNING src, dst` to completion; the endpoints it touched.
std::vector<uint64_t> touched_ends(Statement& s) {
  std::vector<uint64_t> ends;
  while (s.step()) {
    ends.push_back(static_cast<uint64_t>(s.integer(0)));
    ends.push_back(static_cast<uint64_t>(s.integer(1)));
  }
  s.reset();
  return ends;
}
}  // namespace

std::string Memory::link(Edge edge) {
  impl_->check_edge(edge);
  std::lock_guard lock(impl_->write_mutex);
  std::vector<uint64_t> ends;
  std::string id = impl_->upsert_edge(*impl_->writer, edge, ends);
  impl_->refresh_adjacency(*impl_->writer, std::move(ends));
  return id;
}

bool Memory::unlink(std::string_view edge_id) {
  std::lock_guard lock(impl_->write_mutex);
  Statement s(*impl_->writer, "DELETE FROM edges WHERE id = ? RETURNING src, dst");
  s.bind(1, edge_id);
  auto ends = touched_ends(s);
  if (ends.empty()) return false;
  impl_->refresh_adjacency(*impl_->writer, std::move(ends));
  return true;
}

namespace {
constexpr std::string_view kEdgeSelect =
    "SELECT e.id, s.id, d.id, e.rel, e.weight, e.timestamp_ms, e.created_by, e.confidence, e.src, e.dst "
    "FROM edges e JOIN nodes s ON s.key = e.src JOIN nodes d ON d.key = e.dst ";

Edge read_edge(const Statement& s) {
  return Edge{s.text(0),
              s.text(1),
              s.text(2),
              s.text(3),
              static_cast<float>(s.real(4)),
              s.integer(5),
              s.text(6),
              static_cast<float>(s.real(7))};
}
}  // namespace

std::vector<Edge> Memory::edges(std::string_view node_id, Direction direction, std::string_view rel) const {
  Impl::Reader reader(*impl_);
  const auto key = impl_->key_of(*reader, node_id);
  if (!key) throw Error("unknown node " + std::string(node_id));
  std::vector<Edge> out;
  const auto run = [&](std::string_view column) {
    Statement s(*reader, std::string(kEdgeSelect) + "WHERE e." + std::string(column) + " = ?" +
                             (rel.empty() ? "" : " AND e.rel = ?") + " ORDER BY e.weight DESC, e.timestamp_ms DESC");
    s.bind(1, static_cast<int64_t>(*key));
    if (!rel.empty()) s.bind(2, rel);
    while (s.step()) out.push_back(read_edge(s));
  };
  if (direction != Direction::in) run("src");
  if (direction != Direction::out) run("dst");
  return out;
}

void Memory::set_weight(std::string_view edge_id, float weight) {
  if (!std::isfinite(weight) || !(weight > 0)) throw Error("edge weight must be a positive number");
  std::lock_guard lock(impl_->write_mutex);
  Statement s(*impl_->writer, "UPDATE edges SET weight = ? WHERE id = ? RETURNING src, dst");
  s.bind(1, static_cast<double>(weight)).bind(2, edge_id);
  auto ends = touched_ends(s);
  if (ends.empty()) throw Error("unknown edge " + std::string(edge_id));
  impl_->refresh_adjacency(*impl_->writer, std::move(ends));
}

std::size_t Memory::prune_edges(float min_weight, int64_t older_than_ms) {
  std::lock_guard lock(impl_->write_mutex);
  Statement s(*impl_->writer, "DELETE FROM edges WHERE weight < ? AND timestamp_ms < ? RETURNING src, dst");
  s.bind(1, static_cast<double>(min_weight)).bind(2, older_than_ms);
  auto ends = touched_ends(s);
  const std::size_t deleted = ends.size() / 2;
  if (deleted) impl_->refresh_adjacency(*impl_->writer, std::move(ends));
  return deleted;
}

SearchResult Memory::search(const SearchQuery& query) const {
  if (query.k == 0 || query.k > 10000) throw Error("search k must be in [1, 10000]");
  if (!(query.rrf_k > 0)) throw Error("search rrf_k must be positive");
  if (!(query.dense_weight >= 0 && query.dense_weight <= 1)) throw Error("search dense_weight must be in [0, 1]");
  require_utf8(query.text, "query text");
  const std::size_t n = query.candidates ? std::max(query.candidates, query.k) : std::max<std::size_t>(4 * query.k, 50);
  SearchResult result;
  const bool want_dense = query.mode != SearchMode::lexical;
  const bool want_lexical = query.mode != SearchMode::dense;
  if (query.mode == SearchMode::lexical && query.text.empty()) throw Error("lexical search needs query text");
  if (query.text.empty() && query.vector.empty()) throw Error("search needs query text or a vector");

  // Lexical search on the sidecar while this thread embeds and searches the vectors.
  std::vector<std::tuple<uint64_t, std::string, double>> lexical;
  auto lexical_search = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    lexical = impl_->lexical(query, query.mode == SearchMode::lexical ? query.k : n);
    result.lexical_us = micros_since(t0);
  };
  const bool run_lexical = want_lexical && !query.text.empty();
  std::optional<common::Sidecar::Task> lexical_task;
  if (run_lexical && want_dense) lexical_task.emplace(impl_->sidecar, lexical_search);

  std::vector<std::pair<uint64_t, double>> dense;
  if (want_dense) {
    std::vector<float> q = query.vector;
    if (q.empty()) {
      if (!impl_->params.embedder) throw Error("dense search of text needs an embedder (or pass a vector)");
      const auto t0 = std::chrono::steady_clock::now();
      try {
        result.query_embedding = impl_->params.embedder->embed(query.text);
        q = result.query_embedding.vector;
      } catch (const embed::Error& e) {
        throw Error(std::string("query text: ") + e.what());
      }
      result.embed_us = micros_since(t0);
    } else {
      impl_->check_vector(q, "query vector");
    }
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
  result.lexical_candidates = lexical.size();

  const auto t0 = std::chrono::steady_clock::now();
  struct Fused {
    std::string id;
    double score = 0;
    int dense_rank = -1, lexical_rank = -1;
    double similarity = 0, bm25 = 0;
  };
  std::unordered_map<uint64_t, Fused> fused;
  double dmin = 0, dmax = 0, lmin = 0, lmax = 0;
  if (!dense.empty()) {
    dmin = dense.back().second;
    dmax = dense.front().second;
  }
  if (!lexical.empty()) {  // FTS5's bm25() is negative: lower is better
    lmin = -std::get<2>(lexical.back());
    lmax = -std::get<2>(lexical.front());
  }
  const auto norm = [](double x, double lo, double hi) { return hi > lo ? (x - lo) / (hi - lo) : 1.0; };
  for (std::size_t r = 0; r < dense.size(); ++r) {
    Fused& f = fused[dense[r].first];
    f.dense_rank = static_cast<int>(r);
    f.similarity = dense[r].second;
  }
  for (std::size_t r = 0; r < lexical.size(); ++r) {
    Fused& f = fused[std::get<0>(lexical[r])];
    f.lexical_rank = static_cast<int>(r);
    f.bm25 = -std::get<2>(lexical[r]);
    f.id = std::get<1>(lexical[r]);
  }
  for (auto& [key, f] : fused) {
    if (query.mode == SearchMode::dense) {
      f.score = f.similarity;
    } else if (query.mode == SearchMode::lexical) {
      f.score = f.bm25;
    } else if (query.fusion == Fusion::rrf) {
      if (f.dense_rank >= 0) f.score += 1.0 / (query.rrf_k + f.dense_rank + 1);
      if (f.lexical_rank >= 0) f.score += 1.0 / (query.rrf_k + f.lexical_rank + 1);
    } else {
      if (f.dense_rank >= 0) f.score += query.dense_weight * norm(f.similarity, dmin, dmax);
      if (f.lexical_rank >= 0) f.score += (1 - query.dense_weight) * norm(f.bm25, lmin, lmax);
    }
  }
  std::vector<std::pair<uint64_t, Fused*>> order;
  order.reserve(fused.size());
  for (auto& [key, f] : fused) order.emplace_back(key, &f);
  const std::size_t keep = std::min(query.k, order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(),
                    [](const auto& a, const auto& b) {
                      return a.second->score != b.second->score ? a.second->score > b.second->score : a.first < b.first;
                    });
  order.resize(keep);
  {
    std::shared_lock lock(impl_->meta_mutex);  // the ids of the hits kept, from RAM
    for (auto& [key, f] : order)
      if (f->id.empty() && key < impl_->key_meta.size() && impl_->key_meta[key].live) f->id = impl_->key_meta[key].id;
  }
  for (auto& [key, f] : order) {
    if (f->id.empty()) continue;  // removed between the index search and the lookup
    result.hits.push_back(Hit{std::move(f->id), f->score, f->dense_rank, f->lexical_rank, f->similarity, f->bm25});
  }
  result.fuse_us = micros_since(t0);
  return result;
}

Subgraph Memory::expand(const std::vector<std::string>& seeds, const ExpandParams& params) const {
  if (params.hops < 0 || params.hops > 8) throw Error("expand: hops must be in [0, 8]");
  if (params.max_nodes == 0) throw Error("expand: max_nodes must be positive");
  std::vector<uint64_t> keys;
  std::vector<int> depth;
  std::unordered_map<uint64_t, std::size_t> position;
  {
    std::shared_lock lock(impl_->meta_mutex);
    for (const auto& id : seeds) {
      const auto found = impl_->key_of_id.find(id);
      if (found == impl_->key_of_id.end()) throw Error("expand: unknown seed node " + id);
      const uint64_t key = found->second;
      if (position.count(key) || keys.size() >= params.max_nodes) continue;
      position[key] = keys.size();
      keys.push_back(key);
      depth.push_back(0);
    }
  }
  // The walk, and the edges among the nodes it chose, run on the graph in RAM; node rows come from
  // the store.
  {
    std::shared_lock lock(impl_->graph_mutex);
    const auto& adjacency = impl_->adjacency;
    std::vector<uint32_t> wanted;  // relation filter, interned; an unknown name matches nothing
    for (const auto& r : params.relations)
      if (auto it = impl_->graph_names.find(r); it != impl_->graph_names.end()) wanted.push_back(it->second);
    const bool any_relation = params.relations.empty();
    static const std::vector<Impl::Adjacent> kNone;
    auto neighbours = [&](uint64_t key) -> const std::vector<Impl::Adjacent>& {
      return key < adjacency.size() ? adjacency[key] : kNone;
    };
    // Both directions, heaviest then newest first, within the degree budget.
    std::size_t frontier_begin = 0;
    for (int hop = 1; hop <= params.hops && keys.size() < params.max_nodes; ++hop) {
      const std::size_t frontier_end = keys.size();
      for (std::size_t i = frontier_begin; i < frontier_end && keys.size() < params.max_nodes; ++i) {
        std::size_t followed = 0;
        for (const auto& a : neighbours(keys[i])) {
          if (followed >= params.degree_budget || keys.size() >= params.max_nodes) break;
          if (a.weight < params.min_weight) continue;
          if (!any_relation && std::find(wanted.begin(), wanted.end(), a.rel) == wanted.end()) continue;
          ++followed;
          if (position.count(a.other)) continue;
          position[a.other] = keys.size();
          keys.push_back(a.other);
          depth.push_back(hop);
        }
      }
      frontier_begin = frontier_end;
    }
  }
  Subgraph g;
  g.depth = depth;
  g.nodes.resize(keys.size());
  if (keys.empty()) return g;
  // The edges among the chosen nodes are built on the sidecar while this thread reads the node rows
  // (three strings per edge cost about as much as the rows; see common/sidecar.h). Their ends' ids
  // come from the node rows once both are in.
  struct InsideEdge {
    uint64_t key = 0;
    Edge edge;
    std::size_t src = 0, dst = 0;  // positions in `keys`
  };
  std::vector<InsideEdge> inside;
  auto collect_edges = [&] {
    std::shared_lock lock(impl_->graph_mutex);
    const auto& adjacency = impl_->adjacency;
    const auto& names = impl_->graph_name_of;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] >= adjacency.size()) continue;
      for (const auto& a : adjacency[keys[i]]) {
        if (!a.out) continue;
        const auto other = position.find(a.other);
        if (other == position.end()) continue;
        inside.push_back({a.edge,
                          Edge{impl_->edge_ids[a.edge],
                               {},
                               {},
                               names[a.rel],
                               a.weight,
                               a.timestamp_ms,
                               names[a.created_by],
                               a.confidence},
                          i, other->second});
      }
    }
    std::sort(inside.begin(), inside.end(), [](const InsideEdge& a, const InsideEdge& b) { return a.key < b.key; });
  };
  if (!params.full_rows && impl_->params.vectors_in_memory) {
    // All from RAM: no statement for the sidecar to hide, and handing it the edges costs a wake.
    collect_edges();
    std::shared_lock lock(impl_->meta_mutex);
    for (std::size_t i = 0; i < keys.size(); ++i)
      if (keys[i] < impl_->key_meta.size() && impl_->key_meta[keys[i]].live)  // else: gone, id stays empty
        g.nodes[i] = impl_->scoring_facts(keys[i], impl_->key_meta[keys[i]].vector);
  } else if (!params.full_rows) {
    common::Sidecar::Task edge_task(impl_->sidecar, collect_edges);
    // Vectors first, then the RAM facts: a node removed between the two has no live entry and
    // leaves, rather than staying without its vector.
    std::vector<std::vector<float>> vectors(keys.size());
    {
      Impl::Reader reader(*impl_);
      Statement rows(*reader, "SELECT key, data FROM vectors WHERE key IN (SELECT value FROM json_each(?))",
                     Statement::Cached{});
      rows.bind(1, key_array(keys));
      while (rows.step()) vectors[position.at(static_cast<uint64_t>(rows.integer(0)))] = to_floats(rows.blob(1));
    }
    {
      std::shared_lock lock(impl_->meta_mutex);
      for (std::size_t i = 0; i < keys.size(); ++i)
        if (keys[i] < impl_->key_meta.size() && impl_->key_meta[keys[i]].live)
          g.nodes[i] = impl_->scoring_facts(keys[i], std::move(vectors[i]));
    }
    edge_task.get();
  } else {
    common::Sidecar::Task edge_task(impl_->sidecar, collect_edges);
    Impl::Reader reader(*impl_);  // one statement: no read transaction needed around it
    Statement nodes(*reader,
                    "SELECT " + std::string(Impl::kNodeColumns) +
                        ", v.data FROM nodes n LEFT JOIN vectors v ON v.key = n.key "
                        "WHERE n.key IN (SELECT value FROM json_each(?))",
                    Statement::Cached{});
    nodes.bind(1, key_array(keys));
    while (nodes.step()) {
      Node n = Impl::read_node(nodes);
      if (!nodes.is_null(15)) n.vector = to_floats(nodes.blob(15));
      g.nodes[position.at(static_cast<uint64_t>(nodes.integer(0)))] = std::move(n);
    }
    edge_task.get();
  }

  // A node removed after the walk has no row (a stored id is never empty): it leaves the subgraph,
  // and so do its edges.
  constexpr std::size_t kGone = SIZE_MAX;
  std::vector<std::size_t> moved_to(g.nodes.size(), kGone);
  std::size_t live = 0;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    if (g.nodes[i].id.empty()) continue;
    moved_to[i] = live;
    if (live != i) {
      g.nodes[live] = std::move(g.nodes[i]);
      g.depth[live] = g.depth[i];
    }
    ++live;
  }
  g.nodes.resize(live);
  g.depth.resize(live);
  g.edges.reserve(inside.size());
  for (InsideEdge& r : inside) {
    const std::size_t src = moved_to[r.src], dst = moved_to[r.dst];
    if (src == kGone || dst == kGone) continue;
    r.edge.src = g.nodes[src].id;
    r.edge.dst = g.nodes[dst].id;
    g.edges.push_back(std::move(r.edge));
  }
  return g;
}

std::optional<std::string> Memory::find_duplicate(std::string_view text, const std::vector<float>& vector,
                                                  double vector_threshold) const {
  require_utf8(text, "text");
  if (!vector.empty()) impl_->check_vector(vector, "vector");
  const auto tokens = embed::word_tokens(text);
  if (tokens.empty()) return std::nullopt;
  const auto sig = detail::minhash(tokens);
  Impl::Reader reader(*impl_);
  std::vector<int64_t> candidates;
  Statement band(*reader, "SELECT key FROM minhash WHERE band = ? AND hash = ? LIMIT 64");
  const auto bands = detail::band_hashes(sig);
  for (std::size_t b = 0; b < bands.size(); ++b) {
    band.bind(1, static_cast<int64_t>(b)).bind(2, bands[b]);
    while (band.step()) candidates.push_back(band.integer(0));
    band.reset();
  }
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  Statement get(*reader,
                "SELECT n.id, n.text, v.data FROM nodes n LEFT JOIN vectors v ON v.key = n.key WHERE n.key = ?");
  for (int64_t key : candidates) {
    get.bind(1, key);
    if (get.step() && detail::jaccard_estimate(sig, detail::minhash(embed::word_tokens(get.text(1)))) >= 0.8) {
      bool same = true;
      if (!vector.empty() && !get.is_null(2) && impl_->params.index.metric != Metric::l2) {
        const std::vector<float> other = to_floats(get.blob(2));
        double dot = 0, na = 0, nb = 0;
        for (std::size_t i = 0; i < other.size() && i < vector.size(); ++i) {
          dot += static_cast<double>(vector[i]) * other[i];
          na += static_cast<double>(vector[i]) * vector[i];
          nb += static_cast<double>(other[i]) * other[i];
        }
        same = na > 0 && nb > 0 && dot / std::sqrt(na * nb) >= vector_threshold;
      }
      if (same) return get.text(0);
    }
    get.reset();
  }
  return std::nullopt;
}

Stats Memory::stats() const {
  Impl::Reader reader(*impl_);
  const auto count = [&](std::string_view sql) {
    Statement s(*reader, sql);
    s.step();
    return static_cast<std::size_t>(s.integer(0));
  };
  Stats st;
  st.nodes = count("SELECT count(*) FROM nodes");
  st.vectors = count("SELECT count(*) FROM vectors");
  st.edges = count("SELECT count(*) FROM edges");
  st.lexical_rows = count("SELECT count(*) FROM fts");
  st.indexed = impl_->ann->size();
  st.embedder = impl_->space;
  st.path = impl_->params.path;
  st.dimension = impl_->dimension;
  st.index_bytes = impl_->ann->memory_bytes();
  st.database_bytes = file_size(impl_->params.path) + file_size(impl_->params.path + "-wal");
  return st;
}

void Memory::checkpoint() {
  impl_->save_index();
  std::lock_guard lock(impl_->write_mutex);
  impl_->writer->exec("PRAGMA wal_checkpoint(PASSIVE)");
}

void Memory::vacuum() {
  impl_->save_index();
  std::lock_guard lock(impl_->write_mutex);
  Db& db = *impl_->writer;
  db.exec("INSERT INTO fts(fts) VALUES ('rebuild')");
  db.exec("VACUUM");
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
}

}  // namespace ruvllm::memory
