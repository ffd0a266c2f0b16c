// `ruvllm serve` as an operator runs it: a child process on a free port, driven with curl, stopped
// with SIGTERM; `ruvllm config check|show` and `ruvllm ask` on real files.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "fixtures.h"
#include "ruvllm/embed.h"

extern char** environ;

namespace ruvllm::server {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using test::fresh_dir;

using test::write_at;

// A configuration file for the tiny model under two names, everything else in `dir`.
std::string write_config(const std::string& dir, const std::string& extra = "") {
  return write_at(dir + "/ruvllm.toml",
                  "[models]\ndefault = \"large\"\nthreads = 2\ncontext = 2048\n\n"
                  "[[model]]\nname = \"small\"\npath = \"" +
                      test::tiny_lfm2() + "\"\n\n[[model]]\nname = \"large\"\npath = \"" + test::tiny_lfm2() +
                      "\"\n\n[memory]\ndata_dir = \"data\"\n\n"
                      "[generation]\nmax_tokens = 8\ntemperature = 0\nseed = 1\n\n" +
                      extra);
}

struct Shell {
  int status;
  std::string out;
};

Shell shell(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen((cmd + " 2>&1").c_str(), "r"), pclose);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe.get())) out.append(buf, n);
  const int status = pclose(pipe.release());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

struct Http {
  int status = 0;
  std::string body;
};

// curl: the status code and the body (the body goes through a file; the request body too).
Http curl(const std::string& dir, const std::string& url, const std::string& body = "", const std::string& extra = "") {
  const std::string out = dir + "/curl-body.out";
  fs::remove(out);
  std::string cmd = "curl -s -S --max-time 60 -o '" + out + "' -w '%{http_code}' " + extra + " ";
  if (!body.empty())
    cmd += "-H 'Content-Type: application/json' --data-binary @'" + write_at(dir + "/curl-body.json", body) + "' ";
  const Shell s = shell(cmd + "'" + url + "'");
  Http h;
  h.status = std::atoi(s.out.c_str());
  h.body = test::read_file(out);
  return h;
}

bool have_curl() { return shell("curl --version").status == 0; }

// The program as a child: stdout and stderr into `log`.
pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(RUVLLM_BINARY));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, RUVLLM_BINARY, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

// Waits up to `limit` for the child; its wait status, or -1 if it is still running.
int wait_exit(pid_t pid, std::chrono::seconds limit) {
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(20ms);
  }
  return -1;
}

// A served child that is killed if the test ends early.
struct Child {
  pid_t pid = -1;
  ~Child() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

TEST(ServerCli, ServesOverHttpAndStopsOnSigterm) {
  if (!fs::exists(embed::default_word_vectors())) {
    GTEST_SKIP() << "skipped: no word-vector table at " << embed::default_word_vectors();
  }
  if (!have_curl()) GTEST_SKIP() << "skipped: curl is not installed";
  const std::string dir = fresh_dir("serve-cli");
  const std::string config = write_config(dir);
  const std::string port_file = dir + "/port", log = dir + "/serve.log";
  Child child;
  child.pid = spawn({"serve", "--config", config, "--port", "0", "--port-file", port_file, "--grace", "5"}, log);
  ASSERT_GT(child.pid, 0);
  int port = 0;
  for (auto until = Clock::now() + 60s; Clock::now() < until && port == 0;) {
    if (fs::exists(port_file)) port = std::atoi(test::read_file(port_file).c_str());
    int status = 0;
    if (port == 0 && waitpid(child.pid, &status, WNOHANG) == child.pid) {
      child.pid = -1;
      FAIL() << "ruvllm serve exited early:\n" << test::read_file(log);
    }
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_GT(port, 0) << "no port file after 60 s:\n" << test::read_file(log);
  const std::string base = "http://127.0.0.1:" + std::to_string(port);

  Http h = curl(dir, base + "/health");
  EXPECT_EQ(h.status, 200) << h.body;
  h = curl(dir, base + "/v1/models");
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(json::parse(h.body)["data"].size(), 3u);

  const json chat = {
      {"model", "small"}, {"max_tokens", 6}, {"messages", {{{"role", "user"}, {"content", "What is a compiler?"}}}}};
  h = curl(dir, base + "/v1/chat/completions", chat.dump());
  ASSERT_EQ(h.status, 200) << h.body;
  const json answer = json::parse(h.body, nullptr, false);
  ASSERT_TRUE(answer.is_object()) << h.body;
  EXPECT_EQ(answer["model"], "small");
  EXPECT_LE(answer["usage"]["completion_tokens"].get<int>(), 6);
  const std::string request_id = answer["ruvllm"]["request_id"];

  // Streamed through curl: data events ending in [DONE].
  json streamed = chat;
  streamed["stream"] = true;
  h = curl(dir, base + "/v1/chat/completions", streamed.dump(), "-N");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body.rfind("data: ", 0), 0u) << h.body;
  EXPECT_NE(h.body.find("data: [DONE]\n\n"), std::string::npos) << h.body;

  // A client that gives up on a long stream does not take the server down.
  json long_stream = chat;
  long_stream["max_tokens"] = 1000;
  long_stream["stream"] = true;
  long_stream["cache"] = false;
  (void)curl(dir, base + "/v1/chat/completions", long_stream.dump(), "-N --max-time 0.5");
  h = curl(dir, base + "/health");
  EXPECT_EQ(h.status, 200) << "the server died after a client disconnected:\n" << test::read_file(log);

  h = curl(dir, base + "/v1/chat/completions", "{\"messages\": 3}");
  EXPECT_EQ(h.status, 400) << h.body;
  EXPECT_TRUE(json::parse(h.body, nullptr, false).contains("error")) << h.body;

  ASSERT_EQ(kill(child.pid, SIGTERM), 0);
  const int status = wait_exit(child.pid, 60s);
  ASSERT_NE(status, -1) << "still running 60 s after SIGTERM:\n" << test::read_file(log);
  child.pid = -1;
  EXPECT_TRUE(WIFEXITED(status)) << "killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << ":\n"
                                 << test::read_file(log);
  if (WIFEXITED(status)) {
    EXPECT_EQ(WEXITSTATUS(status), 0) << test::read_file(log);
  }
  const std::string text = test::read_file(log);
  EXPECT_NE(text.find("SIGTERM"), std::string::npos) << text;
  EXPECT_NE(text.find("stopped"), std::string::npos) << text;
  // The request log (data_dir relative to the config file) has the chat's row.
  bool found = false;
  std::ifstream rows(dir + "/data/requests.jsonl");
  for (std::string line; std::getline(rows, line);) {
    const json row = json::parse(line, nullptr, false);
    found = found || (row.is_object() && row["request_id"] == request_id);
  }
  EXPECT_TRUE(found) << "no row for " << request_id;
  EXPECT_TRUE(fs::exists(dir + "/data/memory.sqlite"));
}

TEST(ServerCli, ServeRefusesABadConfigurationNamingTheKey) {
  const std::string dir = fresh_dir("serve-cli-bad");
  const std::string config = write_config(dir, "[server]\nmax_queue = 0\n");
  // Guarded by timeout(1): a server that wrongly starts must not hang the suite.
  const auto r = shell("timeout 30 " + std::string(RUVLLM_BINARY) + " serve --config " + config + " --port 0");
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("server.max_queue"), std::string::npos) << r.out;
}

TEST(ServerCli, ConfigCheckNamesTheBadKeyAndShowPrintsValidDefaults) {
  const std::string dir = fresh_dir("config-cli");
  const std::string good = write_config(dir);
  auto r = test::run("config check " + good);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("ok"), std::string::npos) << r.out;

  const std::string bad = write_at(dir + "/bad.toml", "[[model]]\nname = \"m\"\npath = \"" + test::tiny_lfm2() +
                                                          "\"\n[server]\nport = \"eighty\"\n[retrieval]\nhops = 99\n");
  r = test::run("config check " + bad);
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("server.port"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("retrieval.hops"), std::string::npos) << r.out;

  const std::string missing = write_at(dir + "/missing.toml", "[[model]]\nname = \"m\"\npath = \"absent.gguf\"\n");
  r = test::run("config check " + missing);
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("model[0].path"), std::string::npos) << r.out;

  r = test::run("config check " + dir + "/no-such-file.toml");
  EXPECT_NE(r.status, 0) << r.out;

  // `config show` prints a file that, with a model added, checks clean.
  r = test::run("config show");
  ASSERT_EQ(r.status, 0) << r.out;
  const std::string shown =
      write_at(dir + "/shown.toml", r.out + "\n[[model]]\nname = \"m\"\npath = \"" + test::tiny_lfm2() + "\"\n");
  r = test::run("config check " + shown);
  EXPECT_EQ(r.status, 0) << r.out;
}

TEST(ServerCli, AskAnswersWithATraceAndLogsTheRequest) {
  if (!fs::exists(embed::default_word_vectors())) {
    GTEST_SKIP() << "skipped: no word-vector table at " << embed::default_word_vectors();
  }
  const std::string dir = fresh_dir("ask-cli");
  const std::string config = write_config(dir);
  const auto r = test::run("ask --config " + config + " --no-stream -n 4 -m small 'What is a compiler?'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("-- trace "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("route:     small"), std::string::npos) << r.out;
  std::ifstream rows(dir + "/data/requests.jsonl");
  std::vector<json> logged;
  for (std::string line; std::getline(rows, line);) logged.push_back(json::parse(line, nullptr, false));
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_NE(r.out.find("-- trace " + logged[0]["request_id"].get<std::string>()), std::string::npos) << r.out;
  EXPECT_EQ(logged[0]["query"], "What is a compiler?");
  EXPECT_EQ(logged[0]["router_decision"]["model_id"], "small");
}

// The two halves share one memory: what `ingest -c` writes is what `ask -c` retrieves, and ask says
// so before answering when there is nothing to retrieve.
TEST(ServerCli, AskReadsTheMemoryIngestWroteAndWarnsWhenThereIsNone) {
  if (!fs::exists(embed::default_word_vectors())) {
    GTEST_SKIP() << "skipped: no word-vector table at " << embed::default_word_vectors();
  }
  const std::string dir = fresh_dir("ask-one-memory");
  const std::string config = write_config(dir);
  const std::string ask = "ask --config " + config + " --no-stream -n 2 -m small 'What escapes from a volcano?'";
  auto r = test::run(ask);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("warning: memory " + dir + "/data/memory.sqlite does not exist"), std::string::npos) << r.out;
  r = test::run(ask);  // the first ask created it, empty
  EXPECT_NE(r.out.find("is empty"), std::string::npos) << r.out;
  r = test::run("config check " + config);
  EXPECT_NE(r.out.find("0 nodes"), std::string::npos) << r.out;

  const std::string corpus = write_at(
      dir + "/notes.jsonl",
      R"({"id": "v1", "title": "Volcano", "text": "A volcano is a rupture in the crust of a planet where lava escapes."})"
      "\n");
  r = test::run("ingest -c " + config + " " + corpus);
  ASSERT_EQ(r.status, 0) << r.out;
  r = test::run(ask);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.find("warning: memory"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Volcano"), std::string::npos) << "the ingested node is not in the context:\n" << r.out;
  r = test::run("config check " + config);
  EXPECT_NE(r.out.find("1 node,"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace ruvllm::server
