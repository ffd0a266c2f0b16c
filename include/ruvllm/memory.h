// ruvllm/memory.h — the world model: nodes with embeddings joined by typed, weighted edges.
//
// SQLite (WAL) is the source of truth for nodes, edges, vectors and metadata. The HNSW index
// (USearch) and the FTS5 table are derived from it: the index file beside the database records the
// last change it contains, and opening a memory replays every later change, so a crash between the
// store's commit and the index save loses nothing; a missing or corrupt index is rebuilt with a
// warning. All methods are thread-safe; searches run concurrently with each other and with writes.
// Bad input throws ruvllm::memory::Error and changes nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "ruvllm/embed.h"
#include "ruvllm/error.h"

namespace ruvllm::memory {

using ruvllm::Error;  // ruvllm/error.h: one type for every room, with a code
using ruvllm::ErrorCode;

enum class NodeType { document, chunk, query, qa, summary, fact, memory, trace, agent_step, tool_result };
std::string_view to_string(NodeType type);
NodeType parse_node_type(std::string_view name);  // throws Error for an unknown name

struct Node {
  std::string id;  // UUID; empty on add = a new random UUID v4
  NodeType type = NodeType::chunk;
  std::string source = "user";  // kb, user, agent, system, ...
  std::string title;            // documents and their chunks; `mentions` edges match titles
  std::string text;             // UTF-8, not empty
  std::vector<float> vector;    // empty on add = embed `text` (a text with no known word gets none)
  int64_t timestamp_ms = 0;     // 0 on add = now
  std::vector<std::string> tags;
  std::string domain, language;
  int version = 1;
  double confidence = 1.0;                      // [0, 1]
  std::optional<int64_t> valid_from, valid_to;  // ms since the epoch; a superseded fact gets valid_to
  std::string metadata = "{}";                  // anything else, a JSON object
};

struct Edge {
  std::string id;             // UUID; empty on link = new (linking the same src, dst, rel again updates that edge)
  std::string src, dst, rel;  // rel: cites, mentions, follows, same_topic, derived, agent_step, ...
  float weight = 1.0f;        // > 0
  int64_t timestamp_ms = 0;   // 0 on link = now
  std::string created_by = "user";  // ingest, router, agent, user
  float confidence = 1.0f;          // [0, 1]
};

// A node or an edge as one JSON object, the shape of /v1/memory/... and `ruvllm memory get`:
// metadata as an object, valid_from / valid_to null while open, the vector only when asked for.
std::string to_json(const Node& node, bool with_vector = false);
std::string to_json(const Edge& edge);

enum class Metric { cosine, inner_product, l2 };
enum class Storage { f32, f16, i8 };  // how the index stores vectors (the store keeps f32)

struct IndexParams {  // HNSW; defaults for 100K–1M nodes (see docs/memory.md for the size table)
  Metric metric = Metric::cosine;
  // f16: on GloVe-100 the same recall as f32 (0.953 vs 0.956 at efSearch 64), 30 % faster, 28 %
  // smaller (README, `ruvllm bench ann`). The store keeps every vector in f32 regardless.
  Storage storage = Storage::f16;
  std::size_t connectivity = 32;      // M
  std::size_t expansion_add = 200;    // efConstruction
  std::size_t expansion_search = 64;  // efSearch
};

struct MemoryParams {
  std::string path;  // the SQLite database; the index is path + ".usearch"
  // Whether a missing database is created. false for readers (search, stats, …): a mistyped path
  // is then an error (not_found) rather than a new, empty store that answers nothing.
  bool create = true;
  // Embeds texts of nodes added without a vector and of queries. May be null when every node and
  // query brings its own vector. Its name() is recorded: reopening with another space is an error.
  std::shared_ptr<const embed::Embedder> embedder;
  std::size_t dimension = 0;  // 0 = the embedder's
  IndexParams index;
  bool durable = true;                 // fsync every commit (synchronous=FULL) rather than per checkpoint
  std::size_t autosave_every = 50000;  // save the index after this many changes (0 = on close only)
  // Lexical search from postings held in RAM (FTS5's tokenizer and bm25(): the same scores, 40x
  // faster on long queries) rather than from FTS5's tables. Built on open: FOLDOC's 3,730 nodes
  // (1.75 MB of text) add 88 ms and 4.9 MB; off = FTS5 answers (huge stores, small RAM).
  bool lexical_in_memory = true;
  // A copy of every vector in RAM (4·d bytes per node: 1.5 MB for FOLDOC, 1.5 GB for 1M × 384-d,
  // beside the index's own; read from the store on open), so that an expansion without rows
  // touches no table: ~0.25 ms rather than ~0.5 after a generation has swept the caches (README).
  // Off: those vectors come from the store.
  bool vectors_in_memory = true;
  std::function<void(const std::string&)> warn;  // warnings (index rebuilt, ...); default: stderr
};

struct Filter {  // all set conditions must hold
  std::vector<NodeType> types;
  std::string domain;
  std::vector<std::string> tags;    // every tag must be present
  std::optional<int64_t> valid_at;  // valid_from <= t < valid_to (unset bounds are open)
};

enum class SearchMode { dense, lexical, hybrid };
enum class Fusion { rrf, weighted };
// One spelling each, everywhere (configuration, HTTP, CLI): "dense", "lexical", "hybrid"; "rrf",
// "weighted". parse_* throws Error naming the accepted words.
std::string_view to_string(SearchMode mode);
SearchMode parse_search_mode(std::string_view name);
std::string_view to_string(Fusion fusion);
Fusion parse_fusion(std::string_view name);

struct SearchQuery {
  std::string text;           // lexical query; also embedded when `vector` is empty
  std::vector<float> vector;  // dense query
  std::size_t k = 10;
  SearchMode mode = SearchMode::hybrid;
  Fusion fusion = Fusion::rrf;
  double rrf_k = 60;                 // RRF: score = sum 1 / (rrf_k + rank)
  double dense_weight = 0.5;         // weighted: w * dense + (1 - w) * lexical, each min-max normalised
  std::size_t candidates = 0;        // per ranking before fusion; 0 = max(4k, 50)
  std::size_t expansion_search = 0;  // 0 = the index's efSearch
  Filter filter;
};

struct Hit {
  std::string id;
  double score = 0;                        // higher is better (dense alone: similarity; lexical alone: -BM25)
  int dense_rank = -1, lexical_rank = -1;  // 0-based rank in each list, -1 = absent
  double similarity = 0, bm25 = 0;         // raw scores where ranked
};

struct SearchResult {
  std::vector<Hit> hits;
  bool query_has_vector = false;  // false: the query text has no known word, dense had nothing to do
  // The embedding of `text` when the query brought no vector and dense search made one (embed_us):
  // a hybrid search embeds beside its lexical half, so a caller that needs the vector too gets it
  // here rather than embedding first.
  embed::Embedding query_embedding;
  std::size_t dense_candidates = 0, lexical_candidates = 0;
  int64_t embed_us = 0, dense_us = 0, lexical_us = 0, fuse_us = 0;
};

enum class Direction { out, in, both };

struct ExpandParams {
  int hops = 2;
  std::size_t degree_budget = 64;      // neighbours followed per node: the heaviest, then the newest
  std::size_t max_nodes = 256;         // induced subgraph cap (seeds first, then by hop)
  std::vector<std::string> relations;  // empty = all
  float min_weight = 0;
  // false: each node carries only its id, type, timestamp, confidence, validity and vector (what
  // graph scoring reads), from RAM (MemoryParams::vectors_in_memory) or the vectors table; source,
  // title, text, tags, domain, language, version and metadata keep their defaults. For a caller that
  // scores the subgraph first and reads the few rows it keeps with get_many(). A node whose add
  // has committed but not yet reached the in-RAM tables leaves this subgraph (a full one keeps it).
  bool full_rows = true;
};

struct Subgraph {
  std::vector<Node> nodes;  // with vectors (and only what ExpandParams::full_rows says); seeds first
  std::vector<int> depth;   // hops from the nearest seed, per node
  std::vector<Edge> edges;  // every stored edge between two of the nodes
};

struct Stats {
  std::size_t nodes = 0, vectors = 0, edges = 0, indexed = 0, lexical_rows = 0;
  std::string embedder, path;
  std::size_t dimension = 0, index_bytes = 0, database_bytes = 0;
};

class Memory {
 public:
  explicit Memory(MemoryParams params);  // opens or creates; throws Error (newer schema, other space)
  ~Memory();                             // saves the index
  Memory(const Memory&) = delete;
  Memory& operator=(const Memory&) = delete;

  std::string add(Node node);  // returns the id
  // One transaction, all or nothing: the nodes, then `edges` (which may refer to the new nodes).
  std::vector<std::string> add_batch(std::vector<Node> nodes, std::vector<Edge> edges = {});
  std::optional<Node> get(std::string_view id, bool with_vector = false) const;
  // Many at once, one statement: per id its node, or nothing for an unknown id.
  std::vector<std::optional<Node>> get_many(const std::vector<std::string>& ids, bool with_vector = false) const;
  bool remove(std::string_view id);  // the node, its vector and its edges; false if unknown
  // Closes `id`'s validity at `valid_to` and adds `replacement` with a `supersedes` edge to it.
  std::string supersede(std::string_view id, Node replacement, int64_t valid_to_ms = 0);

  std::string link(Edge edge);  // returns the edge id; throws Error for an unknown node
  bool unlink(std::string_view edge_id);
  std::vector<Edge> edges(std::string_view node_id, Direction direction = Direction::both,
                          std::string_view rel = {}) const;
  void set_weight(std::string_view edge_id, float weight);
  // Deletes edges lighter than `min_weight` and older than `older_than_ms`; returns how many.
  std::size_t prune_edges(float min_weight, int64_t older_than_ms);

  SearchResult search(const SearchQuery& query) const;
  Subgraph expand(const std::vector<std::string>& seeds, const ExpandParams& params = {}) const;
  // A stored node that duplicates `text`: MinHash Jaccard >= 0.8 over word 3-shingles (LSH
  // candidates), confirmed by cosine >= vector_threshold when both sides have vectors. Averaged word
  // vectors of different texts often exceed 0.95, so the vector alone never decides.
  std::optional<std::string> find_duplicate(std::string_view text, const std::vector<float>& vector,
                                            double vector_threshold = 0.95) const;

  Stats stats() const;
  // Small durable notes for the memory's own tools (ingest progress): a key-value table.
  std::optional<std::string> note(std::string_view key) const;
  void set_note(std::string_view key, std::string_view value);

  void checkpoint();  // saves the index now
  void vacuum();      // checkpoint, compact the database, rebuild FTS
  const embed::Embedder* embedder() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- ingest ------------------------------------------------------------------------------------

struct IngestParams {
  std::size_t chunk_tokens = 128, overlap_tokens = 32;  // word tokens (embed::word_tokens)
  std::string source = "kb";
  double same_topic_threshold = 0.9;  // cosine; edges to at most `same_topic_k` earlier chunks
  std::size_t same_topic_k = 3;
  bool mentions = true;  // Aho–Corasick over the titles of the documents in this ingest
  std::function<void(std::size_t done, std::size_t total)> progress;
};

struct IngestReport {
  std::size_t files = 0, documents = 0, skipped = 0, chunks = 0;
  std::size_t duplicates = 0;       // same title, near-identical text: not added
  std::size_t near_duplicates = 0;  // another title, near-identical text: added with a near_duplicate edge
  std::size_t empty = 0;            // records with neither text nor title: nothing to add
  std::size_t follows = 0, same_topic = 0, mentions = 0;
};

// Ingests .txt, .md and .jsonl ({"id", "title", "text"} per line) files. Each document is committed
// on its own, so an interrupted run resumes where it stopped; a document seen before (same content)
// is skipped, so ingesting a file twice adds nothing.
IngestReport ingest(Memory& memory, const std::vector<std::string>& paths, const IngestParams& params = {});

}  // namespace ruvllm::memory
