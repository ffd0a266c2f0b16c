// The orchestrator's frame: opening what the configuration names, the request's admission and its
// stage list (the stages are in stages.cpp), feedback, shutdown, and the evidence the router's
// context heads learn from.
#include <algorithm>
#include <filesystem>
#include <span>

#include "common/clock.h"
#include "common/hash.h"
#include "common/utf8.h"
#include "common/uuid.h"
#include "gather.h"
#include "impl.h"

namespace ruvllm::pipeline {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using common::unix_ms;

}  // namespace

// A node's text never changes, and tokenizing a chunk costs ~250 µs with a 65k-token BPE vocabulary:
// counts are keyed by a hash of the model's vocabulary and the text, so the rungs of one family
// (every LFM2 size) share them.
std::size_t Pipeline::Impl::count_tokens(const std::string& model, std::string_view text) {
  // Short strings are block headers, whose score changes every request, and separators: a few
  // µs to count, and caching them would only crowd out the chunks.
  if (text.size() < 128) return engine->tokenize(model, text, false).size();
  uint64_t vocab = 0;
  {
    std::lock_guard lock(token_mutex);
    if (auto it = vocab_of.find(model); it != vocab_of.end()) vocab = it->second;
  }
  if (vocab == 0) vocab = engine->info(model).vocab_hash;  // read once per model, outside the lock
  const uint64_t key = common::fnv1a(text, vocab);
  {
    std::lock_guard lock(token_mutex);
    vocab_of.emplace(model, vocab);
    if (auto it = token_counts.find(key); it != token_counts.end()) return it->second;
  }
  const std::size_t n = engine->tokenize(model, text, false).size();
  std::lock_guard lock(token_mutex);
  if (token_counts.size() > 1'000'000) token_counts.clear();  // bounded: ~16 MB at most
  token_counts.emplace(key, static_cast<uint32_t>(n));
  return n;
}

bool Pipeline::Impl::has_chat_template(const std::string& model) {
  std::lock_guard lock(template_mutex);
  auto it = chat_template.find(model);
  if (it == chat_template.end()) it = chat_template.emplace(model, !engine->info(model).chat_template.empty()).first;
  return it->second;
}

std::string Pipeline::Impl::new_request_id() {
  std::lock_guard lock(id_mutex);
  return common::uuid_v4(rng);
}

void Pipeline::Impl::remember(const std::string& id) {
  recent_ids.push_back(id);
  recent_set.insert(id);
  if (recent_ids.size() > kRecent) {
    recent_set.erase(recent_ids.front());
    recent_ids.pop_front();
  }
}

std::shared_ptr<const Pipeline::Impl::Routing> Pipeline::Impl::current_router() {
  if (!router) return {};
  // A stat per second at most: a new file from `ruvllm router train` is picked up while serving.
  const int64_t now = unix_ms();
  if (now - router_checked_ms.load(std::memory_order_relaxed) > 1000) {
    router_checked_ms = now;
    std::string error;
    if (router->reload_if_changed(&error)) {
      try {
        adopt(*router->get());
      } catch (const Error&) {  // a new router whose models are not on the ladder: keep the old one
      }
    }
  }
  std::lock_guard lock(router_mutex);
  return routing;
}

void Pipeline::Impl::adopt(const router::Router& r) {
  auto next = std::make_shared<Routing>(Routing{r, map_router_models(r)});
  if (config.router_threshold) next->router.threshold = *config.router_threshold;
  if (config.confidence_floor > 0) next->router.confidence_floor = config.confidence_floor;
  std::lock_guard lock(router_mutex);
  routing = std::move(next);
}

std::vector<std::string> Pipeline::Impl::map_router_models(const router::Router& r) const {
  std::vector<std::string> mapped;
  for (const auto& name : r.ladder().models) {
    auto it = config.router_models.find(name);
    const std::string target = it == config.router_models.end() ? name : it->second;
    bool on_ladder = false;
    for (const auto& m : config.models) on_ladder |= m.name == target;
    if (!on_ladder)
      throw Error("router.models: the router's model '" + name + "' maps to no [[model]] (add router.models.\"" + name +
                  "\" = \"<model name>\")");
    mapped.push_back(target);
  }
  return mapped;
}

Pipeline::Pipeline(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {
  try {
    open();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {  // not ours (the file system, the standard library)
    throw Error(ErrorCode::internal, e.what());
  }
}

void Pipeline::open() {
  Impl& s = *impl_;
  Config& c = s.config;
  fill_derived_defaults(c);  // as config::load does, for a Config built in code
  if (c.models.empty()) throw Error("the configuration has no [[model]]");
  std::error_code ec;
  fs::create_directories(c.data_dir, ec);
  if (ec) throw Error(ErrorCode::io, "cannot create data_dir " + c.data_dir + ": " + ec.message());
  if (auto parent = fs::path(c.memory_path).parent_path(); !parent.empty()) fs::create_directories(parent, ec);

  embed::WordVectorParams wp;
  wp.path = c.word_vectors;
  s.embedder = embed::open_word_vectors(wp);
  memory::MemoryParams mp;
  mp.path = c.memory_path;
  mp.embedder = s.embedder;
  s.memory = std::make_unique<memory::Memory>(std::move(mp));

  llm::EngineParams ep;
  ep.ladder = c.models;
  ep.load_mode = c.load_mode;
  ep.gpu_layers = c.gpu_layers;
  ep.threads = c.threads;
  ep.context = c.context;
  ep.parallel = c.parallel;
  s.engine = std::make_unique<llm::Engine>(std::move(ep));

  if (!c.router_file.empty()) {
    try {
      s.router = std::make_unique<router::RouterHandle>(c.router_file);
    } catch (const Error& e) {
      throw e.prefixed("router.file: ");
    }
    s.adopt(*s.router->get());
  }
  if (c.scorer == "retrieval")
    s.scorer = attention::retrieval_order();
  else if (c.scorer == "pagerank")
    s.scorer = attention::personalized_pagerank();
  else if (c.scorer == "attention") {
    try {
      s.scorer = attention::graph_attention(
          std::make_shared<const attention::AttentionModel>(attention::AttentionModel::load(c.attention_file)));
    } catch (const Error& e) {
      throw e.prefixed("attention.file: ");
    }
  } else {
    throw Error("attention.scorer: unknown scorer '" + c.scorer + "'");
  }

  if (c.request_log != "off") {
    // Earlier requests stay open to feedback across restarts.
    if (std::ifstream old(c.request_log); old) {
      std::string line;
      while (std::getline(old, line)) {
        const auto row = json::parse(line, nullptr, false);
        if (row.is_object() && row.contains("request_id") && row["request_id"].is_string())
          s.remember(row["request_id"].get<std::string>());
      }
    }
    if (auto parent = fs::path(c.request_log).parent_path(); !parent.empty()) fs::create_directories(parent, ec);
    s.log.open(c.request_log, std::ios::app);
    if (!s.log) throw Error(ErrorCode::io, "pipeline.request_log: cannot open " + c.request_log + " for appending");
  }
}

Pipeline::~Pipeline() {
  try {
    shutdown();
  } catch (...) {  // a destructor must not throw; shutdown() reports through its own callers
  }
}

const Config& Pipeline::config() const { return impl_->config; }
const memory::Memory& Pipeline::memory() const { return *impl_->memory; }
llm::Engine& Pipeline::engine() { return *impl_->engine; }
const embed::Embedder& Pipeline::embedder() const { return *impl_->embedder; }
std::string Pipeline::add_node(memory::Node node) { return impl_->memory->add(std::move(node)); }

std::vector<std::string> Pipeline::add_batch(std::vector<memory::Node> nodes, std::vector<memory::Edge> edges) {
  std::vector<std::string> ends;
  for (const auto& e : edges) {
    ends.push_back(e.src);
    ends.push_back(e.dst);
  }
  auto ids = impl_->memory->add_batch(std::move(nodes), std::move(edges));
  impl_->cache.invalidate(ends);  // an edge to an old node changes that node's neighbourhood
  return ids;
}

bool Pipeline::remove_node(std::string_view id) {
  const bool removed = impl_->memory->remove(id);
  if (removed) impl_->cache.invalidate({std::string(id)});
  return removed;
}

std::string Pipeline::link(memory::Edge edge) {
  std::string id = impl_->memory->link(edge);
  impl_->cache.invalidate({edge.src, edge.dst});
  return id;
}

bool Pipeline::unlink(std::string_view edge_id) {
  const bool removed = impl_->memory->unlink(edge_id);
  if (removed) impl_->cache.clear();  // the store finds edges by node, not by id: every cached answer goes
  return removed;
}

memory::IngestReport Pipeline::ingest(const std::vector<std::string>& paths, const memory::IngestParams& params) {
  memory::IngestReport report = memory::ingest(*impl_->memory, paths, params);
  // Its edges (same topic, mentions, near duplicates) reach nodes that cached answers used.
  if (report.chunks > 0) impl_->cache.clear();
  return report;
}

void Pipeline::invalidate(const std::vector<std::string>& node_ids) { impl_->cache.invalidate(node_ids); }
void Pipeline::invalidate_all() { impl_->cache.clear(); }
std::size_t Pipeline::in_flight() const { return impl_->in_flight.load(); }

void Pipeline::shutdown() {
  Impl& s = *impl_;
  {
    std::unique_lock lock(s.flight_mutex);
    if (s.closed) return;
    s.closed = true;
    s.flight_done.wait(lock, [&] { return s.in_flight.load() == 0; });
  }
  {
    std::lock_guard lock(s.log_mutex);
    if (s.log.is_open()) s.log.flush();
    if (s.feedback_log.is_open()) s.feedback_log.flush();
  }
  s.memory->checkpoint();
}

void Pipeline::feedback(const std::string& request_id, std::optional<double> score, const std::string& label) {
  Impl& s = *impl_;
  if (score && !(*score >= 0 && *score <= 1)) throw Error("score must be a number in [0, 1]");
  if (!score && label.empty()) throw Error("feedback needs a score or a label");
  if (common::first_invalid_utf8(label)) throw Error("label is not valid UTF-8");
  std::lock_guard lock(s.log_mutex);
  if (!s.recent_set.count(request_id)) throw Error(ErrorCode::not_found, "unknown request_id '" + request_id + "'");
  if (!s.feedback_log.is_open()) {
    const auto path = (fs::path(s.config.data_dir) / "feedback.jsonl").string();
    s.feedback_log.open(path, std::ios::app);
    if (!s.feedback_log) throw Error(ErrorCode::io, "cannot open " + path + " for appending");
  }
  json row = {{"request_id", request_id}, {"timestamp", common::iso8601_now()}, {"label", label}};
  row["score"] = score ? json(*score) : json(nullptr);
  s.feedback_log << row.dump() << '\n';
  s.feedback_log.flush();
}

Response Pipeline::run(Request req) {
  // The two flows, stage by stage (impl.h says what each stage reads and adds).
  using I = Impl;
  static constexpr I::Stage kRouted[] = {&I::validate, &I::start_early_load, &I::search_and_expand, &I::attend,
                                         &I::route,    &I::load_model,       &I::build_context,     &I::choose_sampling,
                                         &I::answer,   &I::write_back,       &I::store_in_cache,    &I::log_request};
  static constexpr I::Stage kNaive[] = {&I::validate,   &I::start_early_load, &I::embed_query,     &I::dense_search,
                                        &I::load_model, &I::build_context,    &I::choose_sampling, &I::answer,
                                        &I::write_back, &I::store_in_cache,   &I::log_request};
  Impl& s = *impl_;
  const auto t0 = common::Clock::now();
  {
    std::lock_guard lock(s.flight_mutex);
    if (s.closed) throw Error(ErrorCode::unavailable, "the pipeline is shutting down");
    ++s.in_flight;
  }
  struct Leave {
    Impl& s;
    ~Leave() {
      std::lock_guard lock(s.flight_mutex);
      if (--s.in_flight == 0) s.flight_done.notify_all();
    }
  } leave{s};
  // After `leave`, so destroyed before it: a model still loading for a request that failed
  // (the state's early_load future waits for it) is done before shutdown() may free the engine.
  RequestState st;
  st.t0 = t0;
  st.req = std::move(req);
  const std::span<const I::Stage> flow =
      st.req.flow == Flow::naive ? std::span<const I::Stage>(kNaive) : std::span<const I::Stage>(kRouted);
  for (const I::Stage stage : flow) (s.*stage)(st);
  return std::move(st.out);
}

Pipeline::Evidence Pipeline::evidence(const LabelledQuestion& question, const std::vector<int>& context_bins) {
  Impl& s = *impl_;
  const Config& c = s.config;
  if (question.text.empty()) throw Error("the question is empty");
  if (common::first_invalid_utf8(question.text)) throw Error("the question is not valid UTF-8");
  if (context_bins.empty()) throw Error("evidence needs at least one context bin");
  const embed::Embedding e = s.embedder->embed(question.text);
  const Retrieved r = retrieve(*s.memory, question.text, e.vector, c.retrieve);
  const attention::Scores sc = s.scorer->score(r.graph);
  Evidence out;
  out.signals.query.text = question.text;
  out.signals.query.embedding = e.vector;
  out.signals.query.tokens = e.tokens;
  out.signals.query.known_tokens = e.known;
  out.signals.retrieval = detail::retrieval_signals(r, e.vector, sc);

  std::vector<std::string> gold = question.gold_sources;  // a source listed twice counts once
  std::sort(gold.begin(), gold.end());
  gold.erase(std::unique(gold.begin(), gold.end()), gold.end());
  s.engine->load(c.default_model);
  for (int k = 0; k < 4; ++k) {
    const auto strategy = static_cast<router::Retrieval>(k);
    const detail::Candidates cand =
        detail::gather(*s.memory, r, sc.score, strategy, c.max_docs, question.text, e.vector, false);
    for (const int bin : context_bins) {
      attention::ContextParams cp;
      cp.max_docs = c.max_docs;
      cp.max_tokens = std::min<std::size_t>(c.max_context_tokens, static_cast<std::size_t>(std::max(0, bin)));
      cp.count_tokens = [&](std::string_view text) { return s.count_tokens(c.default_model, text); };
      attention::Context ctx;
      if (!cand.candidates.empty() && cp.max_tokens > 0) ctx = attention::build_context(cand.candidates, cp);
      std::vector<std::string> found;
      for (std::size_t i : ctx.used) {
        const auto meta = json::parse(cand.from[i]->metadata, nullptr, false);
        if (meta.is_object() && meta.contains("source_id") && meta["source_id"].is_string() &&
            std::binary_search(gold.begin(), gold.end(), meta["source_id"].get<std::string>())) {
          found.push_back(meta["source_id"]);
        }
      }
      std::sort(found.begin(), found.end());
      found.erase(std::unique(found.begin(), found.end()), found.end());
      out.trials.push_back({strategy, bin,
                            gold.empty() ? 0.0 : static_cast<double>(found.size()) / static_cast<double>(gold.size()),
                            ctx.tokens, ctx.used.size()});
    }
  }
  return out;
}

}  // namespace ruvllm::pipeline
