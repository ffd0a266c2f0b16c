// The orchestrator: one request through embed → retrieve → attend → route → build context →
// generate → write back, every stage timed, one JSONL row per request.
#include <sys/sysinfo.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "common/hash.h"
#include "common/utf8.h"
#include "pipeline/config_defaults.h"
#include "ruvllm/embed.h"
#include "ruvllm/pipeline.h"

namespace ruvllm::pipeline {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

int64_t micros_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string iso8601_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Lower case, whitespace runs collapsed, ends trimmed: "What is X ?" and "what  is x ?" share a key.
std::string normalise_query(std::string_view q) {
  std::string out;
  bool space = false;
  for (unsigned char c : q) {
    if (std::isspace(c)) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += static_cast<char>(std::tolower(c));
  }
  return out;
}

const char* flow_name(Flow f) { return f == Flow::naive ? "naive" : "routed"; }

double memory_available_gib() {
  struct sysinfo si {};
  if (sysinfo(&si) != 0) return 0;
  return static_cast<double>(si.freeram + si.bufferram) * si.mem_unit / (1024.0 * 1024 * 1024);
}

// The response cache: LRU over answers keyed by the request's normalised query, settings and the
// ids of the context it used; an entry dies when any of those nodes (or their edges) change.
class ResponseCache {
 public:
  explicit ResponseCache(std::size_t capacity) : capacity_(capacity) {}

  std::optional<Response> get(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    order_.splice(order_.begin(), order_, it->second);
    return it->second->response;
  }

  void put(const std::string& key, const Response& response) {
    if (capacity_ == 0) return;
    std::lock_guard lock(mutex_);
    if (auto it = map_.find(key); it != map_.end()) erase(it->second);
    order_.push_front({key, response});
    map_[key] = order_.begin();
    for (const auto& b : response.context) by_node_[b.node_id].insert(key);
    while (map_.size() > capacity_) erase(std::prev(order_.end()));
  }

  void clear() {
    std::lock_guard lock(mutex_);
    order_.clear();
    map_.clear();
    by_node_.clear();
  }

  void invalidate(const std::vector<std::string>& node_ids) {
    std::lock_guard lock(mutex_);
    for (const auto& id : node_ids) {
      auto it = by_node_.find(id);
      if (it == by_node_.end()) continue;
      const auto keys = it->second;
      for (const auto& key : keys)
        if (auto m = map_.find(key); m != map_.end()) erase(m->second);
    }
  }

 private:
  struct Entry {
    std::string key;
    Response response;
  };
  void erase(std::list<Entry>::iterator e) {
    for (const auto& b : e->response.context) {
      auto it = by_node_.find(b.node_id);
      if (it == by_node_.end()) continue;
      it->second.erase(e->key);
      if (it->second.empty()) by_node_.erase(it);
    }
    map_.erase(e->key);
    order_.erase(e);
  }
  std::size_t capacity_;
  std::mutex mutex_;
  std::list<Entry> order_;
  std::unordered_map<std::string, std::list<Entry>::iterator> map_;
  std::unordered_map<std::string, std::unordered_set<std::string>> by_node_;
};

// The router's retrieval signals: every hit's dense similarity (0 for lexical-only hits), the
// seeds' vectors, the attention's entropy and depth, and how many of the top 10 both searches found.
router::RetrievalSignals retrieval_signals(const Retrieved& r, const std::vector<float>& query_vector,
                                           const attention::Scores& sc) {
  router::RetrievalSignals out;
  std::size_t both = 0, top = std::min<std::size_t>(10, r.search.hits.size());
  for (std::size_t i = 0; i < r.search.hits.size(); ++i) {
    const auto& h = r.search.hits[i];
    out.scores.push_back(static_cast<float>(h.dense_rank >= 0 ? h.similarity : 0.0));
    if (i < top) both += h.dense_rank >= 0 && h.lexical_rank >= 0;
  }
  for (std::size_t i = 0; i < r.subgraph.nodes.size() && out.embeddings.size() < 8; ++i)
    if (r.subgraph.depth[i] == 0 && r.subgraph.nodes[i].vector.size() == query_vector.size() && !query_vector.empty())
      out.embeddings.push_back(r.subgraph.nodes[i].vector);
  out.attention_entropy = sc.entropy;
  out.graph_depth = sc.depth_touched;
  out.search_agreement = top ? static_cast<double>(both) / static_cast<double>(top) : 0;
  return out;
}

struct Candidates {
  bool more = false;  // graph: subgraph nodes beyond the `offered` best were left out
  std::vector<attention::Candidate> candidates;
  std::vector<ContextBlock> blocks;       // the same nodes, for the response
  std::vector<const memory::Node*> from;  // into `owned` or the subgraph: metadata for evidence
  std::deque<memory::Node> owned;         // rows read from the store (hits outside the subgraph, or a
                                          // subgraph expanded without rows)
};

// The context candidates a retrieval strategy gives: none; the dense top-`want` (the naive flow's
// search: its own, since a dense hit need not be among the fused candidates); the fused hits
// (≤ want); or the `offered` best subgraph nodes by graph score, in the order the context builder
// reads them (it cuts to max_docs). `r.search` is that dense search already when the flow is naive.
// Rows the subgraph does not hold are read in one statement; a node removed since the search
// leaves a gap.
Candidates gather(const memory::Memory& memory, const Retrieved& r, const std::vector<double>& scores,
                  router::Retrieval strategy, std::size_t want, const std::string& query,
                  const std::vector<float>& query_vector, bool search_is_dense,
                  std::size_t offered = std::numeric_limits<std::size_t>::max()) {
  struct Pick {
    const std::string* id;
    double score;
    const memory::Node* row;  // null: read from the store
  };
  std::vector<Pick> picks;
  std::unordered_map<std::string_view, const memory::Node*> in_subgraph;
  // A subgraph expanded without rows has no text: a stored node's text is never empty.
  auto with_row = [](const memory::Node* n) { return n && !n->text.empty() ? n : nullptr; };
  if (strategy == router::Retrieval::dense || strategy == router::Retrieval::hybrid)
    for (const auto& n : r.subgraph.nodes) in_subgraph.emplace(n.id, &n);
  auto pick_hits = [&](const std::vector<memory::Hit>& hits, bool similarity) {
    for (std::size_t i = 0; i < hits.size() && picks.size() < want; ++i) {
      const auto it = in_subgraph.find(hits[i].id);
      picks.push_back({&hits[i].id, similarity ? hits[i].similarity : hits[i].score,
                       it == in_subgraph.end() ? nullptr : with_row(it->second)});
    }
  };
  memory::SearchResult own;
  switch (strategy) {
    case router::Retrieval::none: break;
    case router::Retrieval::dense:
      if (!search_is_dense && !query_vector.empty() && want > 0) {
        memory::SearchQuery sq;
        sq.text = query;
        sq.vector = query_vector;
        sq.k = want;
        sq.mode = memory::SearchMode::dense;
        own = memory.search(sq);
      }
      pick_hits(search_is_dense ? r.search.hits : own.hits, true);
      break;
    case router::Retrieval::hybrid: pick_hits(r.search.hits, false); break;
    case router::Retrieval::hybrid_graph: {
      // Best first, ties in subgraph order: the order build_context's stable sort gives the whole
      // list, so the first `offered` are read exactly as they would be there.
      if (scores.size() != r.subgraph.nodes.size()) throw Error("gather: one score per subgraph node expected");
      std::vector<std::size_t> order(scores.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
      for (std::size_t k = 0; k < std::min(offered, order.size()); ++k) {
        const std::size_t i = order[k];
        picks.push_back({&r.subgraph.nodes[i].id, scores[i], with_row(&r.subgraph.nodes[i])});
      }
      break;
    }
  }
  Candidates out;
  out.more = strategy == router::Retrieval::hybrid_graph && offered < r.subgraph.nodes.size();
  std::vector<std::string> missing;
  for (const Pick& p : picks)
    if (!p.row) missing.push_back(*p.id);
  auto rows = missing.empty() ? std::vector<std::optional<memory::Node>>{} : memory.get_many(missing);
  std::size_t next_row = 0;
  for (const Pick& p : picks) {
    const memory::Node* n = p.row;
    if (!n) {
      auto& row = rows[next_row++];
      if (!row) continue;  // removed since the search
      n = &out.owned.emplace_back(std::move(*row));
    }
    out.candidates.push_back({n->text, std::string(memory::to_string(n->type)), "", p.score});
    out.blocks.push_back({n->id, n->title, std::string(memory::to_string(n->type)), n->text, p.score});
    out.from.push_back(n);
  }
  return out;
}

}  // namespace

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
  ResponseCache cache;

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

  explicit Impl(Config c) : config(std::move(c)), cache(config.cache_entries) {}

  // Token counts of context candidates per tokenizer: a node's text never changes, and tokenizing
  // a chunk costs ~250 µs with a 65k-token BPE vocabulary. Keyed by a hash of the model's vocabulary
  // and the text, so the rungs of one family (every LFM2 size) share their counts.
  std::mutex token_mutex;
  std::unordered_map<uint64_t, uint32_t> token_counts;
  std::unordered_map<std::string, uint64_t> vocab_of;  // model → vocab_hash (under token_mutex)
  std::size_t count_tokens(const std::string& model, std::string_view text) {
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

  std::mutex template_mutex;
  std::unordered_map<std::string, bool> chat_template;  // per model, read once
  bool has_chat_template(const std::string& model) {
    std::lock_guard lock(template_mutex);
    auto it = chat_template.find(model);
    if (it == chat_template.end()) it = chat_template.emplace(model, !engine->info(model).chat_template.empty()).first;
    return it->second;
  }

  std::string new_request_id() {
    std::lock_guard lock(id_mutex);
    const uint64_t a = rng(), b = rng();
    char buf[37];
    std::snprintf(buf, sizeof buf, "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                  static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xfff),
                  static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3fff)),
                  static_cast<unsigned long long>(b & 0xffffffffffffULL));
    return buf;
  }

  void remember(const std::string& id) {  // under log_mutex
    recent_ids.push_back(id);
    recent_set.insert(id);
    if (recent_ids.size() > kRecent) {
      recent_set.erase(recent_ids.front());
      recent_ids.pop_front();
    }
  }

  std::shared_ptr<const Routing> current_router() {
    if (!router) return {};
    // A stat per second at most: a new file from `ruvllm router train` is picked up while serving.
    const int64_t now = now_ms();
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

  void adopt(const router::Router& r) {
    auto next = std::make_shared<Routing>(Routing{r, map_router_models(r)});
    if (config.router_threshold) next->router.threshold = *config.router_threshold;
    if (config.confidence_floor > 0) next->router.confidence_floor = config.confidence_floor;
    std::lock_guard lock(router_mutex);
    routing = std::move(next);
  }

  std::vector<std::string> map_router_models(const router::Router& r) const {
    std::vector<std::string> mapped;
    for (const auto& name : r.ladder().models) {
      auto it = config.router_models.find(name);
      const std::string target = it == config.router_models.end() ? name : it->second;
      bool on_ladder = false;
      for (const auto& m : config.models) on_ladder |= m.name == target;
      if (!on_ladder)
        throw Error("router.models: the router's model '" + name + "' maps to no [[model]] (add router.models.\"" +
                    name + "\" = \"<model name>\")");
      mapped.push_back(target);
    }
    return mapped;
  }

  void write_log(const json& row) {
    std::lock_guard lock(log_mutex);
    remember(row["request_id"].get<std::string>());
    if (!log.is_open()) return;
    log << row.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
    log.flush();  // a row per request survives a crash of the process
  }
};

Pipeline::Pipeline(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {
  try {
    open();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {  // memory, embed, llm, router errors: one type for the caller
    throw Error(e.what());
  }
}

void Pipeline::open() {
  Impl& s = *impl_;
  Config& c = s.config;
  detail::fill_derived_defaults(c);  // as load_config does, for a Config built in code
  if (c.models.empty()) throw Error("the configuration has no [[model]]");
  std::error_code ec;
  fs::create_directories(c.data_dir, ec);
  if (ec) throw Error("cannot create data_dir " + c.data_dir + ": " + ec.message());
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
    } catch (const router::Error& e) {
      throw Error(std::string("router.file: ") + e.what());
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
    } catch (const attention::Error& e) {
      throw Error(std::string("attention.file: ") + e.what());
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
    if (!s.log) throw Error("pipeline.request_log: cannot open " + c.request_log + " for appending");
  }
}

Pipeline::~Pipeline() {
  try {
    shutdown();
  } catch (...) {  // a destructor must not throw; shutdown() reports through its own callers
  }
}

const Config& Pipeline::config() const { return impl_->config; }
memory::Memory& Pipeline::memory() { return *impl_->memory; }
llm::Engine& Pipeline::engine() { return *impl_->engine; }
const embed::Embedder& Pipeline::embedder() const { return *impl_->embedder; }
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
  if (!s.recent_set.count(request_id)) throw Error("unknown request_id '" + request_id + "'");
  if (!s.feedback_log.is_open()) {
    const auto path = (fs::path(s.config.data_dir) / "feedback.jsonl").string();
    s.feedback_log.open(path, std::ios::app);
    if (!s.feedback_log) throw Error("cannot open " + path + " for appending");
  }
  json row = {{"request_id", request_id}, {"timestamp", iso8601_now()}, {"label", label}};
  row["score"] = score ? json(*score) : json(nullptr);
  s.feedback_log << row.dump() << '\n';
  s.feedback_log.flush();
}

Response Pipeline::run(Request req) {
  Impl& s = *impl_;
  const Config& c = s.config;
  const auto t0 = Clock::now();
  // ---- admission and validation -------------------------------------------------------------
  {
    std::lock_guard lock(s.flight_mutex);
    if (s.closed) throw Error("the pipeline is shutting down");
    ++s.in_flight;
  }
  struct Leave {
    Impl& s;
    ~Leave() {
      std::lock_guard lock(s.flight_mutex);
      if (--s.in_flight == 0) s.flight_done.notify_all();
    }
  } leave{s};

  if (req.query.empty()) throw Error("the query is empty");
  if (req.system_prompt && common::first_invalid_utf8(*req.system_prompt))
    throw Error("the system prompt is not valid UTF-8");
  if (auto at = common::first_invalid_utf8(req.query))
    throw Error("the query is not valid UTF-8 (byte " + std::to_string(*at) + ")");
  for (const auto& m : req.history) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant")
      throw Error("unknown message role '" + m.role + "' (system, user, assistant)");
    if (common::first_invalid_utf8(m.content)) throw Error("a message is not valid UTF-8");
  }
  const bool explicit_model = !req.model.empty() && req.model != "auto";
  if (explicit_model) {
    bool known = false;
    for (const auto& m : c.models) known |= m.name == req.model;
    if (!known) {
      std::string names;
      for (const auto& m : c.models) names += (names.empty() ? "" : ", ") + m.name;
      throw Error("unknown model '" + req.model + "' (models: auto, " + names + ")");
    }
  }
  const int max_tokens = req.max_tokens.value_or(c.max_tokens);
  if (max_tokens < 0) throw Error("max_tokens must be >= 0");
  if (req.temperature && !(*req.temperature >= 0 && *req.temperature <= 10))
    throw Error("temperature must be in [0, 10]");
  if (req.top_p && !(*req.top_p > 0 && *req.top_p <= 1)) throw Error("top_p must be in (0, 1]");

  Response out;
  out.request_id = s.new_request_id();
  const bool naive = req.flow == Flow::naive;
  // When the model is known before routing (explicit, or the naive flow), a model that is not yet
  // loaded loads while retrieval runs instead of after it.
  std::future<void> early_load;
  if (explicit_model || naive) {
    const std::string model = explicit_model ? req.model : c.default_model;
    if (!s.engine->loaded(model)) early_load = std::async(std::launch::async, [&s, model] { s.engine->load(model); });
  }

  // ---- embed --------------------------------------------------------------------------------
  // The naive flow's dense search needs the vector first; the routed flow's search embeds the query
  // itself, beside its lexical half (whose helper thread wakes meanwhile).
  auto t = Clock::now();
  embed::Embedding e;
  if (naive) e = s.embedder->embed(req.query);
  out.times.embed = micros_since(t);

  // ---- retrieve -----------------------------------------------------------------------------
  Retrieved r;
  std::vector<double> scores;  // per subgraph node (routed)
  if (naive) {
    out.decision.retrieval = router::Retrieval::dense;
    out.decision.context_tokens = static_cast<int>(c.max_context_tokens);
    t = Clock::now();
    if (!e.vector.empty() && c.max_docs > 0) {
      memory::SearchQuery sq;
      sq.text = req.query;
      sq.vector = e.vector;
      sq.k = c.max_docs;
      sq.mode = memory::SearchMode::dense;
      r.search = s.memory->search(sq);
    }
    out.times.search = micros_since(t);
  } else {
    RetrieveParams rp = c.retrieve;
    rp.expand.full_rows = false;  // graph scoring needs no text: gather() reads the rows the context uses
    r = retrieve(*s.memory, req.query, rp);
    e = r.search.query_embedding;
    out.times.embed = r.search.embed_us;  // inside the search: timed there, counted once
    out.times.search = r.search_us - r.search.embed_us;
    out.times.expand = r.expand_us;
    t = Clock::now();
    const attention::Scores sc = s.scorer->score(r.graph);
    scores = sc.score;
    out.attention_entropy = sc.entropy;
    out.times.attend = micros_since(t);
    out.decision.retrieval = router::Retrieval::hybrid_graph;
    out.decision.context_tokens = static_cast<int>(c.max_context_tokens);
    // ---- route ------------------------------------------------------------------------------
    t = Clock::now();
    if (const auto routing = explicit_model ? nullptr : s.current_router()) {
      const router::Router& rt = routing->router;
      router::Signals sig;
      sig.query.text = req.query;
      sig.query.embedding = e.vector;
      sig.query.tokens = e.tokens;
      sig.query.known_tokens = e.known;
      sig.retrieval = retrieval_signals(r, e.vector, sc);
      sig.system = req.constraints;
      sig.system.concurrent_requests = s.in_flight.load();
      sig.system.memory_available_gib = memory_available_gib();
      const router::FeatureVector f = rt.features(sig);
      out.features.assign(f.begin(), f.end());
      out.decision = rt.decide(f, sig.system);
      out.model = routing->to_model.at(out.decision.model);
      out.routed = true;
    }
    out.times.route = micros_since(t);
  }
  if (out.model.empty()) out.model = explicit_model ? req.model : c.default_model;

  // ---- context ------------------------------------------------------------------------------
  t = Clock::now();
  if (early_load.valid()) early_load.get();  // rethrows a failed load
  s.engine->load(out.model);                 // the first request to a model pays its load here, inside "llm"
  const int64_t load_us = micros_since(t);
  t = Clock::now();
  out.retrieved = r.search.hits.size();
  {
    double sum = 0, sq = 0;
    std::size_t n = 0;
    for (const auto& h : r.search.hits)
      if (h.dense_rank >= 0) {
        const double d = 1.0 - h.similarity;
        sum += d;
        sq += d * d;
        ++n;
      }
    if (n) {
      out.distance_mean = sum / static_cast<double>(n);
      out.distance_std = std::sqrt(std::max(0.0, sq / static_cast<double>(n) - out.distance_mean * out.distance_mean));
    }
  }
  attention::ContextParams cp;
  cp.max_docs = c.max_docs;
  cp.max_tokens = naive ? c.max_context_tokens
                        : std::min<std::size_t>(c.max_context_tokens,
                                                static_cast<std::size_t>(std::max(0, out.decision.context_tokens)));
  cp.count_tokens = [&](std::string_view text) { return s.count_tokens(out.model, text); };
  out.decision.context_tokens = static_cast<int>(cp.max_tokens);  // the budget applied, after the config's cap
  attention::Context ctx;
  Candidates cand;
  if (cp.max_tokens > 0 && cp.max_docs > 0) {
    // The graph's candidates are offered best first, twice max_docs at a time: the builder looks
    // further only past duplicates, and reading every subgraph row would cost what the expansion
    // without rows saved. More only when it used up what it was offered without filling the context.
    for (std::size_t offered = 2 * cp.max_docs;; offered *= 2) {
      cand = gather(*s.memory, r, scores, naive ? router::Retrieval::dense : out.decision.retrieval, c.max_docs,
                    req.query, e.vector, naive, offered);
      if (!cand.candidates.empty()) ctx = attention::build_context(cand.candidates, cp);
      const bool used_up =
          ctx.used.size() < cp.max_docs && ctx.used.size() + ctx.dropped_duplicates == cand.candidates.size();
      if (!cand.more || !used_up) break;
    }
  }
  for (std::size_t i : ctx.used) out.context.push_back(std::move(cand.blocks[i]));
  out.user_turn = ctx.text.empty() ? req.query : ctx.text + "Question: " + req.query;
  out.times.context = micros_since(t);

  // ---- generate (or answer from the cache) --------------------------------------------------
  llm::Sampling sampling = c.sampling;
  if (out.routed) {
    sampling.temperature = out.decision.temperature;
    sampling.top_p = out.decision.top_p;
  }
  if (req.temperature) sampling.temperature = *req.temperature;
  if (req.top_p) sampling.top_p = *req.top_p;
  if (req.seed) sampling.seed = *req.seed;
  out.decision.temperature = sampling.temperature;
  out.decision.top_p = sampling.top_p;

  std::string cache_key;
  const bool cacheable = req.use_cache && req.history.empty() && c.cache_entries > 0;
  if (cacheable) {
    cache_key = normalise_query(req.query) + '\x1f' + out.model + '\x1f' + flow_name(req.flow) + '\x1f' +
                std::to_string(max_tokens) + '\x1f' + std::to_string(sampling.temperature) + '\x1f' +
                std::to_string(sampling.top_p) + '\x1f' + (sampling.seed ? std::to_string(*sampling.seed) : "-") +
                '\x1f' + (req.ignore_eos ? "1" : "0") + '\x1f' +
                hex64(common::fnv1a(req.system_prompt.value_or(c.system_prompt)));
    for (const auto& stop : req.stop) cache_key += '\x1f' + stop;
    for (const auto& b : out.context) cache_key += '\x1e' + b.node_id;
  }
  if (req.on_start) req.on_start(out);
  std::optional<Response> cached = cacheable ? s.cache.get(cache_key) : std::nullopt;
  if (!req.generate) {
    // Inspection: the route and the context, no answer.
  } else if (cached) {
    out.answer = cached->answer;
    out.finish = cached->finish;
    out.completion_tokens = cached->completion_tokens;
    out.generated_weights = cached->generated_weights;
    out.cache_hit = true;
    if (req.on_text && !out.answer.empty()) req.on_text(out.answer);
  } else {
    llm::GenerateRequest g;
    std::vector<llm::ChatMessage> messages{{"system", req.system_prompt.value_or(c.system_prompt)}};
    messages.insert(messages.end(), req.history.begin(), req.history.end());
    messages.push_back({"user", out.user_turn});
    if (s.has_chat_template(out.model)) {
      g.messages = std::move(messages);
      g.cache_prefix = 1 + req.history.size();  // system prompt (+ earlier turns): restored, not prefilled
    } else {
      // A model without a chat template (a base model): a plain transcript, prefix = the system part.
      g.prompt = messages[0].content + "\n\n";
      g.cache_prefix = g.prompt.size();
      for (std::size_t i = 1; i < messages.size(); ++i)
        g.prompt += (messages[i].role == "assistant" ? "Assistant: " : "User: ") + messages[i].content + "\n";
      g.prompt += "Assistant:";
    }
    g.keep_state = !req.history.empty();
    g.sampling = sampling;
    g.max_tokens = max_tokens;
    g.stop = req.stop;
    g.ignore_eos = req.ignore_eos;
    g.cancel = req.cancel;
    if (req.on_text) {
      g.on_text = [&](std::string_view piece) {
        if (out.times.ttft == 0) out.times.ttft = micros_since(t0);
        return req.on_text(piece);
      };
    }
    t = Clock::now();
    const llm::GenerateResult gr = s.engine->generate(out.model, std::move(g));
    out.times.llm = micros_since(t) + load_us;
    out.answer = gr.text;
    out.prompt_tokens = gr.prompt_tokens;
    out.cached_tokens = gr.cached_tokens;
    out.completion_tokens = gr.completion_tokens;
    out.finish = gr.finish;
    out.generated_weights = gr.generated_weights;
    if (out.times.ttft == 0) out.times.ttft = micros_since(t0);
  }

  // ---- write back ---------------------------------------------------------------------------
  if (c.writeback && req.generate && !out.cache_hit && out.finish != llm::Finish::cancelled && !out.answer.empty() &&
      !common::first_invalid_utf8(out.answer)) {
    t = Clock::now();
    memory::Node qa;
    qa.type = memory::NodeType::qa;
    qa.source = "agent";
    qa.text = "Q: " + req.query + "\nA: " + out.answer;
    qa.metadata = json{{"request_id", out.request_id}, {"model", out.model}}.dump();
    const auto qv = s.embedder->embed(qa.text).vector;
    if (!s.memory->find_duplicate(qa.text, qv)) {
      qa.vector = qv;
      std::vector<memory::Edge> edges;
      std::vector<memory::Node> nodes{std::move(qa)};
      nodes[0].id = out.request_id;  // a UUID already: the log row and the node share it
      for (const auto& b : out.context)
        edges.push_back({"", out.request_id, b.node_id, "derived", 1.0f, 0, "agent", 1.0f});
      s.memory->add_batch(std::move(nodes), std::move(edges));
    }
    out.times.writeback = micros_since(t);
  }
  out.times.total = micros_since(t0);
  if (cacheable && req.generate && !out.cache_hit && out.finish != llm::Finish::cancelled) s.cache.put(cache_key, out);

  // ---- log ----------------------------------------------------------------------------------
  json row;
  row["request_id"] = out.request_id;
  row["timestamp"] = iso8601_now();
  row["user_id"] = req.user.empty() ? json(nullptr) : json(hex64(common::fnv1a(req.user)));
  row["query"] = req.query;
  row["flow"] = flow_name(req.flow);
  row["router_features"] = out.features;
  row["router_decision"] = {{"model_id", out.model},
                            {"routed", out.routed},
                            {"context_size", cp.max_tokens},
                            {"retrieval", router::to_string(naive ? router::Retrieval::dense : out.decision.retrieval)},
                            {"temperature", sampling.temperature},
                            {"top_p", sampling.top_p},
                            {"confidence", out.decision.confidence},
                            {"escalated", out.decision.escalated}};
  std::vector<std::string> used;
  for (const auto& b : out.context) used.push_back(b.node_id);
  row["retrieval_stats"] = {{"k", out.retrieved},
                            {"mean_distance", out.distance_mean},
                            {"std_distance", out.distance_std},
                            {"entropy_attention", out.attention_entropy},
                            {"nodes_used", used.size()},
                            {"node_ids", used},
                            {"subgraph_nodes", r.subgraph.nodes.size()}};
  auto ms = [](int64_t us) { return static_cast<double>(us) / 1000.0; };
  row["latency_ms"] = {{"total", ms(out.times.total)},
                       {"retrieval", ms(out.times.embed + out.times.search + out.times.expand + out.times.attend)},
                       {"router", ms(out.times.route)},
                       {"context", ms(out.times.context)},
                       {"llm", ms(out.times.llm)},
                       {"ttft", ms(out.times.ttft)},
                       {"writeback", ms(out.times.writeback)}};
  row["stages_us"] = {{"embed", out.times.embed},   {"search", out.times.search},      {"expand", out.times.expand},
                      {"attend", out.times.attend}, {"route", out.times.route},        {"context", out.times.context},
                      {"llm", out.times.llm},       {"writeback", out.times.writeback}};
  row["tokens"] = {{"prompt", out.prompt_tokens}, {"cached", out.cached_tokens}, {"completion", out.completion_tokens}};
  row["cache_hit"] = out.cache_hit;
  row["finish"] = llm::to_string(out.finish);
  row["generated_weights"] = out.generated_weights;
  row["quality"] = json::object();  // filled by feedback (feedback.jsonl, joined on request_id)
  s.write_log(row);
  return out;
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
  out.signals.retrieval = retrieval_signals(r, e.vector, sc);

  std::vector<std::string> gold = question.gold_sources;  // a source listed twice counts once
  std::sort(gold.begin(), gold.end());
  gold.erase(std::unique(gold.begin(), gold.end()), gold.end());
  s.engine->load(c.default_model);
  for (int k = 0; k < 4; ++k) {
    const auto strategy = static_cast<router::Retrieval>(k);
    const Candidates cand = gather(*s.memory, r, sc.score, strategy, c.max_docs, question.text, e.vector, false);
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
