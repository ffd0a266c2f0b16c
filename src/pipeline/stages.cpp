// The stages of one request, in the order Pipeline::run calls them (impl.h lists both flows).
#include <sys/sysinfo.h>

#include <algorithm>
#include <cmath>

#include "common/utf8.h"
#include "gather.h"
#include "impl.h"
#include "prompt.h"

namespace ruvllm::pipeline {

using common::Clock;
using common::micros_since;

namespace {

double memory_available_gib() {
  struct sysinfo si {};
  if (sysinfo(&si) != 0) return 0;
  return static_cast<double>(si.freeram + si.bufferram) * si.mem_unit / (1024.0 * 1024 * 1024);
}

}  // namespace

void Pipeline::Impl::validate(RequestState& st) {
  const Request& req = st.req;
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
  st.explicit_model = !req.model.empty() && req.model != "auto";
  if (st.explicit_model) {
    bool known = false;
    for (const auto& m : config.models) known |= m.name == req.model;
    if (!known) {
      std::string names;
      for (const auto& m : config.models) names += (names.empty() ? "" : ", ") + m.name;
      throw Error(ErrorCode::not_found, "unknown model '" + req.model + "' (models: auto, " + names + ")");
    }
  }
  st.max_tokens = req.max_tokens.value_or(config.max_tokens);
  if (st.max_tokens < 0) throw Error("max_tokens must be >= 0");
  if (req.temperature) llm::check_temperature(*req.temperature, "temperature");
  if (req.top_p) llm::check_top_p(*req.top_p, "top_p");
  st.naive = req.flow == Flow::naive;
  st.out.request_id = new_request_id();
}

void Pipeline::Impl::start_early_load(RequestState& st) {
  if (!st.explicit_model && !st.naive) return;
  const std::string model = st.explicit_model ? st.req.model : config.default_model;
  if (!engine->loaded(model)) st.early_load = std::async(std::launch::async, [this, model] { engine->load(model); });
}

void Pipeline::Impl::embed_query(RequestState& st) {
  const auto t = Clock::now();
  st.query = embedder->embed(st.req.query);
  st.out.times.embed = micros_since(t);
}

void Pipeline::Impl::dense_search(RequestState& st) {
  st.out.decision.retrieval = router::Retrieval::dense;
  st.out.decision.context_tokens = static_cast<int>(config.max_context_tokens);
  const auto t = Clock::now();
  if (!st.query.vector.empty() && config.max_docs > 0) {
    memory::SearchQuery sq;
    sq.text = st.req.query;
    sq.vector = st.query.vector;
    sq.k = config.max_docs;
    sq.mode = memory::SearchMode::dense;
    st.retrieved.search = memory->search(sq);
  }
  st.out.times.search = micros_since(t);
}

void Pipeline::Impl::search_and_expand(RequestState& st) {
  RetrieveParams rp = config.retrieve;
  rp.expand.full_rows = false;  // graph scoring needs no text: gather() reads the rows the context uses
  st.retrieved = retrieve(*memory, st.req.query, rp);
  st.query = st.retrieved.search.query_embedding;
  st.out.times.embed = st.retrieved.search.embed_us;  // inside the search: timed there, counted once
  st.out.times.search = st.retrieved.search_us - st.retrieved.search.embed_us;
  st.out.times.expand = st.retrieved.expand_us;
}

void Pipeline::Impl::attend(RequestState& st) {
  const auto t = Clock::now();
  try {
    st.scores = scorer->score(st.retrieved.graph);
  } catch (const Error& e) {  // the pipeline built this input: a refusal is its bug, or a config mismatch
    throw Error(ErrorCode::internal, std::string("attend: ") + e.what());
  }
  st.out.attention_entropy = st.scores.entropy;
  st.out.times.attend = micros_since(t);
  st.out.decision.retrieval = router::Retrieval::hybrid_graph;
  st.out.decision.context_tokens = static_cast<int>(config.max_context_tokens);
}

void Pipeline::Impl::route(RequestState& st) {
  const auto t = Clock::now();
  if (const auto routing = st.explicit_model ? nullptr : current_router()) {
    const router::Router& rt = routing->router;
    router::Signals sig;
    sig.query.text = st.req.query;
    sig.query.embedding = st.query.vector;
    sig.query.tokens = st.query.tokens;
    sig.query.known_tokens = st.query.known;
    sig.retrieval = detail::retrieval_signals(st.retrieved, st.query.vector, st.scores);
    sig.system = st.req.constraints;
    sig.system.concurrent_requests = in_flight.load();
    sig.system.memory_available_gib = memory_available_gib();
    const router::FeatureVector f = rt.features(sig);
    st.out.features.assign(f.begin(), f.end());
    st.out.decision = rt.decide(f, sig.system);
    st.out.model = routing->to_model.at(st.out.decision.model);
    st.out.routed = true;
  }
  st.out.times.route = micros_since(t);
}

void Pipeline::Impl::load_model(RequestState& st) {
  if (st.out.model.empty()) st.out.model = st.explicit_model ? st.req.model : config.default_model;
  const auto t = Clock::now();
  if (st.early_load.valid()) st.early_load.get();  // rethrows a failed load
  engine->load(st.out.model);                      // the first request to a model pays its load here
  st.load_us = micros_since(t);
}

void Pipeline::Impl::build_context(RequestState& st) {
  const auto t = Clock::now();
  Response& out = st.out;
  const Retrieved& r = st.retrieved;
  out.retrieved = r.search.hits.size();
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
  attention::ContextParams cp;
  cp.max_docs = config.max_docs;
  cp.max_tokens = st.naive ? config.max_context_tokens
                           : std::min<std::size_t>(config.max_context_tokens,
                                                   static_cast<std::size_t>(std::max(0, out.decision.context_tokens)));
  cp.count_tokens = [&](std::string_view text) { return count_tokens(out.model, text); };
  st.context_budget = cp.max_tokens;
  out.decision.context_tokens = static_cast<int>(cp.max_tokens);  // the budget applied, after the config's cap
  attention::Context ctx;
  detail::Candidates cand;
  if (cp.max_tokens > 0 && cp.max_docs > 0) {
    // The graph's candidates are offered best first, twice max_docs at a time: the builder looks
    // further only past duplicates, and reading every subgraph row would cost what the expansion
    // without rows saved. More only when it used up what it was offered without filling the context.
    const auto strategy = st.naive ? router::Retrieval::dense : out.decision.retrieval;
    for (std::size_t offered = 2 * cp.max_docs;; offered *= 2) {
      cand = detail::gather(*memory, r, st.scores.score, strategy, config.max_docs, st.req.query, st.query.vector,
                            st.naive, offered);
      if (!cand.candidates.empty()) ctx = attention::build_context(cand.candidates, cp);
      const bool used_up =
          ctx.used.size() < cp.max_docs && ctx.used.size() + ctx.dropped_duplicates == cand.candidates.size();
      if (!cand.more || !used_up) break;
    }
  }
  for (std::size_t i : ctx.used) out.context.push_back(std::move(cand.blocks[i]));
  out.user_turn = ctx.text.empty() ? st.req.query : ctx.text + "Question: " + st.req.query;
  out.times.context = micros_since(t);
}

void Pipeline::Impl::choose_sampling(RequestState& st) {
  const Request& req = st.req;
  st.sampling = config.sampling;
  if (st.out.routed) {
    st.sampling.temperature = st.out.decision.temperature;
    st.sampling.top_p = st.out.decision.top_p;
  }
  if (req.temperature) st.sampling.temperature = *req.temperature;
  if (req.top_p) st.sampling.top_p = *req.top_p;
  if (req.seed) st.sampling.seed = *req.seed;
  st.out.decision.temperature = st.sampling.temperature;
  st.out.decision.top_p = st.sampling.top_p;
  st.cacheable = req.use_cache && req.history.empty() && config.cache_entries > 0;
  if (st.cacheable)
    st.cache_key =
        detail::cache_key(req, st.out, st.max_tokens, st.sampling, req.system_prompt.value_or(config.system_prompt));
}

void Pipeline::Impl::answer(RequestState& st) {
  const Request& req = st.req;
  Response& out = st.out;
  if (req.on_start) req.on_start(out);
  if (!req.generate) return;  // inspection: the route and the context, no answer
  if (std::optional<Response> cached = st.cacheable ? cache.get(st.cache_key) : std::nullopt) {
    out.answer = cached->answer;
    out.finish = cached->finish;
    out.completion_tokens = cached->completion_tokens;
    out.generated_weights = cached->generated_weights;
    out.cache_hit = true;
    if (req.on_text && !out.answer.empty()) req.on_text(out.answer);
    return;
  }
  llm::GenerateRequest g = detail::generate_request(
      req, out.user_turn, req.system_prompt.value_or(config.system_prompt), has_chat_template(out.model));
  g.sampling = st.sampling;
  g.max_tokens = st.max_tokens;
  if (req.on_text) {
    g.on_text = [&](std::string_view piece) {
      if (out.times.ttft == 0) out.times.ttft = micros_since(st.t0);
      return req.on_text(piece);
    };
  }
  const auto t = Clock::now();
  const llm::GenerateResult gr = engine->generate(out.model, std::move(g));
  out.times.llm = micros_since(t) + st.load_us;
  out.answer = gr.text;
  out.prompt_tokens = gr.prompt_tokens;
  out.cached_tokens = gr.cached_tokens;
  out.completion_tokens = gr.completion_tokens;
  out.finish = gr.finish;
  out.generated_weights = gr.generated_weights;
  if (out.times.ttft == 0) out.times.ttft = micros_since(st.t0);
}

void Pipeline::Impl::write_back(RequestState& st) {
  const Response& out = st.out;
  if (!config.writeback || !st.req.generate || out.cache_hit || out.finish == llm::Finish::cancelled ||
      out.answer.empty() || common::first_invalid_utf8(out.answer))
    return;
  const auto t = Clock::now();
  memory::Node qa;
  qa.type = memory::NodeType::qa;
  qa.source = "agent";
  qa.text = "Q: " + st.req.query + "\nA: " + out.answer;
  qa.metadata = nlohmann::json{{"request_id", out.request_id}, {"model", out.model}}.dump();
  const auto qv = embedder->embed(qa.text).vector;
  if (!memory->find_duplicate(qa.text, qv)) {
    qa.vector = qv;
    std::vector<memory::Edge> edges;
    std::vector<memory::Node> nodes{std::move(qa)};
    nodes[0].id = out.request_id;  // a UUID already: the log row and the node share it
    for (const auto& b : out.context)
      edges.push_back({"", out.request_id, b.node_id, "derived", 1.0f, 0, "agent", 1.0f});
    memory->add_batch(std::move(nodes), std::move(edges));
  }
  st.out.times.writeback = micros_since(t);
}

void Pipeline::Impl::store_in_cache(RequestState& st) {
  st.out.times.total = micros_since(st.t0);
  if (st.cacheable && st.req.generate && !st.out.cache_hit && st.out.finish != llm::Finish::cancelled)
    cache.put(st.cache_key, st.out);
}

}  // namespace ruvllm::pipeline
