// ruvllm/server.h — the pipeline over HTTP (cpp-httplib): OpenAI-compatible and native endpoints.
//
//   POST /v1/chat/completions   OpenAI chat (SSE with "stream": true); model "auto" = routed pipeline,
//                               a model name bypasses the router
//   GET  /v1/models             POST /v1/embeddings
//   POST /v1/query              answer + route decision + context blocks with scores + latency
//   POST /generate              the seeds' raw generation: {model_id, prompt, max_tokens, temperature, top_p}
//   /v1/memory/...              nodes and edges CRUD, search, ingest
//   POST /v1/feedback           {request_id, score in [0, 1] and/or label}
//   GET  /metrics (Prometheus text), /health, /ready
//
// Errors use OpenAI's shape {"error": {"message", "type", "param", "code"}} with the matching status.
// Limits (body size, tokens, time, requests in flight) and Bearer API keys come from ServerConfig below.
// A client that disconnects cancels its generation; stop() drains in-flight work first.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ruvllm/pipeline.h"

namespace ruvllm::server {

struct ServerConfig {  // the [server] table of ruvllm.toml
  std::string host = "127.0.0.1";
  int port = 8080;
  std::vector<std::string> api_keys;     // Bearer tokens; empty = no authentication
  std::size_t max_body_bytes = 1 << 20;  // larger bodies: 413
  int max_tokens = 1024;                 // per request; more: 400
  double request_timeout_s = 300;        // generation is cancelled after this
  std::size_t max_queue = 32;            // requests in flight; beyond: 429 with Retry-After
  int threads = 8;                       // HTTP worker threads
};

class Server {
 public:
  // The pipeline must outlive the server.
  Server(pipeline::Pipeline& pipeline, ServerConfig config);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds config.host:config.port (0 = any free port) and returns the port. Throws
  // pipeline::Error when the address cannot be bound.
  int bind();
  // Serves until stop(); call bind() first.
  void run();
  // Graceful: new requests get 503, requests in flight may finish for `grace_s` seconds, then the
  // rest are cancelled (they answer with finish_reason "cancelled"); returns when run() has ended
  // its accept loop. Safe to call from any thread, more than once.
  void stop(double grace_s = 10);
  bool ready() const;  // bound, serving and not draining

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ruvllm::server
