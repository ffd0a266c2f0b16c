// The server's insides, shared by the files that implement it: the state it keeps (connections
// that generate, metrics, the route table) and its handlers. server.cpp: lifecycle; routes.cpp: the
// route table; openai.cpp: OpenAI's endpoints; memory_routes.cpp: memory and feedback;
// admission.cpp: the watcher; metrics.cpp: Prometheus; http.cpp: JSON and errors.
#pragma once

#include <httplib.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "http.h"
#include "ruvllm/server.h"

namespace ruvllm::server {

using detail::HttpError;
using detail::json;
using Clock = std::chrono::steady_clock;

struct Server::Impl {
  pipeline::Pipeline& pipe;
  ServerConfig config;
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

  Impl(pipeline::Pipeline& p, ServerConfig c) : pipe(p), config(std::move(c)) {}

  // Every route's pattern and method, so that a known path with another method is a 405.
  std::vector<std::pair<std::regex, std::string>> routes;

  // ---- admission: queue limit, deadline, cancellation (admission.cpp) ----
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
  void watch(std::stop_token stop) noexcept;  // the watcher thread: deadlines, clients gone

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

  // ---- metrics (metrics.cpp) ----
  void count(const std::string& endpoint, int status);
  void observe(const pipeline::Response& r);

  // ---- OpenAI's endpoints and the native query and generate (openai.cpp) ----
  void common_fields(const json& b, pipeline::Request& r);
  static std::string message_text(const json& m, std::size_t i);
  pipeline::Request chat_request(const json& b);
  json route_json(const pipeline::Response& r);
  static json usage(const pipeline::Response& r);
  static int64_t unix_now();
  void chat(const httplib::Request& req, httplib::Response& res);
  void stream_chat(const httplib::Request& req, httplib::Response& res, pipeline::Request r);
  std::string sse_event(const SseStream::Event& ev, const std::string& id, int64_t created, bool& first);
  pipeline::Response run_pipeline(pipeline::Request r);
  void query(const httplib::Request& req, httplib::Response& res);
  void generate(const httplib::Request& req, httplib::Response& res);
  void embeddings(const httplib::Request& req, httplib::Response& res);
  void models(const httplib::Request&, httplib::Response& res);

  // ---- memory and feedback (memory_routes.cpp) ----
  memory::Node node_from(const json& b);
  void add_node(const httplib::Request& req, httplib::Response& res);
  void get_node(const httplib::Request& req, httplib::Response& res);
  void delete_node(const httplib::Request& req, httplib::Response& res);
  void node_edges(const httplib::Request& req, httplib::Response& res);
  void add_edge(const httplib::Request& req, httplib::Response& res);
  void delete_edge(const httplib::Request& req, httplib::Response& res);
  void search(const httplib::Request& req, httplib::Response& res);
  void ingest(const httplib::Request& req, httplib::Response& res);
  void stats(const httplib::Request&, httplib::Response& res);
  void feedback(const httplib::Request& req, httplib::Response& res);
  template <typename F>
  auto memory_call(F&& f) {
    try {
      return f();
    } catch (const Error& e) {
      throw detail::http_error(e);
    }
  }

  // ---- the route table (routes.cpp) ----
  bool other_method(const httplib::Request& req) const;
  void add_routes();
  void health(const httplib::Request&, httplib::Response& res);
  void readiness(const httplib::Request&, httplib::Response& res);
  void metrics(const httplib::Request&, httplib::Response& res);
};

}  // namespace ruvllm::server
