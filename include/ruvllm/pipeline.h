// ruvllm/pipeline.h — the orchestrator: one request through embed → retrieve → attend → route →
// build context → generate → write back, every stage timed, one JSONL row per request.
//
// Configuration is a Config, usually read from ruvllm.toml by ruvllm/config.h; the Pipeline owns
// the engine, the memory, the router and the request log that the file names. The server and
// the CLI translate to and from Request / Response, read the memory, the models and the embedder
// through it, and write memory only through its methods, which keep the response cache in step.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "ruvllm/attention.h"
#include "ruvllm/error.h"
#include "ruvllm/llm.h"
#include "ruvllm/memory.h"
#include "ruvllm/router.h"

namespace ruvllm::pipeline {

struct RetrieveParams {
  memory::SearchMode mode = memory::SearchMode::hybrid;
  memory::Fusion fusion = memory::Fusion::weighted;
  double dense_weight = 0.25;   // the best fusion weight measured on HotpotQA and Cranfield
  std::size_t candidates = 64;  // the search's ranked list; every node in it gets its ranks as features
  std::size_t seeds = 10;       // the first `seeds` candidates start the expansion (≤ candidates)
  memory::ExpandParams expand;  // 2 hops, 64 edges per node, ≤ 256 nodes
};

struct Retrieved {
  memory::SearchResult search;
  memory::Subgraph subgraph;
  attention::GraphInput graph;           // subgraph nodes in the same order, query vector included
  int64_t search_us = 0, expand_us = 0;  // wall time of the two steps
};

// Embeds the query once (inside the search, beside its lexical half: `search.query_embedding`),
// searches, expands the seeds and fills the attention room's input:
// per node its search ranks (overall, lexical, dense; -1 outside the candidates), a rank-derived
// score 1/(1+rank), depth, type, age and confidence; per edge its relation, weight, confidence and
// age. Throws memory::Error / embed::Error for bad input (invalid UTF-8, ...).
Retrieved retrieve(const memory::Memory& memory, const std::string& query, const RetrieveParams& params = {});
// The same with the query's vector already computed (empty = let the search embed the text).
Retrieved retrieve(const memory::Memory& memory, const std::string& query, std::vector<float> query_vector,
                   const RetrieveParams& params);

// ---- labelled questions (training and evaluating the graph stage) ------------------------------

struct LabelledQuestion {
  std::string text;
  std::vector<std::string> gold_sources;  // the `source_id`s ingest stored in node metadata
};

struct LabelledRetrieval {
  Retrieved retrieved;
  std::vector<std::string> node_sources;  // per subgraph node, its source_id ("" if none)
  std::vector<std::size_t> gold_nodes;    // subgraph nodes whose source is gold
};

LabelledRetrieval retrieve_labelled(const memory::Memory& memory, const LabelledQuestion& question,
                                    const RetrieveParams& params = {});

// Recall@k over distinct sources when nodes are read in descending `score` order (chunks of one
// source count once, at their best rank): the share of the gold sources among the first k.
double source_recall(const LabelledRetrieval& r, const std::vector<std::string>& gold_sources,
                     const std::vector<double>& score, std::size_t k);

// ---- routing -------------------------------------------------------------------------------------

// The router's query signals: the text, its embedding and token counts from `embedder`.
router::QuerySignals query_signals(const embed::Embedder& embedder, std::string text);

// ---- configuration ------------------------------------------------------------------------------

using ruvllm::Error;  // ruvllm/error.h: one type for every room, with a code
using ruvllm::ErrorCode;

struct Config {
  std::vector<llm::ModelSpec> models;  // [[model]] tables: the ladder, cheapest first
  std::string default_model;           // routing off, or the naive flow; "" = the last model
  llm::LoadMode load_mode = llm::LoadMode::read;
  int threads = 0, gpu_layers = 0, context = 4096;
  // Sequences decoded together per model. 16 requests of 128 tokens to LFM2-350M Q4_0 on 2 cores:
  // 2.27x the tokens/s of one at a time (4: 1.67x, 8: 1.89x). Single-request speed does not change;
  // memory and load time grow (1.2B at 4,096 tokens: +898 MB and 3.4 s at 4, +1,474 MB and 5.8 s at
  // 16). `ruvllm ask` and `chat` load with 1: they serve one request at a time.
  int parallel = 16;

  std::string data_dir = "ruvllm-data";  // memory.sqlite, requests.jsonl, feedback.jsonl live here
  std::string memory_path;               // "" = data_dir/memory.sqlite
  std::string word_vectors;              // "" = the default GloVe table
  // A smaller subgraph than the graph benchmark's 256 nodes / 64 edges per node: expansion costs
  // 2 ms instead of 15 on FOLDOC (docs/measured.md, `bench e2e --stages-only`), and 8 context blocks are chosen.
  RetrieveParams retrieve = [] {
    RetrieveParams r;
    r.expand.max_nodes = 64;
    r.expand.degree_budget = 16;
    return r;
  }();
  std::string scorer = "pagerank";  // retrieval, pagerank, attention (needs attention_file)
  std::string attention_file;

  std::string router_file;                           // "" = routing off: every request → default_model
  std::map<std::string, std::string> router_models;  // router ladder name → model name (else the same)
  std::optional<double> router_threshold;            // overrides the file's calibrated threshold
  double confidence_floor = 0;

  std::string system_prompt = "You are a helpful assistant. Answer from the context when it helps.";
  std::size_t max_docs = 8, max_context_tokens = 1024;
  int max_tokens = 256;
  llm::Sampling sampling;  // temperature and top_p are the router's when it routes

  std::string request_log;          // "" = data_dir/requests.jsonl; "off" = none
  bool writeback = false;           // query/answer nodes with `derived` edges (off until quality gating)
  std::size_t cache_entries = 256;  // response cache; 0 = off
};

struct ConfigIssue {
  std::string key;  // e.g. "server.port", "model[1].path"
  std::string message;
};

// The keys whose default derives from others: memory_path and request_log under data_dir, the last
// model as default_model. The configuration file's loader (ruvllm/config.h) and Pipeline() call it.
void fill_derived_defaults(Config& config);
// What only the disk can say about a configuration: missing or unreadable model, router or
// attention files, router models not on the ladder, missing word vectors. Empty = fine.
std::vector<ConfigIssue> check_config(const Config& config);

// ---- one request ----------------------------------------------------------------------------------

enum class Flow {
  routed,  // route → retrieval strategy, context size, model and sampling from the router
  naive,   // the baseline: default model, plain dense top-k (k = max_docs), no router, no graph
};

struct Response;

struct Request {
  std::string query;                         // the user's turn, UTF-8, not empty
  std::vector<llm::ChatMessage> history;     // earlier turns, as sent (Response::user_turn)
  std::string model = "auto";                // "auto" = routed; a model name bypasses the router
  std::optional<std::string> system_prompt;  // replaces the configured system prompt
  Flow flow = Flow::routed;
  std::optional<int> max_tokens;
  std::optional<float> temperature, top_p;
  std::optional<uint32_t> seed;
  std::vector<std::string> stop;
  router::SystemSignals constraints;  //: latency budget, device, privacy, high risk
  std::string user;                   // hashed before it is logged
  bool use_cache = true, ignore_eos = false;
  bool generate = true;  // false: retrieve, route and build the context only (inspection, benchmarks)
  std::function<bool(std::string_view)> on_text;  // streaming; return false to stop
  std::function<void(const Response&)> on_start;  // once, before generation: route and context
  std::stop_token cancel;
};

struct ContextBlock {
  std::string node_id, title, type, text;
  double score = 0;
};

struct StageTimes {  // microseconds
  int64_t embed = 0, search = 0, expand = 0, attend = 0, route = 0, context = 0;
  int64_t llm = 0, ttft = 0, writeback = 0, total = 0;
  int64_t non_llm() const { return total - llm - writeback; }
};

struct Response {
  std::string request_id, answer, model, user_turn;  // user_turn: the query with its context, as sent
  bool routed = false, cache_hit = false, generated_weights = false;
  router::RouteDecision decision;
  std::vector<float> features;  // the router's 128, when it ran
  std::vector<ContextBlock> context;
  std::size_t retrieved = 0;  // candidates the search returned
  double distance_mean = 0, distance_std = 0, attention_entropy = 0;
  int prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  llm::Finish finish = llm::Finish::stop;
  StageTimes times;
};

class Pipeline {
 public:
  // Opens the memory, the router and the request log; models load on first use. Throws Error.
  explicit Pipeline(Config config);
  ~Pipeline();  // shutdown()
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Thread-safe. Throws Error: invalid_argument for bad input (empty or invalid UTF-8 query,
  // unknown model, a prompt the context cannot hold), unavailable when a model does not load or
  // the pipeline is shut down, internal when generation fails. A cancelled request returns finish = cancelled.
  Response run(Request request);
  // Stores feedback for a logged request (feedback.jsonl). Throws Error for an unknown request id
  // or a score outside [0, 1].
  void feedback(const std::string& request_id, std::optional<double> score, const std::string& label);

  const Config& config() const;
  const memory::Memory& memory() const;
  llm::Engine& engine();
  const embed::Embedder& embedder() const;

  // Memory writes (memory::Memory's, which throw Error): each drops the cached answers whose
  // context it may change. A new node needs none: a cached answer is found only after retrieval,
  // keyed by the nodes its context used.
  std::string add_node(memory::Node node);
  std::vector<std::string> add_batch(std::vector<memory::Node> nodes, std::vector<memory::Edge> edges = {});
  bool remove_node(std::string_view id);  // false: no such node
  std::string link(memory::Edge edge);
  bool unlink(std::string_view edge_id);  // false: no such edge
  memory::IngestReport ingest(const std::vector<std::string>& paths, const memory::IngestParams& params = {});
  // For writers the pipeline does not see (another process): drops the cached answers that used
  // these nodes, or all of them.
  void invalidate(const std::vector<std::string>& node_ids);
  void invalidate_all();
  std::size_t in_flight() const;
  // Waits for in-flight requests, flushes the log, saves the memory index. Idempotent.
  void shutdown();

  // What the routed flow's context would hold for a labelled question under every retrieval
  // strategy and context bin: the outcome records the router's context and retrieval heads learn
  // from (`ruvllm router evidence`). Tokens are counted with the default model's tokenizer.
  struct EvidenceTrial {
    router::Retrieval retrieval = router::Retrieval::none;
    int context_tokens = 0;  // the bin; the budget applied is also capped by context.max_tokens
    double recall = 0;       // share of the gold sources among the context's blocks
    std::size_t tokens = 0, blocks = 0;
  };
  struct Evidence {
    router::Signals signals;  // query and retrieval signals, as run() gives them to the router
    std::vector<EvidenceTrial> trials;
  };
  Evidence evidence(const LabelledQuestion& question, const std::vector<int>& context_bins);

 private:
  void open();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ruvllm::pipeline
