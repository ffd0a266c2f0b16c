// config check | show, ask, chat, serve: the pipeline from the command line.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>

#include "commands.h"
#include "ruvllm/config.h"
#include "ruvllm/embed.h"
#include "ruvllm/memory.h"
#include "ruvllm/pipeline.h"
#include "ruvllm/server.h"

namespace ruvllm::cli {
namespace {

// ask and chat decode one request at a time: one sequence per model. The configured `parallel`
// (16 by default, for the server's batching) costs a one-shot command load time for nothing: LFM2
// 350M loads in 1.2 s with 1 sequence, 1.6 s with 4 and 3.2 s with 16 (KV and state buffers).
pipeline::Config one_request_at_a_time(pipeline::Config c) {
  c.parallel = 1;
  return c;
}

struct PipelineOptions {
  std::string config;  // "" = $RUVLLM_CONFIG, else ./ruvllm.toml when present
  std::string model = "auto";
  std::string flow = "routed";
  int max_tokens = -1;
  float temperature = -1;
  uint32_t seed = 0;
  bool seed_given = false, json = false, no_stream = false, no_cache = false;
};

std::string config_path(const std::string& given) {
  if (auto found = find_config(given)) return *found;
  throw pipeline::Error(
      "no configuration: pass --config FILE, set RUVLLM_CONFIG, or write ./ruvllm.toml "
      "(`ruvllm config show` prints every key with its default)");
}

void add_pipeline_options(CLI::App* cmd, PipelineOptions& o) {
  cmd->add_option("-c,--config", o.config, "TOML configuration (default: $RUVLLM_CONFIG, else ./ruvllm.toml)");
  cmd->add_option("-m,--model", o.model, "auto (routed) or a model name from the ladder");
  cmd->add_option("--flow", o.flow, "routed, or naive (default model, plain dense top-k, no router)")
      ->check(CLI::IsMember({"routed", "naive"}));
  cmd->add_option("-n,--max-tokens", o.max_tokens, "completion tokens (default: generation.max_tokens)");
  cmd->add_option("--temperature", o.temperature, "overrides the router's temperature");
  cmd->add_option("--seed", o.seed, "sampling seed")->each([&o](const std::string&) { o.seed_given = true; });
  cmd->add_flag("--no-cache", o.no_cache, "do not answer from the response cache");
}

pipeline::Request make_request(const PipelineOptions& o, std::string query) {
  pipeline::Request r;
  r.query = std::move(query);
  r.model = o.model;
  r.flow = o.flow == "naive" ? pipeline::Flow::naive : pipeline::Flow::routed;
  if (o.max_tokens >= 0) r.max_tokens = o.max_tokens;
  if (o.temperature >= 0) r.temperature = o.temperature;
  if (o.seed_given) r.seed = o.seed;
  r.use_cache = !o.no_cache;
  return r;
}

void print_trace(const pipeline::Response& r, const std::string& requested_model, pipeline::Flow flow) {
  auto ms = [](int64_t us) { return static_cast<double>(us) / 1000.0; };
  std::fprintf(stderr, "\n-- trace %s\n", r.request_id.c_str());
  if (r.routed) {
    std::fprintf(stderr,
                 "route:     %s (router: P(escalate) %.2f, confidence %.2f%s), context %d tokens, retrieval %s, "
                 "temperature %.2f, top_p %.2f\n",
                 r.model.c_str(), r.decision.escalation, r.decision.confidence,
                 r.decision.escalated ? ", escalated" : "", r.decision.context_tokens,
                 router::to_string(r.decision.retrieval).data(), r.decision.temperature, r.decision.top_p);
  } else {
    std::fprintf(stderr, "route:     %s (%s)\n", r.model.c_str(),
                 flow == pipeline::Flow::naive ? "naive flow: default model, dense top-k"
                 : requested_model != "auto"   ? "explicit model"
                                               : "routing off: models.default");
  }
  std::fprintf(stderr, "retrieved: %zu candidates, attention entropy %.2f; context blocks:\n", r.retrieved,
               r.attention_entropy);
  for (std::size_t i = 0; i < r.context.size(); ++i) {
    const auto& b = r.context[i];
    std::string preview = b.text.substr(0, 70);
    for (char& ch : preview)
      if (ch == '\n') ch = ' ';
    std::fprintf(stderr, "  [%zu] %.3f %-8s %-28s %s…\n", i + 1, b.score, b.type.c_str(), b.title.substr(0, 28).c_str(),
                 preview.c_str());
  }
  std::fprintf(stderr,
               "tokens:    prompt %d (%d restored from the prefix cache), completion %d%s\n"
               "times ms:  embed %.2f | search %.2f | expand %.2f | attend %.2f | route %.3f | context %.2f | "
               "llm %.1f (first token at %.1f) | write-back %.2f | total %.1f (non-LLM %.2f)\n",
               r.prompt_tokens, r.cached_tokens, r.completion_tokens,
               r.cache_hit ? " (answer from the response cache)" : "", ms(r.times.embed), ms(r.times.search),
               ms(r.times.expand), ms(r.times.attend), ms(r.times.route), ms(r.times.context), ms(r.times.llm),
               ms(r.times.ttft), ms(r.times.writeback), ms(r.times.total), ms(r.times.non_llm()));
  if (r.generated_weights)
    std::fprintf(stderr, "note:      %s has GENERATED weights (LFM2 shapes, random values): its text is noise\n",
                 r.model.c_str());
}

pipeline::Response ask_once(pipeline::Pipeline& p, pipeline::Request req, bool stream) {
  if (stream) {
    req.on_text = [](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    };
  }
  const std::string model = req.model;  // the trace says why this model answered
  const pipeline::Flow flow = req.flow;
  pipeline::Response r = p.run(std::move(req));
  if (!stream) std::fputs(r.answer.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  print_trace(r, model, flow);
  return r;
}

// A memory that cannot give context is said before the first question, not discovered after it.
// The pipeline creates a missing one (the server and write-back add to it).
void warn_if_memory_is_missing(const config::Settings& c, const std::string& config_file) {
  if (std::filesystem::exists(c.memory_path)) return;
  std::fprintf(stderr,
               "ruvllm: warning: memory %s does not exist; it is created empty and answers get no context until "
               "`ruvllm ingest -c %s FILES` puts documents in\n",
               c.memory_path.c_str(), config_file.c_str());
}

void warn_if_memory_is_empty(const pipeline::Pipeline& p, const std::string& config_file) {
  if (p.memory().stats().nodes > 0) return;
  std::fprintf(stderr,
               "ruvllm: warning: memory %s is empty: answers get no context until `ruvllm ingest -c %s FILES` puts "
               "documents in\n",
               p.config().memory_path.c_str(), config_file.c_str());
}

// config check's line about the memory: how many nodes, or that it does not exist yet.
std::string describe_memory(const config::Settings& c, const std::string& config_file) {
  if (!std::filesystem::exists(c.memory_path))
    return "memory " + c.memory_path + " does not exist yet (`ruvllm ingest -c " + config_file +
           " FILES` creates it; ask and serve would start with no context)";
  memory::MemoryParams mp;
  mp.path = c.memory_path;
  mp.create = false;
  mp.embedder = embed::open_word_vectors({.path = c.word_vectors});
  const auto s = memory::Memory(std::move(mp)).stats();
  return "memory " + c.memory_path + ": " + std::to_string(s.nodes) + (s.nodes == 1 ? " node, " : " nodes, ") +
         std::to_string(s.edges) + " edges" + (s.nodes == 0 ? " (empty: ask and serve would give no context)" : "");
}

}  // namespace

std::optional<std::string> find_config(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv("RUVLLM_CONFIG"); env != nullptr && *env != '\0') return env;
  if (std::filesystem::exists("ruvllm.toml")) return "ruvllm.toml";
  return std::nullopt;
}

void add_pipeline_commands(CLI::App& app) {
  // ---- config ---------------------------------------------------------------------------------
  auto* config = app.add_subcommand("config", "the TOML configuration");
  config->require_subcommand(1);
  auto* check = config->add_subcommand("check", "read a configuration and explain every problem with its key");
  auto check_path = std::make_shared<std::string>();
  check->add_option("file", *check_path, "configuration file")->required();
  check->callback([check_path] {
    const auto issues = config::check(*check_path);
    if (issues.empty()) {
      const auto c = config::load(*check_path);
      std::printf("%s: ok (%zu models, default %s, router %s)\n%s: %s\n", check_path->c_str(), c.models.size(),
                  c.default_model.c_str(), c.router_file.empty() ? "off" : c.router_file.c_str(), check_path->c_str(),
                  describe_memory(c, *check_path).c_str());
      return;
    }
    for (const auto& i : issues)
      std::printf("%s: %s%s\n", check_path->c_str(), i.key.empty() ? "" : (i.key + ": ").c_str(), i.message.c_str());
    throw CLI::RuntimeError(1);
  });
  auto* show = config->add_subcommand("show", "print every key with its default");
  show->callback([] { std::fputs(config::defaults_toml().c_str(), stdout); });

  // ---- ask ------------------------------------------------------------------------------------
  auto* ask = app.add_subcommand("ask", "answer one question through the pipeline, with its trace");
  auto ao = std::make_shared<PipelineOptions>();
  auto question = std::make_shared<std::string>();
  ask->add_option("question", *question, "the question")->required();
  add_pipeline_options(ask, *ao);
  ask->add_flag("--no-stream", ao->no_stream, "print the answer when it is complete");
  ask->callback([ao, question] {
    const std::string file = config_path(ao->config);
    const config::Settings c = config::load(file);
    warn_if_memory_is_missing(c, file);
    pipeline::Pipeline p(one_request_at_a_time(c));
    warn_if_memory_is_empty(p, file);
    ask_once(p, make_request(*ao, *question), !ao->no_stream);
  });

  // ---- chat -----------------------------------------------------------------------------------
  auto* chat = app.add_subcommand("chat", "multi-turn chat through the pipeline (earlier turns restored, not re-read)");
  auto co = std::make_shared<PipelineOptions>();
  add_pipeline_options(chat, *co);
  auto history_tokens = std::make_shared<int>(2048);
  chat->add_option("--history-tokens", *history_tokens, "earlier turns kept (oldest dropped first)");
  chat->callback([co, history_tokens] {
    const std::string file = config_path(co->config);
    const config::Settings c = config::load(file);
    warn_if_memory_is_missing(c, file);
    pipeline::Pipeline p(one_request_at_a_time(c));
    warn_if_memory_is_empty(p, file);
    std::vector<llm::ChatMessage> history;
    std::string line;
    std::fprintf(stderr, "ruvllm chat: one question per line; /reset forgets the conversation, /quit or EOF ends\n");
    while (true) {
      std::fprintf(stderr, "> ");
      if (!std::getline(std::cin, line) || line == "/quit") break;
      if (line.empty()) continue;
      if (line == "/reset") {
        history.clear();
        continue;
      }
      pipeline::Request req = make_request(*co, line);
      req.history = history;
      pipeline::Response r;
      try {
        r = ask_once(p, std::move(req), true);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        continue;
      }
      history.push_back({"user", r.user_turn});
      history.push_back({"assistant", r.answer});
      // Keep the conversation within budget: whole turns go, oldest first.
      auto size = [&] {
        std::size_t n = 0;
        for (const auto& m : history) n += p.engine().tokenize(r.model, m.content, false).size();
        return n;
      };
      while (history.size() > 2 && size() > static_cast<std::size_t>(*history_tokens))
        history.erase(history.begin(), history.begin() + 2);
    }
  });

  // ---- serve ----------------------------------------------------------------------------------
  auto* serve = app.add_subcommand("serve", "serve the pipeline over HTTP (OpenAI-compatible + native)");
  auto so = std::make_shared<PipelineOptions>();
  serve->add_option("-c,--config", so->config, "TOML configuration (default: $RUVLLM_CONFIG, else ./ruvllm.toml)");
  auto port = std::make_shared<int>(-1);
  auto host = std::make_shared<std::string>();
  auto grace = std::make_shared<double>(10);
  auto port_file = std::make_shared<std::string>();
  serve->add_option("--port", *port, "overrides server.port (0 = any free port)");
  serve->add_option("--host", *host, "overrides server.host");
  serve->add_option("--grace", *grace, "seconds in-flight requests may finish after SIGTERM/SIGINT");
  serve->add_option("--port-file", *port_file, "write the bound port here once listening (for scripts and tests)");
  serve->callback([so, port, host, grace, port_file] {
    // Signals go to one waiting thread, not to handlers: shutdown then runs as ordinary code.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    const std::string file = config_path(so->config);
    config::Settings c = config::load(file);
    if (*port >= 0) c.server.port = *port;
    if (!host->empty()) c.server.host = *host;
    warn_if_memory_is_missing(c, file);
    pipeline::Pipeline p(c);
    warn_if_memory_is_empty(p, file);
    server::Server s(p, c.server);
    const int bound = s.bind();
    std::fprintf(stderr, "ruvllm: serving %zu models on http://%s:%d (auth %s); SIGTERM/SIGINT stops gracefully\n",
                 c.models.size(), c.server.host.c_str(), bound, c.server.api_keys.empty() ? "off" : "on");
    if (!port_file->empty()) {
      const std::string tmp = *port_file + ".tmp";
      if (FILE* f = std::fopen(tmp.c_str(), "w")) {
        std::fprintf(f, "%d\n", bound);
        std::fclose(f);
        std::filesystem::rename(tmp, *port_file);
      }
    }
    std::atomic<bool> finished{false};
    std::jthread stopper([&] {
      int sig = 0;
      sigwait(&signals, &sig);
      if (finished) return;  // woken by our own signal below
      std::fprintf(stderr, "ruvllm: %s: draining (%.0f s grace)\n", sig == SIGINT ? "SIGINT" : "SIGTERM", *grace);
      s.stop(*grace);
    });
    s.run();
    p.shutdown();
    std::fprintf(stderr, "ruvllm: stopped; request log flushed, memory index saved\n");
    // The stopper may still wait (run() ended for another reason): wake it.
    finished = true;
    pthread_kill(stopper.native_handle(), SIGTERM);
  });
}

}  // namespace ruvllm::cli
