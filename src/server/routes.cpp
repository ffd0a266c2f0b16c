// The route table: every endpoint, its method and its handler; errors in OpenAI's shape.
#include "impl.h"

#include <prometheus/text_serializer.h>

#include <sstream>

namespace ruvllm::server {

using namespace detail;

bool Server::Impl::other_method(const httplib::Request& req) const {
  for (const auto& [pattern, method] : routes)
    if (method != req.method && std::regex_match(req.path, pattern)) return true;
  return false;
}

void Server::Impl::add_routes() {
  using I = Impl;
  struct Route {
    const char* method;
    const char* pattern;   // cpp-httplib's: a regular expression over the path
    const char* endpoint;  // the metrics label; null: not counted (probes and the metrics themselves)
    void (I::*handler)(const httplib::Request&, httplib::Response&);
  };
  static const Route table[] = {
      {"POST", "/v1/chat/completions", "chat", &I::chat},
      {"POST", "/v1/query", "query", &I::query},
      {"POST", "/generate", "generate", &I::generate},
      {"POST", "/v1/embeddings", "embeddings", &I::embeddings},
      {"GET", "/v1/models", "models", &I::models},
      {"POST", "/v1/feedback", "feedback", &I::feedback},
      {"POST", "/v1/memory/nodes", "memory", &I::add_node},
      {"GET", R"(/v1/memory/nodes/([^/]+))", "memory", &I::get_node},
      {"DELETE", R"(/v1/memory/nodes/([^/]+))", "memory", &I::delete_node},
      {"GET", R"(/v1/memory/nodes/([^/]+)/edges)", "memory", &I::node_edges},
      {"POST", "/v1/memory/edges", "memory", &I::add_edge},
      {"DELETE", R"(/v1/memory/edges/([^/]+))", "memory", &I::delete_edge},
      {"POST", "/v1/memory/search", "memory", &I::search},
      {"POST", "/v1/memory/ingest", "memory", &I::ingest},
      {"GET", "/v1/memory/stats", "memory", &I::stats},
      {"GET", "/health", nullptr, &I::health},
      {"GET", "/ready", nullptr, &I::readiness},
      {"GET", "/metrics", nullptr, &I::metrics},
  };
  for (const Route& r : table) {
    routes.emplace_back(std::regex(r.pattern), r.method);
    httplib::Server::Handler h = [this, r](const httplib::Request& req, httplib::Response& res) {
      if (!r.endpoint) return (this->*r.handler)(req, res);
      auto answer = [&res](const HttpError& e) {
        send_json(res, e.status, error_body(e.status, e.what(), e.param, e.code));
        if (e.status == 429 || e.status == 503) res.set_header("Retry-After", "1");
      };
      try {
        (this->*r.handler)(req, res);
      } catch (const HttpError& e) {
        answer(e);
      } catch (const Error& e) {  // a room's error the handler did not translate: the one table
        answer(http_error(e));
      } catch (const std::exception& e) {
        send_json(res, 500, error_body(500, std::string("internal error: ") + e.what()));
      } catch (...) {
        send_json(res, 500, error_body(500, "internal error"));
      }
      count(r.endpoint, res.status);
    };
    const std::string method = r.method;
    if (method == "GET")
      http.Get(r.pattern, std::move(h));
    else if (method == "POST")
      http.Post(r.pattern, std::move(h));
    else
      http.Delete(r.pattern, std::move(h));
  }
}

void Server::Impl::health(const httplib::Request&, httplib::Response& res) { send_json(res, 200, {{"status", "ok"}}); }

void Server::Impl::readiness(const httplib::Request&, httplib::Response& res) {
  if (draining)
    send_json(res, 503, {{"status", "draining"}});
  else
    send_json(res, 200, {{"status", "ready"}, {"in_flight", pipe.in_flight()}});
}

void Server::Impl::metrics(const httplib::Request&, httplib::Response& res) {
  gauges.Add({{"what", "in_flight"}}).Set(static_cast<double>(pipe.in_flight()));
  const auto st = pipe.memory().stats();
  gauges.Add({{"what", "memory_nodes"}}).Set(static_cast<double>(st.nodes));
  gauges.Add({{"what", "memory_edges"}}).Set(static_cast<double>(st.edges));
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry->Collect());
  res.status = 200;
  res.set_content(out.str(), "text/plain; version=0.0.4");
}

}  // namespace ruvllm::server
