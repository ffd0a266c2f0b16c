// The store on disk: node type names, the schema and its migration, open(), the embedding space a
// memory was built in, meta values, and the pool of read connections.
#include <cstdlib>
#include <filesystem>

#include "store.h"

namespace ruvllm::memory {

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

// ---- connections -------------------------------------------------------------------------------

Memory::Impl::Reader::Reader(const Impl& impl, bool snapshot) : impl_(impl) {
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

Memory::Impl::Reader::~Reader() {
  if (!sqlite3_get_autocommit(db_->handle())) {
    sqlite3_exec(db_->handle(), "COMMIT", nullptr, nullptr, nullptr);
    if (!sqlite3_get_autocommit(db_->handle())) return;  // stuck in a transaction: not reused
  }
  std::lock_guard lock(impl_.readers_mutex);
  impl_.readers.push_back(std::move(db_));
}

// ---- open --------------------------------------------------------------------------------------

void Memory::Impl::open() {
  if (params.path.empty()) throw Error("memory: no database path");
  if (!params.create && !std::filesystem::exists(params.path))
    throw Error(ErrorCode::not_found, "memory " + params.path + " does not exist (nothing was created)");
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

std::optional<std::string> Memory::Impl::meta_value(Db& db, std::string_view key) {
  Statement s(db, "SELECT value FROM meta WHERE key = ?");
  s.bind(1, key);
  if (s.step()) return s.text(0);
  return std::nullopt;
}

void Memory::Impl::set_meta(Db& db, std::string_view key, std::string_view value) {
  Statement s(db, "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  s.bind(1, key).bind(2, value).run();
}

void Memory::Impl::migrate(Db& db) {
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

void Memory::Impl::check_space(Db& db) {
  const std::size_t wanted = params.dimension ? params.dimension : (params.embedder ? params.embedder->dimension() : 0);
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

}  // namespace ruvllm::memory
