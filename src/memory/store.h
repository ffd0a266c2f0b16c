// Memory::Impl, the state behind ruvllm::memory::Memory, and what its files share. Internal: only
// the files below include it. The members are defined by concern:
//   memory.cpp      construction, close, stats, notes, checkpoint and vacuum, warnings
//   schema.cpp      node type names, the schema and its migration, open(), the space check, meta
//                   values, the reader pool
//   keys.cpp        the key table in RAM (key_meta): interning, filters, expansion facts
//   rows.cpp        node rows: read_node(), get(), get_many()
//   write.cpp       validation, node and edge inserts, change() and apply(), add, remove, supersede
//   index_sync.cpp  the HNSW index and the lexical index in RAM kept in step with SQLite
//   graph.cpp       the adjacency in RAM, edge reads and changes, expand()
//   search.cpp      dense and lexical rankings and search(); the fusion itself is fusion.cpp
//   dedup.cpp       find_duplicate() (MinHash + cosine)
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ann.h"
#include "common/sidecar.h"
#include "common/utf8.h"
#include "fusion.h"
#include "lexical.h"
#include "ruvllm/memory.h"
#include "sqlite.h"

namespace ruvllm::memory {

namespace detail {

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

// Text that reaches the store is UTF-8; `what` names the field in the error.
using common::require_utf8;

// A stored vector as floats (f32 in the machine's byte order, as write.cpp's as_bytes writes it).
inline std::vector<float> to_floats(std::span<const std::byte> blob) {
  std::vector<float> v(blob.size() / sizeof(float));
  if (!v.empty()) std::memcpy(v.data(), blob.data(), v.size() * sizeof(float));
  return v;
}

}  // namespace detail

struct Memory::Impl {
  using Db = detail::Db;
  using Statement = detail::Statement;
  using KeyMeta = detail::KeyMeta;

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

  std::unique_ptr<detail::AnnIndex> ann;
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

  void warn(const std::string& message) const;  // memory.cpp

  // ---- connections (schema.cpp) ---------------------------------------------------------------

  class Reader {
   public:
    // `snapshot`: one read transaction for every statement run through this reader. Several reads
    // then see one state of the store, and pay SQLite's WAL read-lock handshake (a few fcntl and
    // fstat calls) once instead of once per statement.
    explicit Reader(const Impl& impl, bool snapshot = false);
    ~Reader();
    Db& operator*() { return *db_; }

   private:
    const Impl& impl_;
    std::unique_ptr<Db> db_;
  };

  // ---- open (schema.cpp) ----------------------------------------------------------------------

  void open();
  std::optional<std::string> meta_value(Db& db, std::string_view key);
  void set_meta(Db& db, std::string_view key, std::string_view value);
  void migrate(Db& db);
  void check_space(Db& db);

  // ---- the derived indexes (index_sync.cpp) ---------------------------------------------------

  void load_lexical_index(Db& db);
  std::size_t stored_vectors(Db& db);
  void open_index(Db& db);
  void save_index();
  void note_changes(std::size_t n);

  // ---- the graph in RAM (graph.cpp) -----------------------------------------------------------

  void forget_edge_ids(const std::vector<Adjacent>& list);  // under graph_mutex (exclusive)
  // Reloads the adjacency lists of `keys` from the store (all lists when `keys` is empty). Under
  // graph_mutex (exclusive), and under write_mutex once the memory is open.
  void load_adjacency(Db& db, const std::vector<uint64_t>& keys);
  // After a committed edge change: the lists of `keys` (and of removed nodes, emptied) follow it.
  void refresh_adjacency(Db& db, std::vector<uint64_t> keys, const std::vector<uint64_t>& removed = {});

  // The steps of expand(), in order.
  struct Walk;
  struct InsideEdge;
  // The seeds, then the nodes reached hop by hop, within the caps.
  Walk walk(const std::vector<std::string>& seeds, const ExpandParams& params) const;
  // Every stored edge between two of the walk's nodes, by edge key.
  std::vector<InsideEdge> inside_edges(const Walk& walk) const;
  // The walk's nodes as ExpandParams::full_rows asks (a node removed meanwhile keeps an empty id).
  void scoring_facts_from_ram(const Walk& walk, std::vector<Node>& nodes) const;
  void scoring_facts_from_store(const Walk& walk, std::vector<Node>& nodes) const;
  void full_rows_from_store(const Walk& walk, std::vector<Node>& nodes) const;
  // Drops the nodes removed since the walk, and their edges, and names the ends of the rest.
  static void keep_live(Subgraph& g, std::vector<InsideEdge>& inside);

  // ---- the key table (keys.cpp) ---------------------------------------------------------------

  uint32_t intern(const std::string& s);              // under meta_mutex (exclusive)
  void set_key_meta(uint64_t key, const Node& node);  // under meta_mutex (exclusive)
  // A node as an expansion without rows gives it (under meta_mutex, shared; `key` live).
  Node scoring_facts(uint64_t key, std::vector<float> vector) const;
  void load_key_meta(Db& db);
  std::optional<uint64_t> key_of(Db& db, std::string_view id) const;
  bool passes(const Filter& f, const KeyMeta& m, const std::vector<uint32_t>& tag_ids, uint32_t domain_id) const;
  // `filter` as a test of keys; nullopt when nothing can pass (a tag or domain never seen).
  // Under meta_mutex (shared) for as long as the predicate is used.
  std::optional<std::function<bool(uint64_t)>> filter_predicate(const Filter& filter) const;
  static bool filter_empty(const Filter& f) {
    return f.types.empty() && f.domain.empty() && f.tags.empty() && !f.valid_at;
  }

  // ---- validation (write.cpp) -----------------------------------------------------------------

  std::string new_uuid();  // under write_mutex
  void check_vector(const std::vector<float>& v, std::string_view what) const;
  // Validates and completes a node for insertion (embedding its text when it brings no vector).
  void prepare(Node& n) const;
  void check_edge(Edge& edge) const;

  // ---- writes (write.cpp; under write_mutex, inside a transaction) ----------------------------

  struct Pending {  // applied to the index and key_meta after the commit
    std::vector<std::pair<uint64_t, const Node*>> added;
    std::vector<uint64_t> removed;
    std::vector<uint64_t> edge_ends;  // nodes whose edges changed
  };

  uint64_t insert_node(Db& db, Node& n, Pending& pending);
  // Inserts, or updates the edge with the same (src, dst, rel); returns its id. Under write_mutex.
  std::string upsert_edge(Db& db, Edge& edge, std::vector<uint64_t>& edge_ends);
  void commit_seq(Db& db) { set_meta(db, "seq", std::to_string(seq)); }
  // Runs `write(db, pending)` in one transaction under the writer lock (it returns false when there
  // is nothing to do), then brings key_meta and the index up to the commit: `after_commit()` first,
  // for what apply() does not know about. Returns whether anything was written. Defined in
  // write.cpp, its only user.
  template <typename Write, typename AfterCommit>
  bool change(Write&& write, AfterCommit&& after_commit);
  // Brings key_meta and the index up to a committed change; returns how many changes it was.
  std::size_t apply(const Pending& pending);

  // ---- reads (rows.cpp) -----------------------------------------------------------------------

  static constexpr std::string_view kNodeColumns =
      "n.key, n.id, n.type, n.source, n.title, n.text, n.timestamp_ms, n.tags, n.domain, n.language, n.version, "
      "n.confidence, n.valid_from, n.valid_to, n.metadata";
  static Node read_node(const Statement& s);  // columns as kNodeColumns

  // ---- search (search.cpp) --------------------------------------------------------------------

  // The dense query: the query's vector, or its text embedded (the embedding and its time go to
  // `result`); empty when the text has no known word.
  std::vector<float> query_vector(const SearchQuery& query, SearchResult& result) const;
  std::vector<detail::Ranked> dense(const std::vector<float>& q, const SearchQuery& query, std::size_t n) const;
  struct LexicalList {
    std::vector<detail::Ranked> ranked;  // by FTS5's bm25(), best (lowest) first
    // Per entry, the node's id where FTS5 answered; empty where the in-RAM index did (the ids of
    // the hits kept are read from key_meta).
    std::vector<std::string> ids;
  };
  LexicalList lexical(const SearchQuery& query, std::size_t n) const;
  LexicalList lexical_fts(const std::vector<std::string>& phrases, const Filter& f, std::size_t n) const;
  // The fused hits that still name a live node (or that FTS5 named), in order.
  void name_hits(const std::vector<detail::Fused>& fused, const std::vector<std::string>& lexical_ids,
                 std::vector<Hit>& hits) const;
};

}  // namespace ruvllm::memory
