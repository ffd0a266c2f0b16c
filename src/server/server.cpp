// The HTTP server: JSON ↔ pipeline::Request / Response, OpenAI's shapes, limits, metrics, shutdown.
#include "ruvllm/server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "common/json_depth.h"
#include "common/utf8.h"

namespace ruvllm::server {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// A request error: the status and OpenAI's error type travel with the message.
struct HttpError : std::runtime_error {
  int status;
  std::string type, param, code;
  HttpError(int s, std::string message, std::string p = {}, std::string c = {})
      : std::runtime_error(std::move(message)), status(s), param(std::move(p)), code(std::move(c)) {
    type = s == 401   ? "authentication_error"
           : s == 404 ? "not_found_error"
           : s == 429 ? "rate_limit_error"
           : s >= 500 ? "server_error"
                      : "invalid_request_error";
  }
};

json error_body(int status, const std::string& message, const std::string& param = {}, const std::string& code = {}) {
  HttpError e(status, message, param, code);
  json err = {{"message", message}, {"type", e.type}};
  err["param"] = param.empty() ? json(nullptr) : json(param);
  err["code"] = code.empty() ? json(nullptr) : json(code);
  return {{"error", err}};
}

// OpenAI's encoding_format "base64": the vector's float32 values, little-endian, in base64 (the
// official clients ask for it by default and decode it themselves).
std::string base64_floats(const std::vector<float>& v) {
  static constexpr char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes;
  bytes.reserve(v.size() * 4);
  for (float f : v)
    for (int shift = 0; shift < 32; shift += 8) bytes.push_back(static_cast<char>(std::bit_cast<uint32_t>(f) >> shift));
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, bytes.size() - i);
    uint32_t chunk = 0;
    for (std::size_t k = 0; k < 3; ++k) chunk = chunk << 8 | (k < n ? static_cast<unsigned char>(bytes[i + k]) : 0u);
    for (std::size_t k = 0; k < 4; ++k) out.push_back(k <= n ? digits[chunk >> (18 - 6 * k) & 63] : '=');
  }
  return out;
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

json parse_body(const httplib::Request& req) {
  if (auto at = common::first_invalid_utf8(req.body))
    throw HttpError(400, "the request body is not valid UTF-8 (byte " + std::to_string(*at) + ")");
  if (common::json_nests_deeper_than(req.body))
    throw HttpError(400, "the request body nests arrays and objects deeper than " +
                             std::to_string(common::kMaxJsonDepth) + " levels");
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded()) throw HttpError(400, "the request body is not valid JSON");
  if (!body.is_object()) throw HttpError(400, "the request body must be a JSON object");
  return body;
}

// Typed field access: a wrong type is a 400 naming the field.
std::string get_string(const json& b, const char* key, bool required, std::string fallback = {}) {
  if (!b.contains(key) || b[key].is_null()) {
    if (required) throw HttpError(400, std::string("'") + key + "' is required", key);
    return fallback;
  }
  if (!b[key].is_string()) throw HttpError(400, std::string("'") + key + "' must be a string", key);
  return b[key].get<std::string>();
}

std::optional<double> get_number(const json& b, const char* key, double lo, double hi) {
  if (!b.contains(key) || b[key].is_null()) return std::nullopt;
  if (!b[key].is_number()) throw HttpError(400, std::string("'") + key + "' must be a number", key);
  const double v = b[key].get<double>();
  if (!(v >= lo && v <= hi)) {
    std::ostringstream s;
    s << "'" << key << "' must be in [" << lo << ", " << hi << "], got " << b[key].dump();
    throw HttpError(400, s.str(), key);
  }
  return v;
}

std::optional<int64_t> get_integer(const json& b, const char* key, int64_t lo, int64_t hi) {
  if (!b.contains(key) || b[key].is_null()) return std::nullopt;
  if (!b[key].is_number_integer()) throw HttpError(400, std::string("'") + key + "' must be an integer", key);
  const int64_t v = b[key].get<int64_t>();
  if (v < lo || v > hi)
    throw HttpError(400,
                    std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                        "], got " + std::to_string(v),
                    key);
  return v;
}

bool get_bool(const json& b, const char* key, bool fallback) {
  if (!b.contains(key) || b[key].is_null()) return fallback;
  if (!b[key].is_boolean()) throw HttpError(400, std::string("'") + key + "' must be true or false", key);
  return b[key].get<bool>();
}

// Whether the peer of the connection (ip, port) → our `local_port` has closed it. cpp-httplib 0.11
// does not expose the socket to handlers, so the watcher finds it among our descriptors by its
// addresses; a peer that closed shows as an orderly end of stream (recv → 0) under MSG_PEEK.
bool peer_closed(const std::string& ip, int port, int local_port, int& fd_cache) {
  auto matches = [&](int fd) {
    sockaddr_storage peer{}, self{};
    socklen_t pl = sizeof peer, sl = sizeof self;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) return false;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&self), &sl) != 0) return false;
    char buf[INET6_ADDRSTRLEN] = {};
    int pport = 0, sport = 0;
    if (peer.ss_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&peer);
      inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
      pport = ntohs(a->sin_port);
      sport = ntohs(reinterpret_cast<sockaddr_in*>(&self)->sin_port);
    } else if (peer.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&peer);
      inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
      pport = ntohs(a->sin6_port);
      sport = ntohs(reinterpret_cast<sockaddr_in6*>(&self)->sin6_port);
    } else {
      return false;
    }
    return pport == port && sport == local_port && ip == buf;
  };
  if (fd_cache < 0 || !matches(fd_cache)) {
    fd_cache = -1;
    if (DIR* d = opendir("/proc/self/fd")) {
      while (dirent* e = readdir(d)) {
        const int fd = std::atoi(e->d_name);
        struct stat st {};
        if (fd <= 2 || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
        if (matches(fd)) {
          fd_cache = fd;
          break;
        }
      }
      closedir(d);
    }
    if (fd_cache < 0) return true;  // the connection is gone
  }
  char c;
  const ssize_t n = recv(fd_cache, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0;
}

}  // namespace

struct Server::Impl {
  pipeline::Pipeline& pipe;
  pipeline::ServerConfig config;
  httplib::Server http;
  int port = 0;
  std::atomic<bool> draining{false}, serving{false};
  std::mutex run_mutex;  // draining and serving change under it: stop() and run() hand over here
  std::condition_variable run_ended;

  // Requests that generate: their cancellation, deadline and connection (for the watcher).
  struct Active {
    std::stop_source cancel;
    Clock::time_point deadline;
    std::string ip;
    int port = 0, fd = -1;
    bool watch_peer = false;
  };
  std::mutex active_mutex;
  std::condition_variable active_changed;
  std::list<Active> active;
  std::jthread watcher;

  // Metrics.
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Counter>& requests = prometheus::BuildCounter()
                                                          .Name("ruvllm_requests_total")
                                                          .Help("HTTP requests by endpoint and status")
                                                          .Register(*registry);
  prometheus::Family<prometheus::Histogram>& stage_seconds =
      prometheus::BuildHistogram().Name("ruvllm_stage_seconds").Help("Pipeline stage latency").Register(*registry);
  prometheus::Family<prometheus::Histogram>& ttft_family =
      prometheus::BuildHistogram().Name("ruvllm_ttft_seconds").Help("Time to first token").Register(*registry);
  prometheus::Family<prometheus::Histogram>& tps_family = prometheus::BuildHistogram()
                                                              .Name("ruvllm_tokens_per_second")
                                                              .Help("Completion tokens per second of generation")
                                                              .Register(*registry);
  prometheus::Family<prometheus::Counter>& tokens_family =
      prometheus::BuildCounter().Name("ruvllm_tokens_total").Help("Tokens by kind").Register(*registry);
  prometheus::Family<prometheus::Counter>& cache_family = prometheus::BuildCounter()
                                                              .Name("ruvllm_cache_total")
                                                              .Help("Response cache lookups by result")
                                                              .Register(*registry);
  prometheus::Family<prometheus::Counter>& routes_family = prometheus::BuildCounter()
                                                               .Name("ruvllm_routes_total")
                                                               .Help("Requests by chosen model and how")
                                                               .Register(*registry);
  prometheus::Family<prometheus::Gauge>& gauges =
      prometheus::BuildGauge().Name("ruvllm_state").Help("In-flight requests and memory size").Register(*registry);
  const prometheus::Histogram::BucketBoundaries latency_buckets{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                                0.25,   0.5,   1,     2.5,   5,    10,    30,   60};

  Impl(pipeline::Pipeline& p, pipeline::ServerConfig c) : pipe(p), config(std::move(c)) {}

  void count(const std::string& endpoint, int status) {
    requests.Add({{"endpoint", endpoint}, {"status", std::to_string(status)}}).Increment();
  }

  void observe(const pipeline::Response& r) {
    auto stage = [&](const char* name, int64_t us) {
      stage_seconds.Add({{"stage", name}}, latency_buckets).Observe(static_cast<double>(us) / 1e6);
    };
    stage("embed", r.times.embed);
    stage("search", r.times.search);
    stage("expand", r.times.expand);
    stage("attend", r.times.attend);
    stage("route", r.times.route);
    stage("context", r.times.context);
    stage("llm", r.times.llm);
    stage("writeback", r.times.writeback);
    stage("total", r.times.total);
    stage("non_llm", r.times.non_llm());
    ttft_family.Add({{"model", r.model}}, latency_buckets).Observe(static_cast<double>(r.times.ttft) / 1e6);
    if (!r.cache_hit && r.times.llm > 0 && r.completion_tokens > 0)
      tps_family
          .Add({{"model", r.model}}, prometheus::Histogram::BucketBoundaries{1, 5, 10, 20, 50, 100, 200, 500, 1000})
          .Observe(r.completion_tokens / (static_cast<double>(r.times.llm) / 1e6));
    tokens_family.Add({{"kind", "prompt"}}).Increment(r.prompt_tokens);
    tokens_family.Add({{"kind", "cached"}}).Increment(r.cached_tokens);
    tokens_family.Add({{"kind", "completion"}}).Increment(r.completion_tokens);
    cache_family.Add({{"result", r.cache_hit ? "hit" : "miss"}}).Increment();
    routes_family.Add({{"model", r.model}, {"by", r.routed ? "router" : "fixed"}}).Increment();
  }

  // ---- admission: queue limit, deadline, cancellation ---------------------------------------
  class Ticket {
   public:
    Ticket(Impl& s, const httplib::Request& req, bool watch_peer) : s_(s) {
      std::lock_guard lock(s.active_mutex);
      if (s.draining) throw HttpError(503, "the server is shutting down");
      if (s.active.size() >= s.config.max_queue)
        throw HttpError(429, "too many requests in flight (" + std::to_string(s.config.max_queue) + "); retry later");
      s.active.emplace_back();
      it_ = std::prev(s.active.end());
      it_->deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(s.config.request_timeout_s * 1e6));
      it_->ip = req.remote_addr;
      it_->port = req.remote_port;
      it_->watch_peer = watch_peer;
    }
    ~Ticket() {
      std::lock_guard lock(s_.active_mutex);
      s_.active.erase(it_);
      s_.active_changed.notify_all();
    }
    std::stop_token token() const { return it_->cancel.get_token(); }
    void cancel() { it_->cancel.request_stop(); }

   private:
    Impl& s_;
    std::list<Active>::iterator it_;
  };

  void watch(std::stop_token stop) noexcept {  // nothing in it throws; noexcept says so
    std::unique_lock lock(active_mutex);
    while (!stop.stop_requested()) {
      active_changed.wait_for(lock, std::chrono::milliseconds(100));
      const auto now = Clock::now();
      for (auto& a : active) {
        if (a.cancel.stop_requested()) continue;
        if (now > a.deadline || (a.watch_peer && peer_closed(a.ip, a.port, port, a.fd))) a.cancel.request_stop();
      }
    }
  }

  // One streamed request: the pipeline's thread produces events, the connection's thread sends them.
  struct SseStream {
    struct Event {
      enum class Kind { text, done, error } kind = Kind::text;
      std::string text, model;
      std::optional<pipeline::Response> response;
      std::optional<HttpError> error;
    };
    std::unique_ptr<Ticket> ticket;
    std::thread producer;
    std::mutex m;
    std::condition_variable cv;
    std::deque<Event> events;
    std::string model, id;
    bool finished = false;

    ~SseStream() {
      if (ticket) ticket->cancel();
      // The producer's own closure may hold the last reference: a thread cannot join itself.
      if (producer.joinable()) {
        if (producer.get_id() == std::this_thread::get_id())
          producer.detach();
        else
          producer.join();
      }
    }
    void started(const pipeline::Response& route) {
      std::lock_guard lock(m);
      model = route.model;
      id = route.request_id;
    }
    bool push_text(std::string_view piece) {
      std::lock_guard lock(m);
      events.push_back({Event::Kind::text, std::string(piece), model, std::nullopt, std::nullopt});
      cv.notify_all();
      return true;  // cancellation arrives through the ticket's stop token
    }
    void finish(pipeline::Response r) {
      std::lock_guard lock(m);
      events.push_back({Event::Kind::done, "", r.model, std::move(r), std::nullopt});
      finished = true;
      cv.notify_all();
    }
    void fail(HttpError e) {
      std::lock_guard lock(m);
      events.push_back({Event::Kind::error, "", "", std::nullopt, std::move(e)});
      finished = true;
      cv.notify_all();
    }
    // Blocks until the first event; the error when the request failed before producing anything.
    std::optional<HttpError> wait_first() {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return !events.empty(); });
      if (events.front().kind == Event::Kind::error) {
        auto e = std::move(events.front().error);
        lock.unlock();
        producer.join();
        return e;
      }
      return std::nullopt;
    }
    bool next(Event& out) {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return !events.empty() || finished; });
      if (events.empty()) return false;
      out = std::move(events.front());
      events.pop_front();
      return true;
    }
    void drain() {
      if (producer.joinable()) producer.join();
    }
    std::string request_id() {
      std::lock_guard lock(m);
      return id.empty() ? std::to_string(Clock::now().time_since_epoch().count()) : id;
    }
  };

  // ---- request translation ------------------------------------------------------------------
  void common_fields(const json& b, pipeline::Request& r) {
    r.max_tokens = std::min(pipe.config().max_tokens, config.max_tokens);  // the default, within the limit
    if (auto m = get_integer(b, "max_tokens", 0, config.max_tokens)) r.max_tokens = static_cast<int>(*m);
    if (auto m = get_integer(b, "max_completion_tokens", 0, config.max_tokens)) r.max_tokens = static_cast<int>(*m);
    if (auto t = get_number(b, "temperature", 0, 2)) r.temperature = static_cast<float>(*t);
    if (auto p = get_number(b, "top_p", 1e-9, 1)) r.top_p = static_cast<float>(*p);
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

  static std::string message_text(const json& m, std::size_t i) {
    const std::string where = "messages[" + std::to_string(i) + "].content";
    if (!m.contains("content") || m["content"].is_null())
      throw HttpError(400, "'" + where + "' is required", "messages");
    const json& c = m["content"];
    if (c.is_string()) return c.get<std::string>();
    if (c.is_array()) {  // [{"type": "text", "text": "..."}]
      std::string text;
      for (const auto& part : c) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string())
          throw HttpError(400, "'" + where + "' parts must be {\"type\": \"text\", \"text\": \"...\"}", "messages");
        text += part["text"].get<std::string>();
      }
      return text;
    }
    throw HttpError(400, "'" + where + "' must be a string or an array of text parts", "messages");
  }

  pipeline::Request chat_request(const json& b) {
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

  json route_json(const pipeline::Response& r) {
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

  static json usage(const pipeline::Response& r) {
    return {{"prompt_tokens", r.prompt_tokens},
            {"completion_tokens", r.completion_tokens},
            {"total_tokens", r.prompt_tokens + r.completion_tokens},
            {"prompt_tokens_details", {{"cached_tokens", r.cached_tokens}}}};
  }

  static int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // ---- handlers -----------------------------------------------------------------------------
  void chat(const httplib::Request& req, httplib::Response& res) {
    const json b = parse_body(req);
    pipeline::Request r = chat_request(b);
    const bool streaming = get_bool(b, "stream", false);
    if (!streaming) {
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
      return;
    }
    // SSE. The pipeline runs on its own thread and hands events over a queue. The handler waits for
    // the first event: an error before it (bad request, prompt longer than the context) is still
    // an ordinary JSON error with its status; after it, errors travel as events. A failed write
    // (the client went away) cancels generation at the next token.
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
        json c;
        std::string line;
        if (ev.kind == SseStream::Event::Kind::text) {
          json delta = {{"content", ev.text}};
          if (first) delta["role"] = "assistant";
          first = false;
          c = {{"id", id},
               {"object", "chat.completion.chunk"},
               {"created", created},
               {"model", ev.model},
               {"choices", {{{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", nullptr}}}}};
          line = "data: " + c.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
        } else if (ev.kind == SseStream::Event::Kind::done) {
          const pipeline::Response& out = *ev.response;
          c = {{"id", id},
               {"object", "chat.completion.chunk"},
               {"created", created},
               {"model", out.model},
               {"choices",
                {{{"index", 0},
                  {"delta", json::object()},
                  {"logprobs", nullptr},
                  {"finish_reason", llm::to_string(out.finish)}}}},
               {"usage", usage(out)},
               {"ruvllm", route_json(out)}};
          line = "data: " + c.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\ndata: [DONE]\n\n";
        } else {
          line = "data: " + error_body(ev.error->status, ev.error->what()).dump() + "\n\ndata: [DONE]\n\n";
        }
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

  pipeline::Response run_pipeline(pipeline::Request r) {
    try {
      pipeline::Response out = pipe.run(std::move(r));
      observe(out);
      return out;
    } catch (const pipeline::Error& e) {
      throw HttpError(400, e.what());
    } catch (const embed::Error& e) {
      throw HttpError(400, e.what());
    } catch (const memory::Error& e) {
      throw HttpError(400, e.what());
    } catch (const llm::Error& e) {
      // The engine's refusals (prompt longer than the context, bad sampling) are the caller's.
      throw HttpError(400, e.what());
    }
  }

  void query(const httplib::Request& req, httplib::Response& res) {
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

  void generate(const httplib::Request& req, httplib::Response& res) {
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
    if (auto t = get_number(b, "temperature", 0, 2)) g.sampling.temperature = static_cast<float>(*t);
    if (auto p = get_number(b, "top_p", 1e-9, 1)) g.sampling.top_p = static_cast<float>(*p);
    if (auto s = get_integer(b, "seed", 0, 0xffffffffLL)) g.sampling.seed = static_cast<uint32_t>(*s);
    Ticket ticket(*this, req, true);
    g.cancel = ticket.token();
    llm::GenerateResult out;
    try {
      out = pipe.engine().generate(model, std::move(g));
    } catch (const llm::Error& e) {
      throw HttpError(400, e.what());
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

  void embeddings(const httplib::Request& req, httplib::Response& res) {
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
      } catch (const embed::Error& err) {
        throw HttpError(400, "input[" + std::to_string(i) + "]: " + err.what(), "input");
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

  void models(const httplib::Request&, httplib::Response& res) {
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

  // ---- memory -------------------------------------------------------------------------------
  static json node_json(const memory::Node& n) {
    json j = {{"id", n.id},
              {"type", memory::to_string(n.type)},
              {"source", n.source},
              {"title", n.title},
              {"text", n.text},
              {"timestamp_ms", n.timestamp_ms},
              {"tags", n.tags},
              {"domain", n.domain},
              {"language", n.language},
              {"version", n.version},
              {"confidence", n.confidence}};
    j["metadata"] = json::parse(n.metadata, nullptr, false);
    if (j["metadata"].is_discarded()) j["metadata"] = json::object();
    j["valid_from"] = n.valid_from ? json(*n.valid_from) : json(nullptr);
    j["valid_to"] = n.valid_to ? json(*n.valid_to) : json(nullptr);
    return j;
  }
  static json edge_json(const memory::Edge& e) {
    return {{"id", e.id},
            {"src", e.src},
            {"dst", e.dst},
            {"rel", e.rel},
            {"weight", e.weight},
            {"confidence", e.confidence},
            {"timestamp_ms", e.timestamp_ms},
            {"created_by", e.created_by}};
  }

  memory::Node node_from(const json& b) {
    memory::Node n;
    n.text = get_string(b, "text", true);
    if (n.text.empty()) throw HttpError(400, "'text' must not be empty", "text");
    n.id = get_string(b, "id", false);
    try {
      n.type = memory::parse_node_type(get_string(b, "type", false, "memory"));
    } catch (const memory::Error& e) {
      throw HttpError(400, e.what(), "type");
    }
    n.source = get_string(b, "source", false, "user");
    n.title = get_string(b, "title", false);
    n.domain = get_string(b, "domain", false);
    n.language = get_string(b, "language", false);
    if (auto c = get_number(b, "confidence", 0, 1)) n.confidence = *c;
    if (b.contains("tags")) {
      if (!b["tags"].is_array()) throw HttpError(400, "'tags' must be an array of strings", "tags");
      for (const auto& t : b["tags"]) {
        if (!t.is_string()) throw HttpError(400, "'tags' must be an array of strings", "tags");
        n.tags.push_back(t.get<std::string>());
      }
    }
    if (b.contains("metadata")) {
      if (!b["metadata"].is_object()) throw HttpError(400, "'metadata' must be an object", "metadata");
      n.metadata = b["metadata"].dump();
    }
    if (b.contains("vector")) {
      if (!b["vector"].is_array()) throw HttpError(400, "'vector' must be an array of numbers", "vector");
      for (const auto& x : b["vector"]) {
        if (!x.is_number()) throw HttpError(400, "'vector' must be an array of numbers", "vector");
        n.vector.push_back(x.get<float>());
      }
    }
    return n;
  }

  template <typename F>
  auto memory_call(F&& f) {
    try {
      return f();
    } catch (const memory::Error& e) {
      throw HttpError(400, e.what());
    } catch (const embed::Error& e) {
      throw HttpError(400, e.what());
    }
  }

  // Every route's pattern and method, so that a known path with another method is a 405.
  std::vector<std::pair<std::regex, std::string>> routes;
  bool other_method(const httplib::Request& req) const {
    for (const auto& [pattern, method] : routes)
      if (method != req.method && std::regex_match(req.path, pattern)) return true;
    return false;
  }

  void add_routes() {
    auto wrap = [this](const std::string& endpoint, auto handler) {
      return [this, endpoint, handler](const httplib::Request& req, httplib::Response& res) {
        try {
          (this->*handler)(req, res);
        } catch (const HttpError& e) {
          send_json(res, e.status, error_body(e.status, e.what(), e.param, e.code));
          if (e.status == 429 || e.status == 503) res.set_header("Retry-After", "1");
        } catch (const std::exception& e) {
          send_json(res, 500, error_body(500, std::string("internal error: ") + e.what()));
        }
        count(endpoint, res.status);
      };
    };
    routes.emplace_back(std::regex(R"(/v1/chat/completions)"), "POST");
    http.Post("/v1/chat/completions", wrap("chat", &Impl::chat));
    routes.emplace_back(std::regex(R"(/v1/query)"), "POST");
    http.Post("/v1/query", wrap("query", &Impl::query));
    routes.emplace_back(std::regex(R"(/generate)"), "POST");
    http.Post("/generate", wrap("generate", &Impl::generate));
    routes.emplace_back(std::regex(R"(/v1/embeddings)"), "POST");
    http.Post("/v1/embeddings", wrap("embeddings", &Impl::embeddings));
    routes.emplace_back(std::regex(R"(/v1/models)"), "GET");
    http.Get("/v1/models", wrap("models", &Impl::models));
    routes.emplace_back(std::regex(R"(/v1/feedback)"), "POST");
    http.Post("/v1/feedback", wrap("feedback", &Impl::feedback));
    routes.emplace_back(std::regex(R"(/v1/memory/nodes)"), "POST");
    http.Post("/v1/memory/nodes", wrap("memory", &Impl::add_node));
    routes.emplace_back(std::regex(R"(/v1/memory/nodes/([^/]+))"), "GET");
    http.Get(R"(/v1/memory/nodes/([^/]+))", wrap("memory", &Impl::get_node));
    routes.emplace_back(std::regex(R"(/v1/memory/nodes/([^/]+))"), "DELETE");
    http.Delete(R"(/v1/memory/nodes/([^/]+))", wrap("memory", &Impl::delete_node));
    routes.emplace_back(std::regex(R"(/v1/memory/nodes/([^/]+)/edges)"), "GET");
    http.Get(R"(/v1/memory/nodes/([^/]+)/edges)", wrap("memory", &Impl::node_edges));
    routes.emplace_back(std::regex(R"(/v1/memory/edges)"), "POST");
    http.Post("/v1/memory/edges", wrap("memory", &Impl::add_edge));
    routes.emplace_back(std::regex(R"(/v1/memory/edges/([^/]+))"), "DELETE");
    http.Delete(R"(/v1/memory/edges/([^/]+))", wrap("memory", &Impl::delete_edge));
    routes.emplace_back(std::regex(R"(/v1/memory/search)"), "POST");
    http.Post("/v1/memory/search", wrap("memory", &Impl::search));
    routes.emplace_back(std::regex(R"(/v1/memory/ingest)"), "POST");
    http.Post("/v1/memory/ingest", wrap("memory", &Impl::ingest));
    routes.emplace_back(std::regex(R"(/v1/memory/stats)"), "GET");
    http.Get("/v1/memory/stats", wrap("memory", &Impl::stats));
    routes.emplace_back(std::regex(R"(/health)"), "GET");
    http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, {{"status", "ok"}});
    });
    routes.emplace_back(std::regex(R"(/ready)"), "GET");
    http.Get("/ready", [this](const httplib::Request&, httplib::Response& res) {
      if (draining)
        send_json(res, 503, {{"status", "draining"}});
      else
        send_json(res, 200, {{"status", "ready"}, {"in_flight", pipe.in_flight()}});
    });
    routes.emplace_back(std::regex(R"(/metrics)"), "GET");
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      gauges.Add({{"what", "in_flight"}}).Set(static_cast<double>(pipe.in_flight()));
      const auto st = pipe.memory().stats();
      gauges.Add({{"what", "memory_nodes"}}).Set(static_cast<double>(st.nodes));
      gauges.Add({{"what", "memory_edges"}}).Set(static_cast<double>(st.edges));
      std::ostringstream out;
      prometheus::TextSerializer().Serialize(out, registry->Collect());
      res.status = 200;
      res.set_content(out.str(), "text/plain; version=0.0.4");
    });
  }

  void add_node(const httplib::Request& req, httplib::Response& res) {
    memory::Node n = node_from(parse_body(req));
    const std::string id = memory_call([&] { return pipe.memory().add(std::move(n)); });
    send_json(res, 201, {{"id", id}});
  }
  void get_node(const httplib::Request& req, httplib::Response& res) {
    auto n = memory_call([&] { return pipe.memory().get(req.matches[1].str()); });
    if (!n) throw HttpError(404, "no node '" + req.matches[1].str() + "'", "id");
    send_json(res, 200, node_json(*n));
  }
  void delete_node(const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1].str();
    if (!memory_call([&] { return pipe.memory().remove(id); })) throw HttpError(404, "no node '" + id + "'", "id");
    pipe.invalidate({id});
    send_json(res, 200, {{"id", id}, {"deleted", true}});
  }
  void node_edges(const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1].str();
    if (!memory_call([&] { return pipe.memory().get(id); })) throw HttpError(404, "no node '" + id + "'", "id");
    json data = json::array();
    for (const auto& e : memory_call([&] { return pipe.memory().edges(id); })) data.push_back(edge_json(e));
    send_json(res, 200, {{"data", data}});
  }
  void add_edge(const httplib::Request& req, httplib::Response& res) {
    const json b = parse_body(req);
    memory::Edge e;
    e.src = get_string(b, "src", true);
    e.dst = get_string(b, "dst", true);
    e.rel = get_string(b, "rel", true);
    if (e.rel.empty()) throw HttpError(400, "'rel' must not be empty", "rel");
    if (auto w = get_number(b, "weight", 1e-9, 1e9)) e.weight = static_cast<float>(*w);
    if (auto c = get_number(b, "confidence", 0, 1)) e.confidence = static_cast<float>(*c);
    e.created_by = "user";
    for (const auto& end : {e.src, e.dst})
      if (!memory_call([&] { return pipe.memory().get(end); })) throw HttpError(404, "no node '" + end + "'", "src");
    const std::string id = memory_call([&] { return pipe.memory().link(e); });
    pipe.invalidate({e.src, e.dst});
    send_json(res, 201, {{"id", id}});
  }
  void delete_edge(const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1].str();
    if (!memory_call([&] { return pipe.memory().unlink(id); })) throw HttpError(404, "no edge '" + id + "'", "id");
    pipe.invalidate_all();  // the store finds edges by node, not by id: every cached answer goes
    send_json(res, 200, {{"id", id}, {"deleted", true}});
  }
  void search(const httplib::Request& req, httplib::Response& res) {
    const json b = parse_body(req);
    memory::SearchQuery q;
    q.text = get_string(b, "query", true);
    if (q.text.empty()) throw HttpError(400, "'query' must not be empty", "query");
    q.k = static_cast<std::size_t>(get_integer(b, "k", 1, 1000).value_or(10));
    const std::string mode = get_string(b, "mode", false, "hybrid");
    if (mode == "dense")
      q.mode = memory::SearchMode::dense;
    else if (mode == "lexical")
      q.mode = memory::SearchMode::lexical;
    else if (mode == "hybrid")
      q.mode = memory::SearchMode::hybrid;
    else
      throw HttpError(400, "'mode' must be dense, lexical or hybrid", "mode");
    const auto result = memory_call([&] { return pipe.memory().search(q); });
    json hits = json::array();
    for (const auto& h : result.hits) {
      json hit = {{"id", h.id}, {"score", h.score}, {"dense_rank", h.dense_rank}, {"lexical_rank", h.lexical_rank}};
      if (auto n = pipe.memory().get(h.id)) {
        hit["title"] = n->title;
        hit["text"] = n->text;
        hit["type"] = memory::to_string(n->type);
      }
      hits.push_back(hit);
    }
    send_json(res, 200, {{"data", hits}, {"query_has_vector", result.query_has_vector}});
  }
  void ingest(const httplib::Request& req, httplib::Response& res) {
    const json b = parse_body(req);
    if (!b.contains("documents") || !b["documents"].is_array() || b["documents"].empty())
      throw HttpError(400, "'documents' must be a non-empty array of {title, text}", "documents");
    // The ingest reads files: the documents go to a JSON Lines file in the data folder first.
    const auto path = std::filesystem::path(pipe.config().data_dir) /
                      ("ingest-" + std::to_string(Clock::now().time_since_epoch().count()) + ".jsonl");
    std::string lines;
    for (std::size_t i = 0; i < b["documents"].size(); ++i) {  // all checked before anything is written
      const json& d = b["documents"][i];
      const std::string where = "documents[" + std::to_string(i) + "]";
      if (!d.is_object() || !d.contains("text") || !d["text"].is_string())
        throw HttpError(400, where + " must be an object with a string 'text'", "documents");
      for (const char* key : {"title", "id"})
        if (d.contains(key) && !d[key].is_string())
          throw HttpError(400, where + "." + key + " must be a string", "documents");
      json row = {{"text", d["text"]}, {"title", d.value("title", "")}};
      if (d.contains("id")) row["id"] = d["id"];
      lines += row.dump() + '\n';
    }
    {
      std::ofstream f(path);
      f << lines;
      if (!f) {
        f.close();
        std::filesystem::remove(path);
        throw HttpError(500, "cannot write " + path.string());
      }
    }
    memory::IngestParams p;
    p.source = get_string(b, "source", false, "kb");
    memory::IngestReport rep;
    try {
      rep = memory_call([&] { return memory::ingest(pipe.memory(), {path.string()}, p); });
    } catch (...) {
      std::filesystem::remove(path);
      throw;
    }
    std::filesystem::remove(path);
    send_json(res, 200,
              {{"documents", rep.documents},
               {"chunks", rep.chunks},
               {"duplicates", rep.duplicates},
               {"near_duplicates", rep.near_duplicates},
               {"skipped", rep.skipped},
               {"edges", {{"follows", rep.follows}, {"same_topic", rep.same_topic}, {"mentions", rep.mentions}}}});
  }
  void stats(const httplib::Request&, httplib::Response& res) {
    const auto s = pipe.memory().stats();
    send_json(res, 200,
              {{"nodes", s.nodes},
               {"edges", s.edges},
               {"vectors", s.vectors},
               {"embedder", s.embedder},
               {"dimension", s.dimension},
               {"database_bytes", s.database_bytes}});
  }
  void feedback(const httplib::Request& req, httplib::Response& res) {
    const json b = parse_body(req);
    const std::string id = get_string(b, "request_id", true);
    const auto score = get_number(b, "score", 0, 1);
    const std::string label = get_string(b, "label", false);
    if (!score && label.empty()) throw HttpError(400, "feedback needs 'score' (0..1) or 'label'", "score");
    try {
      pipe.feedback(id, score, label);
    } catch (const pipeline::Error& e) {
      const std::string what = e.what();
      throw HttpError(what.starts_with("unknown request_id") ? 404 : 400, what, "request_id");
    }
    send_json(res, 200, {{"request_id", id}, {"stored", true}});
  }
};

Server::Server(pipeline::Pipeline& pipeline, pipeline::ServerConfig config)
    : impl_(std::make_unique<Impl>(pipeline, std::move(config))) {
  Impl& s = *impl_;
  s.http.set_payload_max_length(s.config.max_body_bytes);
  // cpp-httplib's default also sets SO_REUSEPORT, which lets a second server bind a port in use.
  s.http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  const int threads = s.config.threads;
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
  s.http.set_read_timeout(30, 0);
  s.http.set_write_timeout(30, 0);
  // Authentication first; /health and /ready stay open for orchestrators' probes.
  s.http.set_pre_routing_handler([&s](const httplib::Request& req, httplib::Response& res) {
    if (s.config.api_keys.empty() || req.path == "/health" || req.path == "/ready")
      return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    for (const auto& key : s.config.api_keys)
      if (auth == "Bearer " + key) return httplib::Server::HandlerResponse::Unhandled;
    send_json(res, 401,
              error_body(401, auth.empty() ? "missing API key (Authorization: Bearer <key>)" : "invalid API key", {},
                         "invalid_api_key"));
    s.count("auth", 401);
    return httplib::Server::HandlerResponse::Handled;
  });
  // Errors cpp-httplib answers itself (404 no route, 413 too large, 400 bad request line) in
  // OpenAI's shape too.
  s.http.set_error_handler([&s](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404 && s.other_method(req)) res.status = 405;
    std::string message = res.status == 404   ? "no route " + req.method + " " + req.path
                          : res.status == 413 ? "the request body is larger than server.max_body_bytes"
                          : res.status == 405 ? "method not allowed"
                                              : "bad request";
    send_json(res, res.status, error_body(res.status, message));
  });
  s.http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what += std::string(": ") + e.what();
    } catch (...) {
    }
    send_json(res, 500, error_body(500, what));
  });
  s.add_routes();
}

Server::~Server() { stop(0); }

int Server::bind() {
  Impl& s = *impl_;
  const int port = s.config.port == 0 ? s.http.bind_to_any_port(s.config.host)
                                      : (s.http.bind_to_port(s.config.host, s.config.port) ? s.config.port : -1);
  if (port <= 0)
    throw pipeline::Error("cannot listen on " + s.config.host + ":" + std::to_string(s.config.port) +
                          " (address in use or not local?)");
  s.port = port;
  return port;
}

void Server::run() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.run_mutex);
    if (s.draining) return;  // stop() came first
    s.serving = true;
  }
  s.watcher = std::jthread([&s](std::stop_token st) { s.watch(st); });
  s.http.listen_after_bind();
  s.watcher.request_stop();
  s.active_changed.notify_all();
  s.watcher.join();
  std::lock_guard lock(s.run_mutex);
  s.serving = false;
  s.run_ended.notify_all();
}

void Server::stop(double grace_s) {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.run_mutex);
    s.draining = true;
  }
  {
    std::unique_lock lock(s.active_mutex);
    const auto until = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(grace_s * 1e6));
    s.active_changed.wait_until(lock, until, [&] { return s.active.empty(); });
    for (auto& a : s.active) a.cancel.request_stop();
    s.active_changed.wait_for(lock, std::chrono::seconds(30), [&] { return s.active.empty(); });
  }
  // httplib's stop() acts only once its accept loop runs: repeat it until run() has returned.
  std::unique_lock lock(s.run_mutex);
  while (s.serving) {
    s.http.stop();
    s.run_ended.wait_for(lock, std::chrono::milliseconds(20));
  }
}

bool Server::ready() const { return impl_->serving && !impl_->draining; }

}  // namespace ruvllm::server
