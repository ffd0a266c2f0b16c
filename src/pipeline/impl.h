// The pipeline's insides, shared by the files that implement it: the state it owns
// (Pipeline::Impl) and the state of one request as it moves through the stages (RequestState).
// pipeline.cpp opens and closes; stages.cpp holds the stages, request_log.cpp the log row.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "response_cache.h"
#include "ruvllm/embed.h"
#include "ruvllm/pipeline.h"

namespace ruvllm::pipeline {

// One request between the stages: what came in, what goes out, and what a stage hands the next.
struct RequestState {
  Request req;
  Response out;
  common::Clock::time_point t0 = common::Clock::now();
  bool naive = false;           // Flow::naive: the baseline's stage list
  bool explicit_model = false;  // a model named in the request: no router
  int max_tokens = 0;
  std::future<void> early_load;  // a known model loading while retrieval runs
  embed::Embedding query;        // the query's embedding
  Retrieved retrieved;
  attention::Scores scores;        // routed: one per subgraph node
  int64_t load_us = 0;             // model load wait, counted in the llm stage
  std::size_t context_budget = 0;  // tokens the context was allowed, after the config's cap
  llm::Sampling sampling;
  bool cacheable = false;
  std::string cache_key;
};

struct Pipeline::Impl {
  Config config;
  std::shared_ptr<const embed::Embedder> embedder;
  std::unique_ptr<memory::Memory> memory;
  std::unique_ptr<llm::Engine> engine;
  std::unique_ptr<router::RouterHandle> router;
  // The file's router with the config's thresholds, and its ladder index → model name: replaced
  // whole on reload, so a request reads both from one snapshot without copying them.
  struct Routing {
    router::Router router;
    std::vector<std::string> to_model;
  };
  std::mutex router_mutex;
  std::shared_ptr<const Routing> routing;
  std::unique_ptr<attention::Scorer> scorer;
  detail::ResponseCache cache;

  std::mutex log_mutex;
  std::ofstream log, feedback_log;
  std::deque<std::string> recent_ids;  // accept feedback for these (bounded)
  std::unordered_set<std::string> recent_set;
  static constexpr std::size_t kRecent = 65536;

  std::mutex id_mutex;
  std::mt19937_64 rng{std::random_device{}()};

  std::atomic<std::size_t> in_flight{0};
  std::mutex flight_mutex;
  std::condition_variable flight_done;
  bool closed = false;
  std::atomic<int64_t> router_checked_ms{0};

  // Token counts of context candidates per tokenizer (see count_tokens).
  std::mutex token_mutex;
  std::unordered_map<uint64_t, uint32_t> token_counts;
  std::unordered_map<std::string, uint64_t> vocab_of;  // model → vocab_hash (under token_mutex)
  std::mutex template_mutex;
  std::unordered_map<std::string, bool> chat_template;  // per model, read once

  explicit Impl(Config c) : config(std::move(c)), cache(config.cache_entries) {}

  // ---- services the stages use (pipeline.cpp) ----
  std::size_t count_tokens(const std::string& model, std::string_view text);
  bool has_chat_template(const std::string& model);
  std::string new_request_id();
  void remember(const std::string& id);  // under log_mutex
  std::shared_ptr<const Routing> current_router();
  void adopt(const router::Router& r);
  std::vector<std::string> map_router_models(const router::Router& r) const;
  void write_log(const nlohmann::json& row);

  // ---- the stages (stages.cpp), in the order the flows run them (Pipeline::run lists both) ----
  // A stage reads what the ones before it left in the state and adds its own part; each times itself.
  using Stage = void (Impl::*)(RequestState&);
  void validate(RequestState& st);           // the request's fields; a request id; max_tokens
  void start_early_load(RequestState& st);   // a model known before routing loads beside retrieval
  void embed_query(RequestState& st);        // naive: the query's vector for its dense search
  void dense_search(RequestState& st);       // naive: plain dense top-k, k = max_docs
  void search_and_expand(RequestState& st);  // routed: hybrid search (embeds inside) + 2-hop expansion
  void attend(RequestState& st);             // routed: graph scores over the subgraph
  void route(RequestState& st);              // routed: model, context size, retrieval, sampling
  void load_model(RequestState& st);         // the chosen model, loaded (the first call pays here)
  void build_context(RequestState& st);      // the blocks within the budget, the user turn
  void choose_sampling(RequestState& st);    // config < router < request; the cache key
  void answer(RequestState& st);             // from the response cache, or generated
  void write_back(RequestState& st);         // a Q/A node with derived edges (when enabled)
  void store_in_cache(RequestState& st);     // total time; the answer into the response cache
  void log_request(RequestState& st);        // one JSONL row (request_log.cpp)
};

}  // namespace ruvllm::pipeline
