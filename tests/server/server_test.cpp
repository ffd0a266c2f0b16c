// The HTTP server in-process on a free loopback port, driven by a real HTTP client: OpenAI shapes,
// native endpoints, limits, authentication, bad input, cancellation and a graceful stop.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "fixtures.h"
#include "ruvllm/config.h"
#include "ruvllm/embed.h"
#include "ruvllm/pipeline.h"
#include "ruvllm/server.h"

namespace ruvllm::server {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using test::fresh_dir;

const char* const kCorpus =
    R"({"id": "compiler", "title": "Compiler", "text": "A compiler is a program that translates source code written in a programming language into machine code."})"
    "\n"
    R"({"id": "interpreter", "title": "Interpreter", "text": "An interpreter executes the instructions of a program directly, without translating them into machine code first."})"
    "\n"
    R"({"id": "linker", "title": "Linker", "text": "A linker combines the object files produced by a Compiler into one executable program."})"
    "\n"
    R"({"id": "volcano", "title": "Volcano", "text": "A volcano is a rupture in the crust of a planet where lava and gases escape."})"
    "\n";

const char* const kQuestion = "What does a compiler translate source code into?";

config::Settings tiny_config(const std::string& dir) {
  config::Settings c;
  c.models = {{"small", test::tiny_lfm2(), "tiny", 1.0, 0}, {"large", test::tiny_lfm2(), "tiny", 4.0, 1}};
  c.default_model = "large";
  c.threads = 2;
  c.context = 2048;
  c.parallel = 4;
  c.data_dir = dir;
  c.memory_path = dir + "/memory.sqlite";
  c.request_log = dir + "/requests.jsonl";
  c.max_docs = 4;
  c.max_context_tokens = 512;
  c.max_tokens = 8;
  c.sampling.temperature = 0;
  c.sampling.seed = 1;
  c.server.host = "127.0.0.1";
  c.server.port = 0;
  c.server.threads = 8;
  return c;
}

// A pipeline and its server on a free port of 127.0.0.1, serving on a thread.
struct Harness {
  std::string dir;
  config::Settings config;
  std::unique_ptr<pipeline::Pipeline> pipe;
  std::unique_ptr<Server> server;
  std::thread thread;
  int port = 0;
  bool stopped = false;

  explicit Harness(const std::string& name, const std::function<void(config::Settings&)>& tweak = {}) {
    dir = fresh_dir(name);
    config = tiny_config(dir);
    if (tweak) tweak(config);
    pipe = std::make_unique<pipeline::Pipeline>(config);
    pipe->ingest({test::write_file(name + "-corpus.jsonl", kCorpus)});
    server = std::make_unique<Server>(*pipe, config.server);
    port = server->bind();
    thread = std::thread([this] { server->run(); });
    // Serving once /health answers (the accept loop is running).
    const auto until = Clock::now() + 20s;
    while (Clock::now() < until) {
      httplib::Client c("127.0.0.1", port);
      if (auto r = c.Get("/health"); r && r->status == 200) break;
      std::this_thread::sleep_for(10ms);
    }
  }
  ~Harness() { stop(0); }

  void stop(double grace) {
    if (stopped) return;
    stopped = true;
    server->stop(grace);
    if (thread.joinable()) thread.join();
  }

  httplib::Client client(time_t read_timeout_s = 120) const {
    httplib::Client c("127.0.0.1", port);
    c.set_connection_timeout(5, 0);
    c.set_read_timeout(read_timeout_s, 0);
    c.set_write_timeout(30, 0);
    return c;
  }
};

httplib::Result post(httplib::Client& c, const std::string& path, const json& body,
                     const httplib::Headers& headers = {}) {
  return c.Post(path.c_str(), headers, body.dump(), "application/json");
}

json chat_body(const std::string& text, int max_tokens = 8, const std::string& model = "small") {
  return {{"model", model}, {"messages", {{{"role", "user"}, {"content", text}}}}, {"max_tokens", max_tokens}};
}

json parse(const std::string& s) { return json::parse(s, nullptr, false); }

std::vector<json> log_rows(const std::string& path) {
  std::vector<json> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(json::parse(line, nullptr, false));
  return rows;
}

// The request log row of the request whose query is `query`, waiting up to `wait` for it.
std::optional<json> wait_for_row(const std::string& log, const std::string& query, std::chrono::seconds wait) {
  const auto until = Clock::now() + wait;
  do {
    for (const auto& row : log_rows(log))
      if (row.is_object() && row.value("query", "") == query) return row;
    std::this_thread::sleep_for(20ms);
  } while (Clock::now() < until);
  return std::nullopt;
}

// OpenAI's error shape: {"error": {"message": "...", "type": "...", "param": ..., "code": ...}}.
void expect_error_shape(const httplib::Result& r, int status, const std::string& what) {
  ASSERT_TRUE(r) << what << ": no response (" << httplib::to_string(r.error()) << ")";
  EXPECT_EQ(r->status, status) << what << ": " << r->body;
  const json j = parse(r->body);
  ASSERT_TRUE(j.is_object()) << what << ": not JSON: " << r->body;
  ASSERT_TRUE(j.contains("error") && j["error"].is_object()) << what << ": " << r->body;
  const json& e = j["error"];
  EXPECT_TRUE(e.contains("message") && e["message"].is_string() && !e["message"].get<std::string>().empty())
      << what << ": " << r->body;
  EXPECT_TRUE(e.contains("type") && e["type"].is_string() && !e["type"].get<std::string>().empty())
      << what << ": " << r->body;
  EXPECT_TRUE(e.contains("param")) << what << ": " << r->body;
  EXPECT_TRUE(e.contains("code")) << what << ": " << r->body;
  EXPECT_NE(r->get_header_value("Content-Type").find("application/json"), std::string::npos) << what;
}

// A streamed chat: the `data:` payloads in order.
struct Sse {
  int status = 0;
  std::string content_type, raw;
  std::vector<std::string> events;
  bool malformed = false;
  bool completed = false;  // the client read the response to its end
};

Sse stream_chat(int port, const json& body, const std::function<bool(const Sse&)>& more = {},
                time_t read_timeout_s = 120) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(read_timeout_s, 0);
  Sse out;
  std::size_t parsed = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.set_header("Content-Type", "application/json");
  req.body = body.dump();
  req.response_handler = [&](const httplib::Response& r) {
    out.status = r.status;
    out.content_type = r.get_header_value("Content-Type");
    return true;
  };
  req.content_receiver = [&](const char* data, std::size_t n, uint64_t, uint64_t) {
    out.raw.append(data, n);
    for (std::size_t end; (end = out.raw.find("\n\n", parsed)) != std::string::npos; parsed = end + 2) {
      const std::string event = out.raw.substr(parsed, end - parsed);
      if (event.rfind("data: ", 0) == 0)
        out.events.push_back(event.substr(6));
      else
        out.malformed = true;
    }
    return more ? more(out) : true;
  };
  const auto res = cli.send(req);
  out.completed = static_cast<bool>(res);
  return out;
}

// Prometheus text format: every line a comment (# HELP / # TYPE) or `name{labels} value`. Returns
// the samples by name and sorted labels.
std::map<std::string, double> parse_metrics(const std::string& text) {
  std::map<std::string, double> samples;
  static const std::regex sample_re(R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([^ ]+)( -?[0-9]+)?)");
  static const std::regex comment_re(R"(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]*( .*)?)");
  static const std::regex label_re(R"(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)\")");
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      EXPECT_TRUE(std::regex_match(line, comment_re)) << "bad comment line: " << line;
      continue;
    }
    std::smatch m;
    if (!std::regex_match(line, m, sample_re)) {
      ADD_FAILURE() << "not a sample line: " << line;
      continue;
    }
    const std::string value = m[4];
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    EXPECT_TRUE(end != value.c_str() && *end == '\0') << "value is not a number: " << line;
    std::map<std::string, std::string> labels;
    const std::string body = m[3];
    std::size_t covered = 0;
    for (auto it = std::sregex_iterator(body.begin(), body.end(), label_re); it != std::sregex_iterator(); ++it) {
      labels[(*it)[1]] = (*it)[2];
      covered += static_cast<std::size_t>(it->length());
    }
    if (!labels.empty()) covered += labels.size() - 1;  // the commas
    EXPECT_EQ(covered, body.size()) << "bad labels: " << line;
    std::string key = m[1].str() + "{";
    for (const auto& [k, val] : labels) key += k + "=" + val + ",";
    samples[key + "}"] = v;
  }
  return samples;
}

double metric(const std::map<std::string, double>& samples, const std::string& name,
              const std::map<std::string, std::string>& labels = {}) {
  std::string key = name + "{";
  for (const auto& [k, v] : labels) key += k + "=" + v + ",";
  auto it = samples.find(key + "}");
  return it == samples.end() ? 0.0 : it->second;
}

// ==== OpenAI endpoints ==========================================================================

TEST(Server, ChatCompletionInOpenAIShapeAndItsStream) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-chat");
  auto cli = h.client();
  json body = chat_body(kQuestion, 12, "small");
  body["temperature"] = 0;
  body["seed"] = 3;
  body["cache"] = false;
  const auto res = post(cli, "/v1/chat/completions", body);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_NE(res->get_header_value("Content-Type").find("application/json"), std::string::npos);
  const json j = parse(res->body);
  ASSERT_TRUE(j.is_object()) << res->body;
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u) << j["id"];
  EXPECT_NEAR(j["created"].get<double>(), static_cast<double>(std::time(nullptr)), 300);
  EXPECT_EQ(j["model"], "small");
  ASSERT_EQ(j["choices"].size(), 1u);
  const json& choice = j["choices"][0];
  EXPECT_EQ(choice["index"], 0);
  EXPECT_EQ(choice["message"]["role"], "assistant");
  ASSERT_TRUE(choice["message"]["content"].is_string());
  const std::string text = choice["message"]["content"];
  const std::string finish = choice["finish_reason"];
  EXPECT_TRUE(finish == "stop" || finish == "length") << finish;
  const json& usage = j["usage"];
  EXPECT_GT(usage["prompt_tokens"].get<int>(), 0);
  EXPECT_LE(usage["completion_tokens"].get<int>(), 12);
  if (finish == "length") {
    EXPECT_EQ(usage["completion_tokens"], 12);
  }
  EXPECT_EQ(usage["total_tokens"].get<int>(),
            usage["prompt_tokens"].get<int>() + usage["completion_tokens"].get<int>());

  // The same request streamed: SSE chunks whose deltas concatenate to the same text.
  body["stream"] = true;
  const Sse s = stream_chat(h.port, body);
  ASSERT_TRUE(s.completed);
  EXPECT_EQ(s.status, 200);
  EXPECT_NE(s.content_type.find("text/event-stream"), std::string::npos) << s.content_type;
  EXPECT_FALSE(s.malformed) << s.raw;
  ASSERT_GE(s.events.size(), 2u) << s.raw;
  EXPECT_EQ(s.events.back(), "[DONE]");
  std::string streamed;
  std::set<std::string> ids;
  json last;
  for (std::size_t i = 0; i + 1 < s.events.size(); ++i) {
    const json c = parse(s.events[i]);
    ASSERT_TRUE(c.is_object()) << s.events[i];
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    ids.insert(c["id"].get<std::string>());
    ASSERT_EQ(c["choices"].size(), 1u);
    const json& delta = c["choices"][0]["delta"];
    if (i == 0 && delta.contains("content")) {
      EXPECT_EQ(delta["role"], "assistant");
    }
    if (delta.contains("content")) streamed += delta["content"].get<std::string>();
    last = c;
  }
  EXPECT_EQ(ids.size(), 1u) << "chunks of one completion share an id";
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(last["choices"][0]["finish_reason"], finish);
  EXPECT_EQ(last["usage"]["completion_tokens"], usage["completion_tokens"]);
  EXPECT_EQ(last["model"], "small");

  // "auto" (and no model) is the routed pipeline: routing is off, so models.default answers.
  body = chat_body("Hello there", 4, "auto");
  auto r = post(cli, "/v1/chat/completions", body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(parse(r->body)["model"], "large");
  body.erase("model");
  r = post(cli, "/v1/chat/completions", body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(parse(r->body)["model"], "large");
  // A system message and earlier turns are accepted.
  body = {{"model", "small"},
          {"max_tokens", 4},
          {"messages",
           {{{"role", "system"}, {"content", "Be brief."}},
            {{"role", "user"}, {"content", "Hi"}},
            {{"role", "assistant"}, {"content", "Hello."}},
            {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "What is a linker?"}}}}}}}};
  r = post(cli, "/v1/chat/completions", body);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

// Every chunk of a streamed completion names the model that answers (OpenAI: the same model field
// in every chunk), also when the client asked for "auto".
TEST(Server, StreamChunksNameTheModelThatAnswers) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-chunk-model");
  json body = chat_body(kQuestion, 6, "auto");
  body["stream"] = true;
  const Sse s = stream_chat(h.port, body);
  ASSERT_TRUE(s.completed);
  ASSERT_GE(s.events.size(), 3u) << s.raw;
  const json last = parse(s.events[s.events.size() - 2]);
  ASSERT_EQ(last["model"], "large");
  for (std::size_t i = 0; i + 1 < s.events.size(); ++i)
    EXPECT_EQ(parse(s.events[i])["model"], last["model"]) << "chunk " << i << ": " << s.events[i];
}

TEST(Server, ModelsListAutoAndTheLadder) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-models");
  auto cli = h.client();
  const auto r = cli.Get("/v1/models");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const json j = parse(r->body);
  EXPECT_EQ(j["object"], "list");
  std::vector<std::string> ids;
  for (const auto& m : j["data"]) {
    EXPECT_EQ(m["object"], "model");
    ids.push_back(m["id"]);
  }
  std::vector<std::string> expected{"auto"};
  for (const auto& m : h.config.models) expected.push_back(m.name);
  EXPECT_EQ(ids, expected);
}

TEST(Server, EmbeddingsAreTheEmbeddersVectors) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-embeddings");
  auto cli = h.client();
  const std::vector<std::string> inputs = {"a compiler translates source code", "glaciers move slowly"};
  const auto r = post(cli, "/v1/embeddings", {{"input", inputs}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = parse(r->body);
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["model"], h.pipe->embedder().name());
  ASSERT_EQ(j["data"].size(), inputs.size());
  std::size_t tokens = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const json& d = j["data"][i];
    EXPECT_EQ(d["object"], "embedding");
    EXPECT_EQ(d["index"], i);
    const auto expected = h.pipe->embedder().embed(inputs[i]);
    tokens += expected.tokens;
    const auto got = d["embedding"].get<std::vector<double>>();
    ASSERT_EQ(got.size(), h.pipe->embedder().dimension());
    ASSERT_EQ(got.size(), expected.vector.size());
    for (std::size_t k = 0; k < got.size(); ++k) EXPECT_FLOAT_EQ(static_cast<float>(got[k]), expected.vector[k]);
  }
  EXPECT_EQ(j["usage"]["prompt_tokens"], tokens);
  // A single string works too.
  const auto one = post(cli, "/v1/embeddings", {{"input", inputs[1]}});
  ASSERT_TRUE(one);
  ASSERT_EQ(one->status, 200);
  EXPECT_EQ(parse(one->body)["data"][0]["embedding"], j["data"][1]["embedding"]);
  // encoding_format "base64", which the openai clients ask for by default: the float32 values,
  // little-endian, in base64. Anything but float or base64 is a 400.
  const auto packed = post(cli, "/v1/embeddings", {{"input", inputs[1]}, {"encoding_format", "base64"}});
  ASSERT_TRUE(packed);
  ASSERT_EQ(packed->status, 200) << packed->body;
  const json b64 = parse(packed->body)["data"][0]["embedding"];
  ASSERT_TRUE(b64.is_string()) << packed->body;
  const std::string text = b64;
  ASSERT_EQ(text.size(), (4 * h.pipe->embedder().dimension() + 2) / 3 * 4);
  const std::string_view digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes;
  for (std::size_t i = 0, bits = 0, acc = 0; i < text.size() && text[i] != '='; ++i) {
    const std::size_t digit = digits.find(text[i]);
    ASSERT_NE(digit, std::string_view::npos) << text;
    acc = (acc << 6 | digit) & 0xffff;
    if ((bits += 6) >= 8) bytes.push_back(static_cast<char>(acc >> (bits -= 8)));
  }
  const auto expected = h.pipe->embedder().embed(inputs[1]).vector;
  ASSERT_EQ(bytes.size(), 4 * expected.size());
  for (std::size_t k = 0; k < expected.size(); ++k) {
    uint32_t u = 0;
    for (int b = 3; b >= 0; --b) u = u << 8 | static_cast<unsigned char>(bytes[4 * k + b]);
    EXPECT_EQ(std::bit_cast<float>(u), expected[k]) << k;
  }
  const auto floats = post(cli, "/v1/embeddings", {{"input", inputs[1]}, {"encoding_format", "float"}});
  ASSERT_TRUE(floats);
  EXPECT_EQ(parse(floats->body)["data"][0]["embedding"], j["data"][1]["embedding"]);
}

// ==== native endpoints ==========================================================================

TEST(Server, QueryReturnsContextWithScoresAndLatency) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-query");
  auto cli = h.client();
  const auto r = post(cli, "/v1/query", {{"query", kQuestion}, {"max_tokens", 4}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = parse(r->body);
  EXPECT_TRUE(j["answer"].is_string());
  EXPECT_EQ(j["model"], "large");
  EXPECT_LE(j["usage"]["completion_tokens"].get<int>(), 4);
  ASSERT_TRUE(j["context"].is_array());
  ASSERT_FALSE(j["context"].empty()) << r->body;
  for (const auto& b : j["context"]) {
    ASSERT_TRUE(b["score"].is_number());
    const auto node = h.pipe->memory().get(b["node_id"].get<std::string>());
    ASSERT_TRUE(node.has_value()) << b["node_id"];
    EXPECT_EQ(b["text"], node->text);
  }
  const json& lat = j["latency_ms"];
  const double total = lat["total"];
  EXPECT_GT(total, 0);
  double parts = 0;
  for (const char* k : {"embed", "search", "expand", "attend", "route", "context", "llm", "writeback"}) {
    ASSERT_TRUE(lat.contains(k)) << k;
    EXPECT_GE(lat[k].get<double>(), 0) << k;
    parts += lat[k].get<double>();
  }
  EXPECT_LE(parts, total + 1e-3);
  EXPECT_NEAR(lat["non_llm"].get<double>(), total - lat["llm"].get<double>() - lat["writeback"].get<double>(), 1e-3);
  // The row in the log is this request's.
  const auto row = wait_for_row(h.config.request_log, kQuestion, 5s);
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ((*row)["request_id"], j["request_id"]);
  // The naive flow.
  const auto n = post(cli, "/v1/query", {{"query", kQuestion}, {"max_tokens", 2}, {"flow", "naive"}});
  ASSERT_TRUE(n);
  EXPECT_EQ(n->status, 200) << n->body;
}

TEST(Server, GenerateInTheSeedsShapeMatchesTheEngine) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-generate");
  auto cli = h.client();
  const json body = {
      {"model_id", "small"}, {"prompt", "Once upon a time"}, {"max_tokens", 10}, {"temperature", 0}, {"seed", 5}};
  const auto r = post(cli, "/generate", body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = parse(r->body);
  EXPECT_EQ(j["model_id"], "small");
  ASSERT_TRUE(j["text"].is_string());
  const std::string finish = j["finish_reason"];
  EXPECT_TRUE(finish == "stop" || finish == "length") << finish;
  EXPECT_GT(j["tokens"]["prompt"].get<int>(), 0);
  EXPECT_LE(j["tokens"]["completion"].get<int>(), 10);
  EXPECT_TRUE(j["tokens"].contains("cached"));
  EXPECT_GT(j["latency_ms"].get<double>(), 0);  // ten tokens were generated
  EXPECT_EQ(j["generated_weights"], true);
  // The engine itself, greedy, on the same prompt.
  llm::GenerateRequest g;
  g.prompt = "Once upon a time";
  g.max_tokens = 10;
  g.sampling = h.config.sampling;
  g.sampling.temperature = 0;
  g.sampling.seed = 5;
  const auto direct = h.pipe->engine().generate("small", std::move(g));
  EXPECT_EQ(j["text"], direct.text);
  EXPECT_EQ(j["tokens"]["completion"], direct.completion_tokens);
  // Without model_id: models.default.
  const auto d = post(cli, "/generate", {{"prompt", "Hi"}, {"max_tokens", 2}});
  ASSERT_TRUE(d);
  ASSERT_EQ(d->status, 200) << d->body;
  EXPECT_EQ(parse(d->body)["model_id"], "large");
}

TEST(Server, MemoryNodesAndEdgesCrud) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-memory");
  auto cli = h.client();
  auto a = post(cli, "/v1/memory/nodes",
                {{"text", "Rust is a systems programming language focused on memory safety."},
                 {"title", "Rust"},
                 {"type", "fact"},
                 {"tags", {"lang"}},
                 {"metadata", {{"origin", "test"}}}});
  ASSERT_TRUE(a);
  ASSERT_EQ(a->status, 201) << a->body;
  const std::string ida = parse(a->body)["id"];
  auto b = post(cli, "/v1/memory/nodes", {{"text", "Cargo is the package manager of Rust."}, {"title", "Cargo"}});
  ASSERT_TRUE(b);
  ASSERT_EQ(b->status, 201) << b->body;
  const std::string idb = parse(b->body)["id"];
  EXPECT_NE(ida, idb);

  auto g = cli.Get(("/v1/memory/nodes/" + ida).c_str());
  ASSERT_TRUE(g);
  ASSERT_EQ(g->status, 200) << g->body;
  json node = parse(g->body);
  EXPECT_EQ(node["id"], ida);
  EXPECT_EQ(node["text"], "Rust is a systems programming language focused on memory safety.");
  EXPECT_EQ(node["title"], "Rust");
  EXPECT_EQ(node["type"], "fact");
  EXPECT_EQ(node["tags"], json::array({"lang"}));
  EXPECT_EQ(node["metadata"]["origin"], "test");
  // The store agrees.
  const auto stored = h.pipe->memory().get(ida);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->type, memory::NodeType::fact);

  auto e = post(cli, "/v1/memory/edges", {{"src", idb}, {"dst", ida}, {"rel", "part_of"}, {"weight", 0.5}});
  ASSERT_TRUE(e);
  ASSERT_EQ(e->status, 201) << e->body;
  const std::string edge = parse(e->body)["id"];
  auto list = cli.Get(("/v1/memory/nodes/" + ida + "/edges").c_str());
  ASSERT_TRUE(list);
  ASSERT_EQ(list->status, 200) << list->body;
  json edges = parse(list->body)["data"];
  ASSERT_EQ(edges.size(), 1u) << list->body;
  EXPECT_EQ(edges[0]["id"], edge);
  EXPECT_EQ(edges[0]["src"], idb);
  EXPECT_EQ(edges[0]["dst"], ida);
  EXPECT_EQ(edges[0]["rel"], "part_of");
  EXPECT_FLOAT_EQ(edges[0]["weight"].get<float>(), 0.5f);
  EXPECT_EQ(h.pipe->memory().edges(ida).size(), 1u);

  auto del = cli.Delete(("/v1/memory/edges/" + edge).c_str());
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 200) << del->body;
  list = cli.Get(("/v1/memory/nodes/" + ida + "/edges").c_str());
  ASSERT_TRUE(list);
  EXPECT_TRUE(parse(list->body)["data"].empty()) << list->body;
  expect_error_shape(cli.Delete(("/v1/memory/edges/" + edge).c_str()), 404, "edge deleted twice");

  del = cli.Delete(("/v1/memory/nodes/" + ida).c_str());
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 200) << del->body;
  expect_error_shape(cli.Get(("/v1/memory/nodes/" + ida).c_str()), 404, "deleted node");
  expect_error_shape(cli.Delete(("/v1/memory/nodes/" + ida).c_str()), 404, "node deleted twice");
  EXPECT_FALSE(h.pipe->memory().get(ida).has_value());
  EXPECT_TRUE(h.pipe->memory().get(idb).has_value());

  // Stats count what the store holds.
  auto st = cli.Get("/v1/memory/stats");
  ASSERT_TRUE(st);
  ASSERT_EQ(st->status, 200);
  EXPECT_EQ(parse(st->body)["nodes"], h.pipe->memory().stats().nodes);
}

TEST(Server, MemorySearchAndIngest) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-search");
  auto cli = h.client();
  for (const char* mode : {"lexical", "dense", "hybrid"}) {
    SCOPED_TRACE(mode);
    const auto r = post(cli, "/v1/memory/search", {{"query", "machine code translation"}, {"k", 3}, {"mode", mode}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json hits = parse(r->body)["data"];
    memory::SearchQuery q;
    q.text = "machine code translation";
    q.k = 3;
    q.mode = std::string(mode) == "lexical" ? memory::SearchMode::lexical
             : std::string(mode) == "dense" ? memory::SearchMode::dense
                                            : memory::SearchMode::hybrid;
    const auto direct = h.pipe->memory().search(q);
    ASSERT_EQ(hits.size(), direct.hits.size());
    for (std::size_t i = 0; i < hits.size(); ++i) {
      EXPECT_EQ(hits[i]["id"], direct.hits[i].id);
      EXPECT_EQ(hits[i]["text"], h.pipe->memory().get(direct.hits[i].id)->text);
    }
  }

  const std::size_t before = h.pipe->memory().stats().nodes;
  const json docs = {{"documents",
                      {{{"title", "Haskell"}, {"text", "Haskell is a purely functional programming language."}},
                       {{"title", "Prolog"}, {"text", "Prolog is a logic programming language used in AI."}}}}};
  auto r = post(cli, "/v1/memory/ingest", docs);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(parse(r->body)["documents"], 2);
  EXPECT_EQ(h.pipe->memory().stats().nodes, before + 2);
  auto s = post(cli, "/v1/memory/search", {{"query", "purely functional"}, {"k", 1}, {"mode", "lexical"}});
  ASSERT_TRUE(s);
  ASSERT_EQ(s->status, 200);
  ASSERT_EQ(parse(s->body)["data"].size(), 1u);
  EXPECT_EQ(parse(s->body)["data"][0]["title"], "Haskell");
  // The same documents again add nothing.
  r = post(cli, "/v1/memory/ingest", docs);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(h.pipe->memory().stats().nodes, before + 2);
}

// A rejected ingest leaves nothing behind: no node, no temporary file in the data folder.
TEST(Server, BadIngestLeavesNoTemporaryFile) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-ingest-bad");
  auto cli = h.client();
  const std::size_t before = h.pipe->memory().stats().nodes;
  const auto r =
      post(cli, "/v1/memory/ingest", {{"documents", {{{"title", "Ok"}, {"text", "Fine text."}}, {{"title", "Bad"}}}}});
  expect_error_shape(r, 400, "document without text");
  EXPECT_EQ(h.pipe->memory().stats().nodes, before);
  std::vector<std::string> leftovers;
  for (const auto& e : fs::directory_iterator(h.dir))
    if (e.path().filename().string().rfind("ingest-", 0) == 0) leftovers.push_back(e.path().string());
  EXPECT_TRUE(leftovers.empty()) << "left behind: " << (leftovers.empty() ? "" : leftovers[0]);
}

TEST(Server, FeedbackOnLoggedRequests) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-feedback");
  auto cli = h.client();
  const auto c = post(cli, "/v1/chat/completions", chat_body("Hello", 2));
  ASSERT_TRUE(c);
  ASSERT_EQ(c->status, 200) << c->body;
  const json j = parse(c->body);
  const std::string id = j["ruvllm"]["request_id"];
  EXPECT_EQ(j["id"], "chatcmpl-" + id);
  auto f = post(cli, "/v1/feedback", {{"request_id", id}, {"score", 0.9}, {"label", "good"}});
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 200) << f->body;
  f = post(cli, "/v1/feedback", {{"request_id", id}, {"label", "second thoughts"}});
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 200) << f->body;
  expect_error_shape(post(cli, "/v1/feedback", {{"request_id", "not-a-request"}, {"score", 1}}), 404, "unknown id");
  const auto rows = log_rows(h.dir + "/feedback.jsonl");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["request_id"], id);
  EXPECT_DOUBLE_EQ(rows[0]["score"].get<double>(), 0.9);
  EXPECT_EQ(rows[0]["label"], "good");
  EXPECT_EQ(rows[1]["label"], "second thoughts");
}

TEST(Server, HealthReadyAndMetrics) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-metrics");
  auto cli = h.client();
  auto health = cli.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(parse(health->body)["status"], "ok");
  auto ready = cli.Get("/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(parse(ready->body)["status"], "ready");
  EXPECT_TRUE(h.server->ready());

  int completion = 0, prompt = 0;
  for (int i = 0; i < 3; ++i) {
    json body = chat_body("metrics probe number " + std::to_string(i), 4);
    body["cache"] = false;
    const auto r = post(cli, "/v1/chat/completions", body);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    completion += parse(r->body)["usage"]["completion_tokens"].get<int>();
    prompt += parse(r->body)["usage"]["prompt_tokens"].get<int>();
  }
  expect_error_shape(post(cli, "/v1/chat/completions", {{"messages", json::array()}}), 400, "empty messages");
  ASSERT_TRUE(cli.Get("/v1/models"));
  expect_error_shape(post(cli, "/v1/feedback", {{"request_id", "nope"}, {"score", 1}}), 404, "feedback");

  const auto m = cli.Get("/metrics");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  EXPECT_NE(m->get_header_value("Content-Type").find("text/plain"), std::string::npos);
  const auto samples = parse_metrics(m->body);
  ASSERT_FALSE(samples.empty()) << m->body;
  EXPECT_EQ(metric(samples, "ruvllm_requests_total", {{"endpoint", "chat"}, {"status", "200"}}), 3);
  EXPECT_EQ(metric(samples, "ruvllm_requests_total", {{"endpoint", "chat"}, {"status", "400"}}), 1);
  EXPECT_EQ(metric(samples, "ruvllm_requests_total", {{"endpoint", "models"}, {"status", "200"}}), 1);
  EXPECT_EQ(metric(samples, "ruvllm_requests_total", {{"endpoint", "feedback"}, {"status", "404"}}), 1);
  EXPECT_EQ(metric(samples, "ruvllm_tokens_total", {{"kind", "completion"}}), completion);
  EXPECT_EQ(metric(samples, "ruvllm_tokens_total", {{"kind", "prompt"}}), prompt);
  EXPECT_EQ(metric(samples, "ruvllm_cache_total", {{"result", "miss"}}), 3);
  EXPECT_EQ(metric(samples, "ruvllm_stage_seconds_count", {{"stage", "total"}}), 3);
  EXPECT_EQ(metric(samples, "ruvllm_routes_total", {{"by", "fixed"}, {"model", "small"}}), 3);
  EXPECT_EQ(metric(samples, "ruvllm_state", {{"what", "memory_nodes"}}),
            static_cast<double>(h.pipe->memory().stats().nodes));
  EXPECT_EQ(metric(samples, "ruvllm_state", {{"what", "in_flight"}}), 0);
  // Histogram buckets are cumulative and end at +Inf = count.
  EXPECT_EQ(metric(samples, "ruvllm_stage_seconds_bucket", {{"le", "+Inf"}, {"stage", "total"}}), 3);
}

// ==== authentication ============================================================================

TEST(Server, ApiKeysGuardEverythingButHealth) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-auth", [](config::Settings& c) { c.server.api_keys = {"s3cret", "other"}; });
  auto cli = h.client();
  expect_error_shape(cli.Get("/v1/models"), 401, "no key");
  expect_error_shape(cli.Get("/v1/models", httplib::Headers{{"Authorization", "Bearer wrong"}}), 401, "wrong key");
  expect_error_shape(cli.Get("/v1/models", httplib::Headers{{"Authorization", "s3cret"}}), 401, "no Bearer");
  expect_error_shape(post(cli, "/v1/chat/completions", chat_body("Hello", 2)), 401, "chat without key");
  expect_error_shape(cli.Get("/metrics"), 401, "metrics without key");
  auto r = cli.Get("/v1/models", httplib::Headers{{"Authorization", "Bearer s3cret"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  r = post(cli, "/v1/chat/completions", chat_body("Hello", 2), {{"Authorization", "Bearer other"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  // The scheme in any case (RFC 9110); the key whole, neither a prefix nor an extension of it.
  for (const char* scheme : {"bearer ", "BEARER ", "bEaReR "}) {
    r = cli.Get("/v1/models", httplib::Headers{{"Authorization", std::string(scheme) + "s3cret"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << scheme;
  }
  expect_error_shape(cli.Get("/v1/models", httplib::Headers{{"Authorization", "Bearer s3cre"}}), 401, "a prefix");
  expect_error_shape(cli.Get("/v1/models", httplib::Headers{{"Authorization", "Bearer s3cretX"}}), 401, "longer");
  expect_error_shape(cli.Get("/v1/models", httplib::Headers{{"Authorization", "Bearer "}}), 401, "empty key");
  r = cli.Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  r = cli.Get("/ready");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  // Refused requests never reached the pipeline: one row, the authorised chat's.
  EXPECT_EQ(log_rows(h.config.request_log).size(), 1u);
}

// ==== bad input =================================================================================

struct BadRequest {
  const char* name;
  const char* method;
  std::string path, body;
  int status;
};

TEST(Server, BadInputGetsTheRightStatusInOpenAIErrorShape) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-bad", [](config::Settings& c) {
    c.server.max_body_bytes = 64 * 1024;
    c.server.max_tokens = 64;
  });
  auto cli = h.client();
  const auto node = post(cli, "/v1/memory/nodes", {{"text", "A node to link from."}});
  ASSERT_TRUE(node);
  ASSERT_EQ(node->status, 201);
  const std::string nid = parse(node->body)["id"];
  const std::size_t nodes_before = h.pipe->memory().stats().nodes;
  const std::string user = R"({"role": "user", "content": "hi"})";
  auto chat = [&](const std::string& extra) { return R"({"messages": [)" + user + "]" + extra + "}"; };
  const std::string big = R"({"messages": [{"role": "user", "content": ")" + std::string(100 * 1024, 'a') + "\"}]}";
  // 30,000 nested arrays (60 KB, under the body limit): dump() of such a value recursed until the
  // stack overflowed (SIGSEGV) at 80,000.
  const std::string deep = std::string(30000, '[') + std::string(30000, ']');
  const std::string just_deep_enough = std::string(64, '[') + std::string(64, ']');
  const std::vector<BadRequest> cases = {
      {"malformed JSON", "POST", "/v1/chat/completions", R"({"messages": [)", 400},
      {"trailing garbage", "POST", "/v1/chat/completions", chat("") + " x", 400},
      {"empty body", "POST", "/v1/chat/completions", "", 400},
      {"JSON array body", "POST", "/v1/chat/completions", "[" + user + "]", 400},
      {"invalid UTF-8 body", "POST", "/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": "caf)"
       "\xc3\"}]}",
       400},
      {"body above max_body_bytes", "POST", "/v1/chat/completions", big, 413},
      {"missing messages", "POST", "/v1/chat/completions", R"({"model": "small"})", 400},
      {"messages not an array", "POST", "/v1/chat/completions", R"({"messages": "hi"})", 400},
      {"empty messages", "POST", "/v1/chat/completions", R"({"messages": []})", 400},
      {"message not an object", "POST", "/v1/chat/completions", R"({"messages": ["hi"]})", 400},
      {"missing role", "POST", "/v1/chat/completions", R"({"messages": [{"content": "hi"}]})", 400},
      {"unknown role", "POST", "/v1/chat/completions", R"({"messages": [{"role": "wizard", "content": "hi"}]})", 400},
      {"content a number", "POST", "/v1/chat/completions", R"({"messages": [{"role": "user", "content": 42}]})", 400},
      {"content missing", "POST", "/v1/chat/completions", R"({"messages": [{"role": "user"}]})", 400},
      {"content part not text", "POST", "/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]})", 400},
      {"last message not from the user", "POST", "/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})", 400},
      {"empty last user message", "POST", "/v1/chat/completions", R"({"messages": [{"role": "user", "content": ""}]})",
       400},
      {"system message not first", "POST", "/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "user", "content": "c"}]})",
       400},
      {"unknown model", "POST", "/v1/chat/completions", chat(R"(, "model": "gpt-9")"), 404},
      {"model not a string", "POST", "/v1/chat/completions", chat(R"(, "model": 7)"), 400},
      {"negative max_tokens", "POST", "/v1/chat/completions", chat(R"(, "max_tokens": -1)"), 400},
      {"max_tokens above server.max_tokens", "POST", "/v1/chat/completions", chat(R"(, "max_tokens": 65)"), 400},
      {"max_tokens not an integer", "POST", "/v1/chat/completions", chat(R"(, "max_tokens": 2.5)"), 400},
      {"temperature a string", "POST", "/v1/chat/completions", chat(R"(, "temperature": "hot")"), 400},
      {"temperature out of range", "POST", "/v1/chat/completions", chat(R"(, "temperature": 5)"), 400},
      {"negative temperature", "POST", "/v1/chat/completions", chat(R"(, "temperature": -0.1)"), 400},
      {"top_p zero", "POST", "/v1/chat/completions", chat(R"(, "top_p": 0)"), 400},
      {"top_p above one", "POST", "/v1/chat/completions", chat(R"(, "top_p": 1.5)"), 400},
      {"stop a number", "POST", "/v1/chat/completions", chat(R"(, "stop": 7)"), 400},
      {"stop with five entries", "POST", "/v1/chat/completions", chat(R"(, "stop": ["a", "b", "c", "d", "e"])"), 400},
      {"stop with an empty entry", "POST", "/v1/chat/completions", chat(R"(, "stop": [""])"), 400},
      {"n = 2", "POST", "/v1/chat/completions", chat(R"(, "n": 2)"), 400},
      {"stream not a bool", "POST", "/v1/chat/completions", chat(R"(, "stream": "yes")"), 400},
      {"negative seed", "POST", "/v1/chat/completions", chat(R"(, "seed": -1)"), 400},
      {"user not a string", "POST", "/v1/chat/completions", chat(R"(, "user": 5)"), 400},
      {"constraints not an object", "POST", "/v1/chat/completions", chat(R"(, "constraints": 1)"), 400},
      {"embeddings without input", "POST", "/v1/embeddings", R"({"model": "x"})", 400},
      {"embeddings number input", "POST", "/v1/embeddings", R"({"input": 42})", 400},
      {"embeddings empty list", "POST", "/v1/embeddings", R"({"input": []})", 400},
      {"embeddings empty string", "POST", "/v1/embeddings", R"({"input": ""})", 400},
      {"embeddings unknown model", "POST", "/v1/embeddings", R"({"input": "hi", "model": "text-embedding-9"})", 404},
      {"embeddings unknown encoding", "POST", "/v1/embeddings", R"({"input": "hi", "encoding_format": "int8"})", 400},
      {"query without query", "POST", "/v1/query", R"({"max_tokens": 2})", 400},
      {"query with unknown flow", "POST", "/v1/query", R"({"query": "hi", "flow": "sideways"})", 400},
      {"generate unknown model", "POST", "/generate", R"({"model_id": "nope", "prompt": "hi"})", 404},
      {"generate without prompt", "POST", "/generate", R"({"model_id": "small"})", 400},
      {"memory node without text", "POST", "/v1/memory/nodes", R"({"title": "t"})", 400},
      {"memory node empty text", "POST", "/v1/memory/nodes", R"({"text": ""})", 400},
      {"memory node unknown type", "POST", "/v1/memory/nodes", R"({"text": "x", "type": "banana"})", 400},
      {"memory node tags not an array", "POST", "/v1/memory/nodes", R"({"text": "x", "tags": "a"})", 400},
      {"memory node metadata nested 30,000 levels", "POST", "/v1/memory/nodes",
       R"({"text": "x", "metadata": {"a": )" + deep + "}}", 400},
      {"body nested 66 levels", "POST", "/v1/memory/nodes",
       R"({"text": "x", "metadata": {"a": )" + just_deep_enough + "}}", 400},
      {"chat body nested 30,000 levels", "POST", "/v1/chat/completions", chat(R"(, "extra": )" + deep), 400},
      {"memory node with an id in use", "POST", "/v1/memory/nodes", R"({"text": "x", "id": ")" + nid + "\"}", 409},
      {"memory node vector of wrong dimension", "POST", "/v1/memory/nodes", R"({"text": "x", "vector": [1, 2, 3]})",
       400},
      {"edge to an unknown node", "POST", "/v1/memory/edges",
       R"({"src": ")" + nid + R"(", "dst": "no-such-node", "rel": "cites"})", 404},
      {"edge without rel", "POST", "/v1/memory/edges", R"({"src": ")" + nid + R"(", "dst": ")" + nid + "\"}", 400},
      {"edge with zero weight", "POST", "/v1/memory/edges",
       R"({"src": ")" + nid + R"(", "dst": ")" + nid + R"(", "rel": "x", "weight": 0})", 400},
      {"get an unknown node", "GET", "/v1/memory/nodes/no-such-node", "", 404},
      {"edges of an unknown node", "GET", "/v1/memory/nodes/no-such-node/edges", "", 404},
      {"delete an unknown node", "DELETE", "/v1/memory/nodes/no-such-node", "", 404},
      {"delete an unknown edge", "DELETE", "/v1/memory/edges/no-such-edge", "", 404},
      {"search with k 0", "POST", "/v1/memory/search", R"({"query": "x", "k": 0})", 400},
      {"search with unknown mode", "POST", "/v1/memory/search", R"({"query": "x", "mode": "fuzzy"})", 400},
      {"search without query", "POST", "/v1/memory/search", R"({"k": 3})", 400},
      {"ingest documents not an array", "POST", "/v1/memory/ingest", R"({"documents": "x"})", 400},
      {"ingest document without text", "POST", "/v1/memory/ingest", R"({"documents": [{"title": "t"}]})", 400},
      {"feedback score 1.5", "POST", "/v1/feedback", R"({"request_id": "x", "score": 1.5})", 400},
      {"feedback without request_id", "POST", "/v1/feedback", R"({"score": 1})", 400},
      {"feedback without score or label", "POST", "/v1/feedback", R"({"request_id": "x"})", 400},
      {"feedback for an unknown request", "POST", "/v1/feedback", R"({"request_id": "x", "score": 1})", 404},
      {"unknown route", "POST", "/v1/completions", chat(""), 404},
      {"unknown GET route", "GET", "/v2/nothing", "", 404},
  };
  std::set<std::string> names;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_TRUE(names.insert(c.name).second) << "duplicate case";
    httplib::Result r = std::string(c.method) == "GET"      ? cli.Get(c.path.c_str())
                        : std::string(c.method) == "DELETE" ? cli.Delete(c.path.c_str())
                                                            : cli.Post(c.path.c_str(), c.body, "application/json");
    expect_error_shape(r, c.status, c.name);
  }
  EXPECT_GE(names.size(), 20u);
  // Still serving, and none of it reached the pipeline or the memory.
  auto health = cli.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto ok = post(cli, "/v1/chat/completions", chat_body("Hello", 2));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(log_rows(h.config.request_log).size(), 1u);
  EXPECT_EQ(h.pipe->memory().edges(nid).size(), 0u);
  EXPECT_EQ(h.pipe->memory().stats().nodes, nodes_before);
}

// A route that exists under another method: 405 Method Not Allowed (RFC 9110), not 404.
TEST(Server, WrongMethodIs405) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-method");
  auto cli = h.client();
  expect_error_shape(cli.Get("/v1/chat/completions"), 405, "GET on chat");
  expect_error_shape(cli.Delete("/v1/models"), 405, "DELETE on models");
  expect_error_shape(cli.Get("/v1/memory/search"), 405, "GET on search");
}

// ==== concurrency and limits ====================================================================

TEST(Server, ConcurrentChatsAllSucceed) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-concurrent");
  constexpr int kThreads = 6, kEach = 2;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::vector<int> statuses;
  std::set<std::string> ids;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto cli = h.client();
      for (int i = 0; i < kEach; ++i) {
        json body = chat_body("concurrent question " + std::to_string(t) + "-" + std::to_string(i), 8,
                              t % 2 ? "small" : "auto");
        body["cache"] = false;
        const auto r = post(cli, "/v1/chat/completions", body);
        std::lock_guard lock(mu);
        statuses.push_back(r ? r->status : -1);
        if (r && r->status == 200) ids.insert(parse(r->body)["ruvllm"]["request_id"].get<std::string>());
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(statuses.size(), static_cast<std::size_t>(kThreads * kEach));
  for (int s : statuses) EXPECT_EQ(s, 200);
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kThreads * kEach));
  EXPECT_EQ(log_rows(h.config.request_log).size(), static_cast<std::size_t>(kThreads * kEach));
}

TEST(Server, FullQueueAnswers429WithRetryAfter) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-queue", [](config::Settings& c) { c.server.max_queue = 1; });
  std::atomic<bool> first{false}, release{false};
  json long_body = chat_body("Keep talking about compilers for a long while", 1000, "large");
  long_body["stream"] = true;
  long_body["cache"] = false;
  std::thread streamer([&] {
    (void)stream_chat(h.port, long_body, [&](const Sse& s) {
      if (!s.events.empty()) first = true;
      return !release.load();
    });
  });
  const auto until = Clock::now() + 20s;
  while (!first && Clock::now() < until) std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(first.load()) << "the long generation never streamed";
  auto cli = h.client();
  auto r = post(cli, "/v1/chat/completions", chat_body("Hello", 2));
  expect_error_shape(r, 429, "second chat");
  ASSERT_TRUE(r);
  const std::string retry = r->get_header_value("Retry-After");
  EXPECT_TRUE(std::regex_match(retry, std::regex("[0-9]+"))) << "Retry-After: '" << retry << "'";
  expect_error_shape(post(cli, "/v1/query", {{"query", "hi"}}), 429, "query");
  expect_error_shape(post(cli, "/generate", {{"prompt", "hi"}}), 429, "generate");
  // Probes and memory reads are not generation: they still answer.
  auto health = cli.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  release = true;
  streamer.join();
  // The slot frees once the disconnected stream is cancelled.
  int status = 0;
  for (auto t = Clock::now() + 20s; Clock::now() < t && status != 200;) {
    auto again = post(cli, "/v1/chat/completions", chat_body("Hello", 2));
    status = again ? again->status : -1;
    if (status != 200) std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(status, 200);
}

// server.max_tokens is the per-request ceiling ("more: 400"); a request that leaves max_tokens out
// gets generation.max_tokens, which must not take it past the ceiling.
TEST(Server, RequestsWithoutMaxTokensStayWithinTheServerLimit) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-default-tokens", [](config::Settings& c) {
    c.max_tokens = 40;
    c.server.max_tokens = 16;
  });
  auto cli = h.client();
  const json body = {{"model", "small"},
                     {"cache", false},
                     {"messages", {{{"role", "user"}, {"content", "Tell me everything about compilers"}}}}};
  auto r = post(cli, "/v1/chat/completions", body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_LE(parse(r->body)["usage"]["completion_tokens"].get<int>(), 16) << r->body;
  r = post(cli, "/generate", {{"model_id", "small"}, {"prompt", "Once upon a time"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_LE(parse(r->body)["tokens"]["completion"].get<int>(), 16) << r->body;
}

// A prompt that cannot fit the model's context is the client's error, streamed or not: OpenAI
// answers 400 before any event, so SDKs raise instead of reading an error as a chunk.
TEST(Server, PromptLongerThanTheContextIs400StreamedOrNot) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-too-long", [](config::Settings& c) { c.context = 512; });
  auto cli = h.client();
  std::string text;
  for (int i = 0; i < 600; ++i) text += "compiler linker interpreter ";
  json body = chat_body(text, 4);
  expect_error_shape(post(cli, "/v1/chat/completions", body), 400, "too long, not streamed");
  body["stream"] = true;
  const Sse s = stream_chat(h.port, body);
  EXPECT_EQ(s.status, 400) << s.raw.substr(0, 300);
  const auto health = cli.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

// ==== cancellation ==============================================================================

TEST(Server, StreamingClientThatLeavesCancelsItsGeneration) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-stream-cancel");
  json body = chat_body("stream cancel probe", 1000, "small");
  body["stream"] = true;
  body["cache"] = false;
  const Sse s = stream_chat(h.port, body, [](const Sse& x) { return x.events.empty(); });
  EXPECT_FALSE(s.completed);
  ASSERT_FALSE(s.events.empty());
  const auto row = wait_for_row(h.config.request_log, "stream cancel probe", 30s);
  ASSERT_TRUE(row.has_value()) << "no log row for the abandoned stream";
  EXPECT_EQ((*row)["finish"], "cancelled");
  EXPECT_LT((*row)["tokens"]["completion"].get<int>(), 1000);
  EXPECT_EQ(h.pipe->in_flight(), 0u);
}

TEST(Server, ClientThatTimesOutCancelsItsGeneration) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-timeout-cancel");
  {
    httplib::Client cli("127.0.0.1", h.port);
    cli.set_read_timeout(0, 200000);  // 200 ms
    json body = chat_body("timeout cancel probe", 1000, "small");
    body["cache"] = false;
    const auto r = post(cli, "/v1/chat/completions", body);
    EXPECT_FALSE(r) << "the 1000-token answer came within 200 ms";
  }
  const auto row = wait_for_row(h.config.request_log, "timeout cancel probe", 30s);
  ASSERT_TRUE(row.has_value()) << "no log row for the abandoned request";
  EXPECT_EQ((*row)["finish"], "cancelled");
  EXPECT_LT((*row)["tokens"]["completion"].get<int>(), 1000);
}

TEST(Server, RequestTimeoutCancelsGeneration) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-deadline", [](config::Settings& c) { c.server.request_timeout_s = 0.3; });
  auto cli = h.client();
  json body = chat_body("deadline probe", 1000, "small");
  body["cache"] = false;
  const auto t0 = Clock::now();
  const auto r = post(cli, "/v1/chat/completions", body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = parse(r->body);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "cancelled");
  EXPECT_LT(j["usage"]["completion_tokens"].get<int>(), 1000);
  EXPECT_LT(Clock::now() - t0, 20s);
}

// ==== shutdown ==================================================================================

TEST(Server, GracefulStopLosesNoAcknowledgedWrite) {
  RUVLLM_REQUIRE_VECTORS();
  // Room for a generation far longer than the grace, however fast the machine.
  auto h = std::make_unique<Harness>("server-drain", [](config::Settings& c) {
    c.context = 8192;
    c.server.max_tokens = 8192;
  });
  const std::string dir = h->dir;
  const config::Settings config = h->config;
  std::mutex mu;
  std::vector<std::string> nodes;                   // ids of POSTs answered 201
  std::vector<std::string> chats;                   // request ids of chats answered 200
  std::vector<std::pair<std::string, int>> others;  // unexpected statuses
  std::atomic<bool> running{true};

  // A long generation in flight when the stop begins.
  std::optional<json> long_answer;
  int long_status = 0;
  std::thread long_chat([&] {
    auto cli = h->client();
    json body = chat_body("drain long probe", 6000, "large");
    body["cache"] = false;
    const auto r = post(cli, "/v1/chat/completions", body);
    long_status = r ? r->status : -1;
    if (r && r->status == 200) long_answer = parse(r->body);
  });
  for (auto t = Clock::now() + 20s; h->pipe->in_flight() == 0 && Clock::now() < t;) std::this_thread::sleep_for(2ms);
  ASSERT_GT(h->pipe->in_flight(), 0u);

  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      auto cli = h->client();
      for (int i = 0; running && i < 200; ++i) {
        const auto r = post(cli, "/v1/memory/nodes",
                            {{"text", "drain note " + std::to_string(t) + "-" + std::to_string(i) + " about servers"}});
        if (!r) break;  // the server is gone
        std::lock_guard lock(mu);
        if (r->status == 201)
          nodes.push_back(parse(r->body)["id"]);
        else if (r->status != 503)
          others.emplace_back("memory", r->status);
      }
    });
  }
  for (int t = 0; t < 2; ++t) {
    clients.emplace_back([&, t] {
      auto cli = h->client();
      for (int i = 0; running && i < 100; ++i) {
        json body = chat_body("drain chat " + std::to_string(t) + "-" + std::to_string(i), 4);
        body["cache"] = false;
        const auto r = post(cli, "/v1/chat/completions", body);
        if (!r) break;
        std::lock_guard lock(mu);
        if (r->status == 200)
          chats.push_back(parse(r->body)["ruvllm"]["request_id"]);
        else if (r->status != 503)
          others.emplace_back("chat", r->status);
      }
    });
  }
  std::this_thread::sleep_for(300ms);
  // Stop with a grace shorter than the long generation; meanwhile the server says it is draining.
  std::atomic<bool> stop_returned{false};
  const auto t0 = Clock::now();
  std::thread stopper([&] {
    h->server->stop(1.0);
    stop_returned = true;
  });
  std::this_thread::sleep_for(100ms);
  if (!stop_returned) {
    auto cli = h->client(5);
    if (auto ready = cli.Get("/ready")) {
      EXPECT_EQ(ready->status, 503) << ready->body;
    }
    if (auto refused = post(cli, "/v1/chat/completions", chat_body("too late", 2))) {
      expect_error_shape(refused, 503, "chat while draining");
      EXPECT_FALSE(refused->get_header_value("Retry-After").empty());
    }
  }
  stopper.join();
  EXPECT_LT(Clock::now() - t0, 30s);
  h->stopped = true;
  ASSERT_TRUE(h->thread.joinable());
  h->thread.join();  // run() has returned
  EXPECT_FALSE(h->server->ready());
  running = false;
  for (auto& c : clients) c.join();
  long_chat.join();

  EXPECT_TRUE(others.empty()) << others.size() << " unexpected statuses, first " << others[0].first << " "
                              << others[0].second;
  EXPECT_FALSE(nodes.empty());
  EXPECT_FALSE(chats.empty());
  // The long generation answered, cut short by the stop.
  ASSERT_EQ(long_status, 200);
  ASSERT_TRUE(long_answer.has_value());
  EXPECT_EQ((*long_answer)["choices"][0]["finish_reason"], "cancelled");
  chats.push_back((*long_answer)["ruvllm"]["request_id"]);

  h->pipe->shutdown();
  h->server.reset();
  h->pipe.reset();
  h.reset();

  // Reopened from disk: every acknowledged node is there, every answered request is logged.
  memory::MemoryParams mp;
  mp.path = config.memory_path;
  mp.embedder = embed::open_word_vectors();
  memory::Memory reopened(mp);
  for (const auto& id : nodes) EXPECT_TRUE(reopened.get(id).has_value()) << "lost node " << id;
  std::set<std::string> logged;
  for (const auto& row : log_rows(config.request_log)) logged.insert(row["request_id"].get<std::string>());
  for (const auto& id : chats) EXPECT_TRUE(logged.count(id)) << "no log row for " << id;
}

// stop() is safe from any thread at any time: a stop that comes before run() still ends it.
TEST(Server, StopBeforeRunEndsRun) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("server-stop-early");
  const config::Settings c = tiny_config(dir);
  pipeline::Pipeline p(c);
  Server s(p, c.server);
  s.bind();
  s.stop(0);
  std::atomic<bool> returned{false};
  std::thread t([&] {
    s.run();
    returned = true;
  });
  for (auto until = Clock::now() + 3s; !returned && Clock::now() < until;) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(returned.load()) << "run() kept serving after stop()";
  if (!returned) s.stop(0);  // now that it serves, end it
  t.join();
  EXPECT_FALSE(s.ready());
}

TEST(Server, BindFailsOnAPortInUse) {
  RUVLLM_REQUIRE_VECTORS();
  Harness h("server-bind");
  ServerConfig sc = h.config.server;
  sc.port = h.port;
  Server second(*h.pipe, sc);
  EXPECT_THROW(second.bind(), pipeline::Error);
}

}  // namespace
}  // namespace ruvllm::server
