// OpenAI's endpoints (chat completions with SSE, models, embeddings) and the native /v1/query and
// /generate: JSON to pipeline::Request and back.
#include "impl.h"

#include <chrono>

namespace ruvllm::server {

using namespace detail;

// ---- request translation ------------------------------------------------------------------
void Server::Impl::common_fields(const json& b, pipeline::Request& r) {
  r.max_tokens = std::min(pipe.config().max_tokens, config.max_tokens);  // the default, within the limit
  if (auto m = get_integer(b, "max_tokens", 0, config.max_tokens)) r.max_tokens = static_cast<int>(*m);
  if (auto m = get_integer(b, "max_completion_tokens", 0, config.max_tokens)) r.max_tokens = static_cast<int>(*m);
  if (auto t = get_sampling(b, "temperature", llm::temperature_problem)) r.temperature = static_cast<float>(*t);
  if (auto p = get_sampling(b, "top_p", llm::top_p_problem)) r.top_p = static_cast<float>(*p);
  if (auto s = get_integer(b, "seed", 0, 0xffffffffLL)) r.seed = static_cast<uint32_t>(*s);
  r.user = get_string(b, "user", false);
  if (b.contains("stop") && !b["stop"].is_null()) {
    const json& s = b["stop"];
    if (s.is_string())
      r.stop.push_back(s.get<std::string>());
    else if (s.is_array() && s.size() <= 4) {
      for (const auto& x : s) {
        if (!x.is_string() || x.get<std::string>().empty())
          throw HttpError(400, "'stop' entries must be non-empty strings", "stop");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      throw HttpError(400, "'stop' must be a string or an array of up to 4 strings", "stop");
    }
    for (const auto& x : r.stop)
      if (x.empty()) throw HttpError(400, "'stop' entries must be non-empty strings", "stop");
  }
  if (b.contains("constraints")) {
    const json& c = b["constraints"];
    if (!c.is_object()) throw HttpError(400, "'constraints' must be an object", "constraints");
    if (auto v = get_number(c, "latency_budget_ms", 0, 1e9)) r.constraints.latency_budget_ms = *v;
    if (auto v = get_integer(c, "privacy", 0, 3)) r.constraints.privacy = static_cast<int>(*v);
    if (auto v = get_integer(c, "device_class", 0, 3)) r.constraints.device_class = static_cast<int>(*v);
    r.constraints.high_risk = get_bool(c, "high_risk", false);
  }
  r.use_cache = get_bool(b, "cache", true);
  const std::string model = get_string(b, "model", false, "auto");
  r.model = model;
  if (model != "auto") {
    bool known = false;
    for (const auto& m : pipe.config().models) known |= m.name == model;
    if (!known) throw HttpError(404, "the model '" + model + "' does not exist", "model", "model_not_found");
  }
}

std::string Server::Impl::message_text(const json& m, std::size_t i) {
  const std::string where = "messages[" + std::to_string(i) + "].content";
  if (!m.contains("content") || m["content"].is_null()) throw HttpError(400, "'" + where + "' is required", "messages");
  const json& c = m["content"];
  if (c.is_string()) return c.get<std::string>();
  if (c.is_array()) {  // [{"type": "text", "text": "..."}]
    std::string text;
    for (const auto& part : c) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
        throw HttpError(400, "'" + where + "' parts must be {\"type\": \"text\", \"text\": \"...\"}", "messages");
      text += part["text"].get<std::string>();
    }
    return text;
  }
  throw HttpError(400, "'" + where + "' must be a string or an array of text parts", "messages");
}

pipeline::Request Server::Impl::chat_request(const json& b) {
  pipeline::Request r;
  if (!b.contains("messages")) throw HttpError(400, "'messages' is required", "messages");
  const json& msgs = b["messages"];
  if (!msgs.is_array()) throw HttpError(400, "'messages' must be an array", "messages");
  if (msgs.empty()) throw HttpError(400, "'messages' must not be empty", "messages");
  std::vector<llm::ChatMessage> all;
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    const json& m = msgs[i];
    if (!m.is_object()) throw HttpError(400, "messages[" + std::to_string(i) + "] must be an object", "messages");
    if (!m.contains("role") || !m["role"].is_string())
      throw HttpError(400, "messages[" + std::to_string(i) + "].role must be a string", "messages");
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant")
      throw HttpError(400, "messages[" + std::to_string(i) + "].role '" + role + "' is not system, user or assistant",
                      "messages");
    all.push_back({role, message_text(m, i)});
  }
  if (all.back().role != "user") throw HttpError(400, "the last message must be from the user", "messages");
  std::size_t first = 0;
  if (all.front().role == "system") {
    r.system_prompt = all.front().content;
    first = 1;
  }
  for (std::size_t i = first; i + 1 < all.size(); ++i) {
    if (all[i].role == "system") throw HttpError(400, "only the first message may be a system message", "messages");
    r.history.push_back(all[i]);
  }
  r.query = all.back().content;
  if (r.query.empty()) throw HttpError(400, "the last user message is empty", "messages");
  (void)get_integer(b, "n", 1, 1);  // one choice per request
  common_fields(b, r);
  return r;
}

json Server::Impl::route_json(const pipeline::Response& r) {
  json blocks = json::array();
  for (const auto& c : r.context)
    blocks.push_back(
        {{"node_id", c.node_id}, {"title", c.title}, {"type", c.type}, {"score", c.score}, {"text", c.text}});
  auto ms = [](int64_t us) { return static_cast<double>(us) / 1000.0; };
  return {{"request_id", r.request_id},
          {"model", r.model},
          {"routed", r.routed},
          {"cache_hit", r.cache_hit},
          {"generated_weights", r.generated_weights},
          {"decision",
           {{"context_tokens", r.decision.context_tokens},
            {"retrieval", static_cast<int>(r.decision.retrieval)},
            {"temperature", r.decision.temperature},
            {"top_p", r.decision.top_p},
            {"confidence", r.decision.confidence},
            {"escalated", r.decision.escalated}}},
          {"context", blocks},
          {"retrieval", {{"candidates", r.retrieved}, {"attention_entropy", r.attention_entropy}}},
          {"latency_ms",
           {{"total", ms(r.times.total)},
            {"embed", ms(r.times.embed)},
            {"search", ms(r.times.search)},
            {"expand", ms(r.times.expand)},
            {"attend", ms(r.times.attend)},
            {"route", ms(r.times.route)},
            {"context", ms(r.times.context)},
            {"llm", ms(r.times.llm)},
            {"ttft", ms(r.times.ttft)},
            {"writeback", ms(r.times.writeback)},
            {"non_llm", ms(r.times.non_llm())}}}};
}

json Server::Impl::usage(const pipeline::Response& r) {
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"total_tokens", r.prompt_tokens + r.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", r.cached_tokens}}}};
}

int64_t Server::Impl::unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// ---- handlers -----------------------------------------------------------------------------
void Server::Impl::chat(const httplib::Request& req, httplib::Response& res) {
  const json b = parse_body(req);
  pipeline::Request r = chat_request(b);
  if (get_bool(b, "stream", false)) return stream_chat(req, res, std::move(r));
  Ticket ticket(*this, req, true);
  r.cancel = ticket.token();
  const pipeline::Response out = run_pipeline(std::move(r));
  json body = {{"id", "chatcmpl-" + out.request_id},
               {"object", "chat.completion"},
               {"created", unix_now()},
               {"model", out.model},
               {"choices",
                {{{"index", 0},
                  {"message", {{"role", "assistant"}, {"content", out.answer}}},
                  {"logprobs", nullptr},
                  {"finish_reason", llm::to_string(out.finish)}}}},
               {"usage", usage(out)},
               {"ruvllm", route_json(out)}};
  send_json(res, 200, body);
}

// SSE. The pipeline runs on its own thread and hands events over a queue. The handler waits for
// the first event: an error before it (bad request, prompt longer than the context) is still an
// ordinary JSON error with its status; after it, errors travel as events. A failed write (the
// client went away) cancels generation at the next token.
void Server::Impl::stream_chat(const httplib::Request& req, httplib::Response& res, pipeline::Request r) {
  auto stream = std::make_shared<SseStream>();
  stream->ticket = std::make_unique<Ticket>(*this, req, false);
  r.cancel = stream->ticket->token();
  r.on_start = [stream](const pipeline::Response& route) { stream->started(route); };
  r.on_text = [stream](std::string_view piece) { return stream->push_text(piece); };
  stream->producer = std::thread([this, stream, request = std::move(r)]() mutable {
    try {
      stream->finish(run_pipeline(std::move(request)));
    } catch (const HttpError& e) {
      stream->fail(e);
    } catch (const std::exception& e) {
      stream->fail(HttpError(500, std::string("internal error: ") + e.what()));
    } catch (...) {  // nothing may escape a thread: std::terminate would end the server
      stream->fail(HttpError(500, "internal error"));
    }
  });
  if (auto error = stream->wait_first()) throw *error;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider("text/event-stream", [this, stream](std::size_t, httplib::DataSink& sink) {
    const std::string id = "chatcmpl-" + stream->request_id();
    const int64_t created = unix_now();
    bool first = true;
    for (SseStream::Event ev; stream->next(ev);) {
      const std::string line = sse_event(ev, id, created, first);
      if (!sink.write(line.data(), line.size())) {
        stream->ticket->cancel();  // the client is gone: stop generating
        stream->drain();
        return false;
      }
    }
    stream->drain();
    sink.done();
    return true;
  });
  res.status = 200;
}

// One event as OpenAI's chunks: a text delta (the first with the role), the last chunk with the
// finish reason, usage and ruvllm's trace, or an error; the last two end the stream.
std::string Server::Impl::sse_event(const SseStream::Event& ev, const std::string& id, int64_t created, bool& first) {
  auto data = [](const json& c) { return "data: " + c.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n"; };
  if (ev.kind == SseStream::Event::Kind::text) {
    json delta = {{"content", ev.text}};
    if (first) delta["role"] = "assistant";
    first = false;
    return data({{"id", id},
                 {"object", "chat.completion.chunk"},
                 {"created", created},
                 {"model", ev.model},
                 {"choices", {{{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", nullptr}}}}});
  }
  if (ev.kind == SseStream::Event::Kind::done) {
    const pipeline::Response& out = *ev.response;
    return data({{"id", id},
                 {"object", "chat.completion.chunk"},
                 {"created", created},
                 {"model", out.model},
                 {"choices",
                  {{{"index", 0},
                    {"delta", json::object()},
                    {"logprobs", nullptr},
                    {"finish_reason", llm::to_string(out.finish)}}}},
                 {"usage", usage(out)},
                 {"ruvllm", route_json(out)}}) +
           "data: [DONE]\n\n";
  }
  return "data: " + error_body(ev.error->status, ev.error->what()).dump() + "\n\ndata: [DONE]\n\n";
}

pipeline::Response Server::Impl::run_pipeline(pipeline::Request r) {
  try {
    pipeline::Response out = pipe.run(std::move(r));
    observe(out);
    return out;
  } catch (const Error& e) {
    throw http_error(e);
  }
}

void Server::Impl::query(const httplib::Request& req, httplib::Response& res) {
  const json b = parse_body(req);
  pipeline::Request r;
  r.query = get_string(b, "query", true);
  if (r.query.empty()) throw HttpError(400, "'query' must not be empty", "query");
  const std::string flow = get_string(b, "flow", false, "routed");
  if (flow == "naive")
    r.flow = pipeline::Flow::naive;
  else if (flow != "routed")
    throw HttpError(400, "'flow' must be \"routed\" or \"naive\"", "flow");
  common_fields(b, r);
  Ticket ticket(*this, req, true);
  r.cancel = ticket.token();
  const pipeline::Response out = run_pipeline(std::move(r));
  json body = route_json(out);
  body["answer"] = out.answer;
  body["finish_reason"] = llm::to_string(out.finish);
  body["usage"] = usage(out);
  send_json(res, 200, body);
}

void Server::Impl::generate(const httplib::Request& req, httplib::Response& res) {
  const json b = parse_body(req);
  const std::string model = get_string(b, "model_id", false, pipe.config().default_model);
  bool known = false;
  for (const auto& m : pipe.config().models) known |= m.name == model;
  if (!known) throw HttpError(404, "the model '" + model + "' does not exist", "model_id", "model_not_found");
  llm::GenerateRequest g;
  g.prompt = get_string(b, "prompt", true);
  if (g.prompt.empty()) throw HttpError(400, "'prompt' must not be empty", "prompt");
  g.max_tokens = static_cast<int>(get_integer(b, "max_tokens", 0, config.max_tokens)
                                      .value_or(std::min(pipe.config().max_tokens, config.max_tokens)));
  g.sampling = pipe.config().sampling;
  if (auto t = get_sampling(b, "temperature", llm::temperature_problem))
    g.sampling.temperature = static_cast<float>(*t);
  if (auto p = get_sampling(b, "top_p", llm::top_p_problem)) g.sampling.top_p = static_cast<float>(*p);
  if (auto s = get_integer(b, "seed", 0, 0xffffffffLL)) g.sampling.seed = static_cast<uint32_t>(*s);
  Ticket ticket(*this, req, true);
  g.cancel = ticket.token();
  llm::GenerateResult out;
  try {
    out = pipe.engine().generate(model, std::move(g));
  } catch (const Error& e) {
    throw http_error(e);
  }
  send_json(res, 200,
            {{"model_id", out.model},
             {"text", out.text},
             {"finish_reason", llm::to_string(out.finish)},
             {"tokens",
              {{"prompt", out.prompt_tokens}, {"cached", out.cached_tokens}, {"completion", out.completion_tokens}}},
             {"latency_ms", static_cast<double>(out.timings.total) / 1000.0},
             {"generated_weights", out.generated_weights}});
}

void Server::Impl::embeddings(const httplib::Request& req, httplib::Response& res) {
  const json b = parse_body(req);
  if (!b.contains("input")) throw HttpError(400, "'input' is required", "input");
  std::vector<std::string> inputs;
  const json& in = b["input"];
  if (in.is_string())
    inputs.push_back(in.get<std::string>());
  else if (in.is_array() && !in.empty() && in.size() <= 2048) {
    for (const auto& x : in) {
      if (!x.is_string()) throw HttpError(400, "'input' must be a string or an array of strings", "input");
      inputs.push_back(x.get<std::string>());
    }
  } else {
    throw HttpError(400, "'input' must be a string or an array of 1 to 2048 strings", "input");
  }
  const auto& e = pipe.embedder();
  const std::string model = get_string(b, "model", false, e.name());
  if (model != e.name())
    throw HttpError(404,
                    "the embedding model '" + model + "' does not exist (this server embeds with '" + e.name() + "')",
                    "model", "model_not_found");
  const std::string format = get_string(b, "encoding_format", false, "float");
  if (format != "float" && format != "base64")
    throw HttpError(400, "'encoding_format' must be \"float\" or \"base64\"", "encoding_format");
  json data = json::array();
  std::size_t tokens = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].empty()) throw HttpError(400, "input[" + std::to_string(i) + "] is empty", "input");
    embed::Embedding v;
    try {
      v = e.embed(inputs[i]);
    } catch (const Error& err) {
      throw http_error(err.prefixed("input[" + std::to_string(i) + "]: "), "input");
    }
    tokens += v.tokens;
    // No known word: no honest vector. OpenAI has no "none", so this is an error, not zeros.
    if (v.vector.empty())
      throw HttpError(400, "input[" + std::to_string(i) + "] has no word the embedder knows", "input");
    data.push_back({{"object", "embedding"},
                    {"index", i},
                    {"embedding", format == "base64" ? json(base64_floats(v.vector)) : json(v.vector)}});
  }
  send_json(res, 200,
            {{"object", "list"},
             {"data", data},
             {"model", e.name()},
             {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}});
}

void Server::Impl::models(const httplib::Request&, httplib::Response& res) {
  json data = json::array();
  data.push_back({{"id", "auto"},
                  {"object", "model"},
                  {"created", 0},
                  {"owned_by", "ruvllm"},
                  {"description", "the routed pipeline"}});
  for (const auto& m : pipe.config().models)
    data.push_back({{"id", m.name},
                    {"object", "model"},
                    {"created", 0},
                    {"owned_by", "ruvllm"},
                    {"size_class", m.size_class},
                    {"loaded", pipe.engine().loaded(m.name)}});
  send_json(res, 200, {{"object", "list"}, {"data", data}});
}

}  // namespace ruvllm::server
