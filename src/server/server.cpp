// The HTTP server's lifecycle: the listener and its limits, authentication, bind, run and a
// graceful stop. The handlers live beside it (impl.h lists the files).
#include "impl.h"

#include <sys/socket.h>

#include <cctype>
#include <string_view>

namespace ruvllm::server {

using namespace detail;

namespace {

// Whether `a` equals `b`, in time that depends on their lengths only, not on where they differ.
bool equal_in_constant_time(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// "Authorization: Bearer <key>": the scheme in any case (RFC 9110 §11.1), the key compared in
// constant time against every configured key.
bool key_accepted(std::string_view header, const std::vector<std::string>& keys) {
  constexpr std::string_view scheme = "bearer ";
  if (header.size() <= scheme.size()) return false;
  for (std::size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != scheme[i]) return false;
  const std::string_view token = header.substr(scheme.size());
  bool accepted = false;
  for (const auto& key : keys) accepted |= equal_in_constant_time(token, key);
  return accepted;
}

}  // namespace

Server::Server(pipeline::Pipeline& pipeline, ServerConfig config)
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
    if (key_accepted(auth, s.config.api_keys)) return httplib::Server::HandlerResponse::Unhandled;
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
