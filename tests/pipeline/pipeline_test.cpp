// The orchestrator and its configuration: one request through every stage on a real (tiny, generated)
// LFM2, checked against what memory, the embedder and the router compute on their own.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "fixtures.h"
#include "ruvllm/embed.h"
#include "ruvllm/pipeline.h"
#include "ruvllm/router.h"

namespace ruvllm::pipeline {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using test::fresh_dir;

using test::write_at;

// The ladder: two names for the tiny generated LFM2 (a cheap and a dear rung of the same file).
Config tiny_config(const std::string& dir) {
  Config c;
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
  return c;
}

const char* const kCorpus =
    R"({"id": "compiler", "title": "Compiler", "text": "A compiler is a program that translates source code written in a programming language into machine code."})"
    "\n"
    R"({"id": "interpreter", "title": "Interpreter", "text": "An interpreter executes the instructions of a program directly, without translating them into machine code first."})"
    "\n"
    R"({"id": "linker", "title": "Linker", "text": "A linker combines the object files produced by a Compiler into one executable program."})"
    "\n"
    R"({"id": "gc", "title": "Garbage collection", "text": "Garbage collection reclaims memory that a running program no longer uses."})"
    "\n"
    R"({"id": "volcano", "title": "Volcano", "text": "A volcano is a rupture in the crust of a planet where lava and gases escape."})"
    "\n"
    R"({"id": "glacier", "title": "Glacier", "text": "A glacier is a persistent body of dense ice that moves slowly under its own weight."})"
    "\n";

void ingest_corpus(Pipeline& p) {
  // In the pipeline's own folder: tests may run in parallel.
  p.ingest({write_at(p.config().data_dir + "/corpus.jsonl", kCorpus)});
  p.invalidate_all();
}

std::vector<json> log_rows(const std::string& path) {
  std::vector<json> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    rows.push_back(json::parse(line, nullptr, false));
  }
  return rows;
}

Request ask(const std::string& query) {
  Request r;
  r.query = query;
  return r;
}

const char* const kQuestion = "What does a compiler translate source code into?";

// ==== one request ===============================================================================

// Config documents memory_path "" = data_dir/memory.sqlite and request_log "" = data_dir/requests.jsonl.
TEST(Pipeline, CodeBuiltConfigKeepsMemoryAndLogInDataDir) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-defaults");
  Config c = tiny_config(dir);
  c.memory_path.clear();
  c.request_log.clear();
  try {
    Pipeline p(c);
    const Response r = p.run(ask(kQuestion));
    p.shutdown();
    EXPECT_TRUE(fs::exists(dir + "/memory.sqlite"));
    EXPECT_EQ(log_rows(dir + "/requests.jsonl").size(), 1u);
  } catch (const std::exception& e) {
    FAIL() << "a Config with data_dir but no memory_path/request_log was refused: " << e.what();
  }
}

TEST(Pipeline, AnswersWithinMaxTokensAndStageTimesAddUp) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-answer");
  Pipeline p(tiny_config(dir));
  ingest_corpus(p);
  Request r = ask(kQuestion);
  r.max_tokens = 6;
  const Response a = p.run(r);
  EXPECT_LE(a.completion_tokens, 6);
  EXPECT_GT(a.prompt_tokens, 0);
  EXPECT_TRUE(a.finish == llm::Finish::stop || a.finish == llm::Finish::length);
  if (a.finish == llm::Finish::length) {
    EXPECT_EQ(a.completion_tokens, 6);
  }
  EXPECT_TRUE(a.generated_weights);  // the tiny model's weights are generated
  EXPECT_EQ(a.model, "large");       // routing off: models.default
  EXPECT_FALSE(a.routed);
  EXPECT_TRUE(
      std::regex_match(a.request_id, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << a.request_id;

  // ignore_eos: exactly max_tokens come out.
  r.ignore_eos = true;
  r.use_cache = false;
  r.max_tokens = 7;
  const Response b = p.run(r);
  EXPECT_EQ(b.completion_tokens, 7);
  EXPECT_EQ(b.finish, llm::Finish::length);
  EXPECT_FALSE(b.answer.empty());
  EXPECT_NE(a.request_id, b.request_id);

  for (const Response* x : {&a, &b}) {
    const StageTimes& t = x->times;
    // The stages that ran took time; search is the search's wall time less the embedding inside
    // it, which a wrong subtraction would make negative; write-back is off.
    EXPECT_GT(t.embed + t.search, 0);
    EXPECT_GE(t.search, 0);
    EXPECT_GT(t.context, 0);
    EXPECT_EQ(t.writeback, 0);
    EXPECT_GT(t.total, 0);
    EXPECT_GT(t.llm, 0);
    EXPECT_LE(t.embed + t.search + t.expand + t.attend + t.route + t.context + t.llm + t.writeback, t.total);
    EXPECT_LE(t.ttft, t.total);
    EXPECT_GE(t.non_llm(), 0);
  }
}

TEST(Pipeline, LogsOneRowPerRequestWithTheSeedsFields) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-log");
  const Config c = tiny_config(dir);
  Pipeline p(c);
  ingest_corpus(p);
  std::vector<Response> out;
  Request r = ask(kQuestion);
  r.user = "alice@example.com";
  out.push_back(p.run(r));
  out.push_back(p.run(r));  // a cache hit is a request too
  Request s = ask("Where does lava escape?");
  s.user = "bob";
  s.flow = Flow::naive;
  out.push_back(p.run(s));
  out.push_back(p.run(ask("Is ice heavy?")));  // no user
  EXPECT_THROW(p.run(ask("")), Error);         // refused requests leave no row
  p.shutdown();

  const auto rows = log_rows(c.request_log);
  ASSERT_EQ(rows.size(), out.size());
  const std::time_t now = std::time(nullptr);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    SCOPED_TRACE(i);
    const json& row = rows[i];
    const Response& o = out[i];
    ASSERT_TRUE(row.is_object());
    EXPECT_EQ(row["request_id"], o.request_id);
    // ISO 8601 UTC with milliseconds, within a few minutes of now.
    const std::string ts = row["timestamp"];
    std::smatch m;
    ASSERT_TRUE(std::regex_match(ts, m, std::regex(R"((\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.\d{3}Z)"))) << ts;
    std::tm tm{};
    tm.tm_year = std::stoi(m[1]) - 1900;
    tm.tm_mon = std::stoi(m[2]) - 1;
    tm.tm_mday = std::stoi(m[3]);
    tm.tm_hour = std::stoi(m[4]);
    tm.tm_min = std::stoi(m[5]);
    tm.tm_sec = std::stoi(m[6]);
    EXPECT_LT(std::abs(static_cast<double>(timegm(&tm) - now)), 300.0) << ts;
    EXPECT_EQ(row["query"], i < 2 ? kQuestion : i == 2 ? "Where does lava escape?" : "Is ice heavy?");
    EXPECT_EQ(row["router_decision"]["model_id"], o.model);
    EXPECT_EQ(row["router_decision"]["routed"], o.routed);
    EXPECT_EQ(row["retrieval_stats"]["k"], o.retrieved);
    std::vector<std::string> ids;
    for (const auto& b : o.context) ids.push_back(b.node_id);
    EXPECT_EQ(row["retrieval_stats"]["node_ids"].get<std::vector<std::string>>(), ids);
    EXPECT_EQ(row["retrieval_stats"]["nodes_used"], ids.size());
    EXPECT_NEAR(row["latency_ms"]["total"].get<double>(), static_cast<double>(o.times.total) / 1000.0, 1e-6);
    for (const char* k : {"retrieval", "router", "context", "llm", "ttft", "writeback"}) {
      ASSERT_TRUE(row["latency_ms"].contains(k)) << k;
      EXPECT_GE(row["latency_ms"][k].get<double>(), 0) << k;
      EXPECT_LE(row["latency_ms"][k].get<double>(), row["latency_ms"]["total"].get<double>()) << k;
    }
    EXPECT_EQ(row["tokens"]["completion"], o.completion_tokens);
    EXPECT_EQ(row["cache_hit"], o.cache_hit);
    EXPECT_EQ(row["finish"], o.finish == llm::Finish::stop ? "stop" : "length");
    EXPECT_EQ(row["router_features"].size(), o.features.size());
    EXPECT_TRUE(row["quality"].is_object());
  }
  EXPECT_TRUE(rows[1]["cache_hit"].get<bool>());
  EXPECT_EQ(rows[2]["flow"], "naive");
  EXPECT_EQ(rows[0]["flow"], "routed");
  // The user is hashed: stable for one user, different between users, never the raw text.
  ASSERT_TRUE(rows[0]["user_id"].is_string());
  EXPECT_EQ(rows[0]["user_id"], rows[1]["user_id"]);
  EXPECT_NE(rows[0]["user_id"], rows[2]["user_id"]);
  const std::string raw = rows[0].dump() + rows[2].dump();
  EXPECT_EQ(raw.find("alice"), std::string::npos);
  EXPECT_EQ(rows[0]["user_id"].get<std::string>().find("alice@example.com"), std::string::npos);
  EXPECT_TRUE(rows[3]["user_id"].is_null());
}

TEST(Pipeline, ContextBlocksAreStoredNodesAndReachThePrompt) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-context");
  const Config c = tiny_config(dir);
  Pipeline p(c);
  ingest_corpus(p);
  const Response r = p.run(ask(kQuestion));
  ASSERT_FALSE(r.context.empty());
  EXPECT_LE(r.context.size(), c.max_docs);
  // The routed flow retrieves with the configured parameters: the same candidates as retrieve().
  EXPECT_EQ(r.retrieved, retrieve(p.memory(), kQuestion, c.retrieve).search.hits.size());
  std::set<std::string> ids;
  for (std::size_t i = 0; i < r.context.size(); ++i) {
    const ContextBlock& b = r.context[i];
    SCOPED_TRACE(b.node_id);
    EXPECT_TRUE(ids.insert(b.node_id).second) << "a node used twice";
    const auto node = p.memory().get(b.node_id);
    ASSERT_TRUE(node.has_value());
    EXPECT_EQ(node->text, b.text);
    EXPECT_EQ(node->title, b.title);
    EXPECT_EQ(std::string(memory::to_string(node->type)), b.type);
    EXPECT_NE(r.user_turn.find(b.text), std::string::npos) << "block text not in the prompt";
    if (i > 0) {
      EXPECT_GE(r.context[i - 1].score, b.score) << "blocks are not ordered by score";
    }
  }
  // The compiler definition is what the question is about.
  EXPECT_TRUE(
      std::any_of(r.context.begin(), r.context.end(), [](const ContextBlock& b) { return b.title == "Compiler"; }));
  const std::string tail = std::string("Question: ") + kQuestion;
  ASSERT_GE(r.user_turn.size(), tail.size());
  EXPECT_EQ(r.user_turn.substr(r.user_turn.size() - tail.size()), tail);

  // An empty memory: no context, the query alone.
  const std::string dir2 = fresh_dir("pipeline-context-empty");
  Pipeline empty(tiny_config(dir2));
  const Response e = empty.run(ask(kQuestion));
  EXPECT_TRUE(e.context.empty());
  EXPECT_EQ(e.user_turn, kQuestion);
  EXPECT_EQ(e.retrieved, 0u);
}

TEST(Pipeline, NaiveFlowUsesTheDefaultModelAndDenseTopK) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-naive");
  Config c = tiny_config(dir);
  c.default_model = "small";
  c.max_docs = 3;
  Pipeline p(c);
  ingest_corpus(p);
  Request r = ask(kQuestion);
  r.flow = Flow::naive;
  const Response out = p.run(r);
  EXPECT_EQ(out.model, "small");
  EXPECT_FALSE(out.routed);
  EXPECT_TRUE(out.features.empty());
  // Independently: dense search of the query's vector, k = max_docs.
  memory::SearchQuery q;
  q.text = kQuestion;
  q.vector = p.embedder().embed(kQuestion).vector;
  q.k = c.max_docs;
  q.mode = memory::SearchMode::dense;
  const auto dense = p.memory().search(q);
  EXPECT_EQ(out.retrieved, dense.hits.size());
  ASSERT_FALSE(out.context.empty());
  std::vector<std::string> expected;
  for (const auto& h : dense.hits) expected.push_back(h.id);
  for (std::size_t i = 0; i < out.context.size(); ++i) {
    // Dense order, and the block's score is the cosine similarity.
    auto it = std::find(expected.begin(), expected.end(), out.context[i].node_id);
    ASSERT_NE(it, expected.end()) << out.context[i].node_id << " is not among the dense top-k";
    const auto& hit = dense.hits[static_cast<std::size_t>(it - expected.begin())];
    EXPECT_NEAR(out.context[i].score, hit.similarity, 1e-6);
  }
  EXPECT_EQ(out.context[0].node_id, expected[0]);
  p.shutdown();
  const auto rows = log_rows(c.request_log);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["router_decision"]["retrieval"], "dense");
  EXPECT_EQ(rows[0]["router_decision"]["model_id"], "small");
  EXPECT_EQ(rows[0]["retrieval_stats"]["subgraph_nodes"], 0);  // no graph expansion
}

TEST(Pipeline, ExplicitModelIsUsedAsGiven) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-explicit");
  Pipeline p(tiny_config(dir));
  Request r = ask("Hello there");
  r.model = "small";
  const Response a = p.run(r);
  EXPECT_EQ(a.model, "small");
  EXPECT_FALSE(a.routed);
  r.model = "auto";
  EXPECT_EQ(p.run(r).model, "large");  // routing off: models.default
  r.model = "";
  EXPECT_EQ(p.run(r).model, "large");
}

TEST(Pipeline, SecondRequestIsACacheHitUntilItsNodesChange) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-cache");
  Pipeline p(tiny_config(dir));
  ingest_corpus(p);
  Request r = ask(kQuestion);
  const Response a = p.run(r);
  ASSERT_FALSE(a.cache_hit);
  ASSERT_FALSE(a.context.empty());
  const Response b = p.run(r);
  EXPECT_TRUE(b.cache_hit);
  EXPECT_EQ(b.answer, a.answer);
  EXPECT_EQ(b.completion_tokens, a.completion_tokens);
  EXPECT_NE(b.request_id, a.request_id);
  // Case and spacing do not matter.
  Request spaced = ask("  WHAT does a compiler   translate source code into?");
  EXPECT_TRUE(p.run(spaced).cache_hit);
  // Other settings are other answers.
  Request other = r;
  other.max_tokens = 5;
  EXPECT_FALSE(p.run(other).cache_hit);
  other = r;
  other.seed = 99;
  EXPECT_FALSE(p.run(other).cache_hit);
  other = r;
  other.model = "small";
  EXPECT_FALSE(p.run(other).cache_hit);
  other = r;
  other.use_cache = false;
  EXPECT_FALSE(p.run(other).cache_hit);
  other = r;
  other.system_prompt = "Answer in French.";
  EXPECT_FALSE(p.run(other).cache_hit);
  other = r;
  other.stop = {"zzz"};
  EXPECT_FALSE(p.run(other).cache_hit);
  // The same last turn after a conversation is another question.
  other = r;
  other.history = {{"user", "Let us talk about interpreters."}, {"assistant", "Sure."}};
  EXPECT_FALSE(p.run(other).cache_hit);
  EXPECT_FALSE(p.run(other).cache_hit);
  EXPECT_TRUE(p.run(r).cache_hit);

  // Invalidating a node the answer did not use keeps it; one it used drops it.
  p.invalidate({"no-such-node"});
  EXPECT_TRUE(p.run(r).cache_hit);
  p.invalidate({a.context.back().node_id});
  const Response c = p.run(r);
  EXPECT_FALSE(c.cache_hit);
  EXPECT_EQ(c.answer, a.answer);  // greedy: the same text, generated again
  EXPECT_TRUE(p.run(r).cache_hit);
  p.invalidate_all();
  EXPECT_FALSE(p.run(r).cache_hit);

  // A used node removed from memory: the next answer is generated without it.
  const std::string gone = a.context.front().node_id;
  ASSERT_TRUE(p.remove_node(gone));
  const Response d = p.run(r);
  EXPECT_FALSE(d.cache_hit);
  for (const auto& blk : d.context) EXPECT_NE(blk.node_id, gone);
}

TEST(Pipeline, StreamedPiecesConcatenateToTheAnswer) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-stream");
  Pipeline p(tiny_config(dir));
  ingest_corpus(p);
  Request r = ask(kQuestion);
  r.max_tokens = 12;
  r.ignore_eos = true;
  std::string streamed;
  std::size_t pieces = 0;
  r.on_text = [&](std::string_view piece) {
    streamed += piece;
    ++pieces;
    return true;
  };
  const Response a = p.run(r);
  EXPECT_EQ(streamed, a.answer);
  EXPECT_GT(pieces, 1u);
  EXPECT_GT(a.times.ttft, 0);
  EXPECT_LE(a.times.ttft, a.times.total);
  // The same request without streaming writes the same text (greedy).
  Request plain = ask(kQuestion);
  plain.max_tokens = 12;
  plain.ignore_eos = true;
  plain.use_cache = false;
  EXPECT_EQ(p.run(plain).answer, a.answer);
  // A cache hit streams its answer too.
  streamed.clear();
  const Response hit = p.run(r);
  ASSERT_TRUE(hit.cache_hit);
  EXPECT_EQ(streamed, a.answer);
}

TEST(Pipeline, StopStringsEndTheAnswer) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-stop");
  Pipeline p(tiny_config(dir));
  ingest_corpus(p);
  Request free_run = ask(kQuestion);
  free_run.max_tokens = 16;
  free_run.ignore_eos = true;
  free_run.use_cache = false;
  const Response full = p.run(free_run);
  ASSERT_EQ(full.completion_tokens, 16);
  ASSERT_GE(full.answer.size(), 2u);
  // Stop at the text the free run wrote after its first character: the answer is what came before.
  const std::string stop = full.answer.substr(1, 1);
  const std::size_t cut = full.answer.find(stop);
  Request r = free_run;
  r.stop = {stop};
  const Response out = p.run(r);
  EXPECT_EQ(out.finish, llm::Finish::stop);
  EXPECT_EQ(out.answer, full.answer.substr(0, cut));
  EXPECT_EQ(out.answer.find(stop), std::string::npos);
}

TEST(Pipeline, CancelledRequestsFinishCancelledAndAreNotCached) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-cancel");
  const Config c = tiny_config(dir);
  Pipeline p(c);
  ingest_corpus(p);
  {
    // Cancelled before it starts.
    std::stop_source stop;
    stop.request_stop();
    Request r = ask(kQuestion);
    r.max_tokens = 200;
    r.ignore_eos = true;
    r.cancel = stop.get_token();
    const Response out = p.run(r);
    EXPECT_EQ(out.finish, llm::Finish::cancelled);
    EXPECT_LT(out.completion_tokens, 200);
    // Not cached: the same request, not cancelled, generates.
    Request again = ask(kQuestion);
    again.max_tokens = 200;
    again.ignore_eos = true;
    const Response full = p.run(again);
    EXPECT_FALSE(full.cache_hit);
    EXPECT_EQ(full.finish, llm::Finish::length);
    EXPECT_EQ(full.completion_tokens, 200);
  }
  {
    // Cancelled while it runs, from another thread.
    std::stop_source stop;
    Request r = ask("Tell me about glaciers");
    r.max_tokens = 1000;
    r.ignore_eos = true;
    r.cancel = stop.get_token();
    std::atomic<int> pieces{0};
    r.on_text = [&](std::string_view) {
      ++pieces;
      return true;
    };
    std::thread canceller([&] {
      while (pieces.load() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      stop.request_stop();
    });
    const auto t0 = std::chrono::steady_clock::now();
    const Response out = p.run(r);
    canceller.join();
    EXPECT_EQ(out.finish, llm::Finish::cancelled);
    EXPECT_LT(out.completion_tokens, 1000);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  }
  {
    // The stream's consumer says stop.
    Request r = ask("Tell me about volcanoes");
    r.max_tokens = 1000;
    r.ignore_eos = true;
    int pieces = 0;
    r.on_text = [&](std::string_view) { return ++pieces < 2; };
    const Response out = p.run(r);
    EXPECT_EQ(out.finish, llm::Finish::cancelled);
    EXPECT_LT(out.completion_tokens, 1000);
  }
  p.shutdown();
  const auto rows = log_rows(c.request_log);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0]["finish"], "cancelled");
  EXPECT_EQ(rows[1]["finish"], "length");
  EXPECT_EQ(rows[2]["finish"], "cancelled");
  EXPECT_EQ(rows[3]["finish"], "cancelled");
}

TEST(Pipeline, FeedbackIsAppendedForLoggedRequestsOnly) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-feedback");
  const Config c = tiny_config(dir);
  std::string id;
  {
    Pipeline p(c);
    id = p.run(ask("Hello")).request_id;
    p.feedback(id, 0.75, "helpful");
    EXPECT_THROW(p.feedback("00000000-0000-4000-8000-000000000000", 1.0, ""), Error);
    EXPECT_THROW(p.feedback(id, 1.5, ""), Error);
    EXPECT_THROW(p.feedback(id, -0.1, ""), Error);
    EXPECT_THROW(p.feedback(id, std::nullopt, ""), Error);  // neither score nor label
    EXPECT_THROW(p.feedback(id, std::nullopt, "bad \xff label"), Error);
    p.feedback(id, std::nullopt, "thumbs-down");
  }
  // After a restart the logged request still takes feedback.
  {
    Pipeline p(c);
    EXPECT_NO_THROW(p.feedback(id, 0.0, ""));
  }
  const auto rows = log_rows(dir + "/feedback.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  for (const auto& row : rows) EXPECT_EQ(row["request_id"], id);
  EXPECT_DOUBLE_EQ(rows[0]["score"].get<double>(), 0.75);
  EXPECT_EQ(rows[0]["label"], "helpful");
  EXPECT_TRUE(rows[1]["score"].is_null());
  EXPECT_EQ(rows[1]["label"], "thumbs-down");
  EXPECT_DOUBLE_EQ(rows[2]["score"].get<double>(), 0.0);
}

TEST(Pipeline, BadRequestsThrowPipelineErrors) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-bad");
  const Config c = tiny_config(dir);
  Pipeline p(c);
  auto expect_error = [&](const char* what, Request r) {
    SCOPED_TRACE(what);
    EXPECT_THROW(p.run(std::move(r)), Error);
    EXPECT_EQ(p.in_flight(), 0u);
  };
  expect_error("empty query", ask(""));
  expect_error("invalid UTF-8", ask("caf\xc3"));
  expect_error("overlong UTF-8", ask("\xc0\xaf"));
  Request r = ask("hi");
  r.model = "gpt-4";
  expect_error("unknown model", r);
  r = ask("hi");
  r.max_tokens = -1;
  expect_error("negative max_tokens", r);
  r = ask("hi");
  r.top_p = 0.0f;
  expect_error("top_p 0", r);
  r = ask("hi");
  r.top_p = 1.5f;
  expect_error("top_p above 1", r);
  r = ask("hi");
  r.temperature = -0.5f;
  expect_error("negative temperature", r);
  r = ask("hi");
  r.history = {{"tool", "x"}};
  expect_error("unknown history role", r);
  r = ask("hi");
  r.history = {{"user", "bad \xfe"}};
  expect_error("history not UTF-8", r);
  r = ask("hi");
  r.system_prompt = "bad \xff";
  expect_error("system prompt not UTF-8", r);
  p.shutdown();
  EXPECT_EQ(log_rows(c.request_log).size(), 0u);
}

TEST(Pipeline, WritebackAddsAQaNodeDerivedFromItsContext) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-writeback");
  Config c = tiny_config(dir);
  c.writeback = true;
  Pipeline p(c);
  ingest_corpus(p);
  const std::size_t before = p.memory().stats().nodes;
  Request r = ask(kQuestion);
  r.ignore_eos = true;
  const Response out = p.run(r);
  ASSERT_FALSE(out.answer.empty());
  ASSERT_FALSE(out.context.empty());
  EXPECT_EQ(p.memory().stats().nodes, before + 1);
  const auto qa = p.memory().get(out.request_id);
  ASSERT_TRUE(qa.has_value()) << "no node with the request's id";
  EXPECT_EQ(qa->type, memory::NodeType::qa);
  EXPECT_NE(qa->text.find(kQuestion), std::string::npos);
  EXPECT_NE(qa->text.find(out.answer), std::string::npos);
  std::set<std::string> derived, used;
  for (const auto& e : p.memory().edges(out.request_id, memory::Direction::out, "derived")) {
    EXPECT_EQ(e.src, out.request_id);
    derived.insert(e.dst);
  }
  for (const auto& b : out.context) used.insert(b.node_id);
  EXPECT_EQ(derived, used);
  // A cancelled (partial) answer is not written back.
  std::stop_source stop;
  stop.request_stop();
  Request cancelled = ask("Where does lava escape?");
  cancelled.ignore_eos = true;
  cancelled.cancel = stop.get_token();
  const Response partial = p.run(cancelled);
  EXPECT_EQ(partial.finish, llm::Finish::cancelled);
  EXPECT_EQ(p.memory().stats().nodes, before + 1);
  EXPECT_FALSE(p.memory().get(partial.request_id).has_value());

  // Off (the default): nothing is added.
  const std::string dir2 = fresh_dir("pipeline-writeback-off");
  Pipeline off(tiny_config(dir2));
  ingest_corpus(off);
  const std::size_t n = off.memory().stats().nodes;
  const Response o = off.run(r);
  EXPECT_EQ(off.memory().stats().nodes, n);
  EXPECT_FALSE(off.memory().get(o.request_id).has_value());
}

TEST(Pipeline, ConcurrentRunsAllSucceed) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-concurrent");
  const Config c = tiny_config(dir);
  Pipeline p(c);
  ingest_corpus(p);
  const std::vector<std::string> questions = {kQuestion, "What does a linker combine?", "Where does lava escape?",
                                              "What reclaims unused memory?"};
  std::vector<Response> out(questions.size());
  std::vector<std::string> errors(questions.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < questions.size(); ++i) {
    threads.emplace_back([&, i] {
      try {
        Request r = ask(questions[i]);
        r.model = "small";  // one model: its sequences are decoded together
        r.max_tokens = 12;
        r.ignore_eos = true;
        r.use_cache = false;
        out[i] = p.run(r);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> ids;
  for (std::size_t i = 0; i < questions.size(); ++i) {
    EXPECT_EQ(errors[i], "") << questions[i];
    EXPECT_EQ(out[i].completion_tokens, 12) << questions[i];
    EXPECT_EQ(out[i].finish, llm::Finish::length);
    EXPECT_EQ(out[i].model, "small");
    ids.insert(out[i].request_id);
  }
  EXPECT_EQ(ids.size(), questions.size());
  EXPECT_EQ(p.in_flight(), 0u);
  p.shutdown();
  EXPECT_EQ(log_rows(c.request_log).size(), questions.size());
}

TEST(Pipeline, RunAfterShutdownIsRefused) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-shutdown");
  Pipeline p(tiny_config(dir));
  p.shutdown();
  p.shutdown();  // idempotent
  EXPECT_THROW(p.run(ask("hello")), Error);
}

// ==== routing ===================================================================================

// A tiny router trained on synthetic outcomes: its ladder names map to the config's models.
std::string train_router(const embed::Embedder& embedder, const std::string& path) {
  router::Ladder ladder;
  ladder.models = {"r-small", "r-large"};
  router::Router r(ladder, {.hidden = 4, .rank_w = 2, .rank_u = 2, .steps = 1});
  const std::vector<std::string> texts = {"what is two plus two",
                                          "prove the riemann hypothesis",
                                          "hello",
                                          "derive the navier stokes equations",
                                          "name a colour",
                                          "explain quantum chromodynamics in detail",
                                          "what is the capital of peru",
                                          "write a compiler for a lisp dialect"};
  std::vector<router::Outcome> outcomes;
  for (std::size_t i = 0; i < 32; ++i) {
    router::Outcome o;
    o.id = "o" + std::to_string(i);
    o.task = "t";
    const std::string& t = texts[i % texts.size()];
    const auto e = embedder.embed(t);
    o.signals.query.text = t;
    o.signals.query.embedding = e.vector;
    o.signals.query.tokens = e.tokens;
    o.signals.query.known_tokens = e.known;
    const bool hard = i % 2 == 1;
    o.trials = {{.model = 0, .quality = hard ? 0.0 : 1.0, .cost = 1}, {.model = 1, .quality = 1, .cost = 10}};
    outcomes.push_back(o);
  }
  r.train(outcomes, {.epochs = 4, .batch = 8});
  r.save(path);
  return path;
}

// The routed flow reads the graph's rows best first, a few at a time; when copies of one text fill
// those (the builder drops each as a duplicate) it reads further, and builds the context the whole
// subgraph would give: evidence() offers every row at once.
TEST(Pipeline, GraphContextReadsPastDuplicatesAsTheWholeSubgraphWould) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-duplicates");
  Config c = tiny_config(dir);
  c.max_docs = 2;  // rows offered 4, 8, 16, ... at a time
  Pipeline p(c);
  ingest_corpus(p);
  const auto best = p.memory().search({.text = kQuestion, .k = 1});
  ASSERT_EQ(best.hits.size(), 1u);
  const std::string copied = p.memory().get(best.hits[0].id)->text;
  std::vector<memory::Node> copies;
  std::vector<memory::Edge> links;
  for (int i = 0; i < 12; ++i) {
    copies.push_back({.id = "copy-" + std::to_string(i), .text = copied, .metadata = R"({"source_id": "copy"})"});
    links.push_back({.src = "copy-" + std::to_string(i), .dst = best.hits[0].id, .rel = "same_topic"});
  }
  p.add_batch(std::move(copies), std::move(links));

  Request r = ask(kQuestion);
  r.generate = false;
  const Response routed = p.run(r);
  ASSERT_FALSE(routed.routed);  // no router: hybrid + graph
  ASSERT_EQ(routed.context.size(), c.max_docs) << "stopped at the copies";
  EXPECT_NE(routed.context[0].text, routed.context[1].text);
  const auto ev = p.evidence({kQuestion, {"compiler", "linker"}}, {static_cast<int>(c.max_context_tokens)});
  for (const auto& t : ev.trials)
    if (t.retrieval == router::Retrieval::hybrid_graph) {
      EXPECT_EQ(t.blocks, routed.context.size());
    }
}

// Evidence for the router's context heads must describe the contexts run() builds: the routed
// flow without a router uses hybrid + graph at context.max_tokens, and the naive flow's dense top-k
// is the dense strategy at the same budget. Recall is checked against the gold ids by hand.
TEST(Pipeline, EvidenceDescribesTheContextsRunBuilds) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-evidence");
  Config c = tiny_config(dir);
  Pipeline p(c);
  ingest_corpus(p);
  const LabelledQuestion q{kQuestion, {"compiler", "linker", "not-in-memory"}};
  const std::vector<int> bins = {64, 256, static_cast<int>(c.max_context_tokens), 4096};
  const auto ev = p.evidence(q, bins);
  ASSERT_EQ(ev.trials.size(), 4 * bins.size());
  EXPECT_FALSE(ev.signals.retrieval.scores.empty());
  EXPECT_EQ(ev.signals.query.text, kQuestion);
  auto trial = [&](router::Retrieval k, int bin) {
    for (const auto& t : ev.trials)
      if (t.retrieval == k && t.context_tokens == bin) return t;
    ADD_FAILURE() << "no trial for " << router::to_string(k) << " at " << bin;
    return Pipeline::EvidenceTrial{};
  };
  auto recall_of = [&](const Response& out) {
    std::set<std::string> found;
    for (const auto& b : out.context) {
      const auto node = p.memory().get(b.node_id);
      const auto meta = json::parse(node->metadata);
      const std::string source = meta["source_id"];
      if (std::find(q.gold_sources.begin(), q.gold_sources.end(), source) != q.gold_sources.end()) found.insert(source);
    }
    return static_cast<double>(found.size()) / 3.0;
  };
  Request r = ask(kQuestion);
  r.generate = false;
  const Response routed = p.run(r);
  ASSERT_FALSE(routed.routed);  // no router: hybrid + graph at context.max_tokens
  const auto hg = trial(router::Retrieval::hybrid_graph, static_cast<int>(c.max_context_tokens));
  EXPECT_EQ(hg.blocks, routed.context.size());
  EXPECT_DOUBLE_EQ(hg.recall, recall_of(routed));
  EXPECT_GT(hg.recall, 0);
  EXPECT_LT(hg.recall, 1);  // one gold id is not in memory
  r.flow = Flow::naive;
  const Response naive = p.run(r);
  const auto dense = trial(router::Retrieval::dense, static_cast<int>(c.max_context_tokens));
  EXPECT_EQ(dense.blocks, naive.context.size());
  EXPECT_DOUBLE_EQ(dense.recall, recall_of(naive));
  for (const auto& t : ev.trials) {
    SCOPED_TRACE(std::string(router::to_string(t.retrieval)) + " " + std::to_string(t.context_tokens));
    if (t.retrieval == router::Retrieval::none) {
      EXPECT_EQ(t.blocks, 0u);
      EXPECT_EQ(t.recall, 0);
    }
    // The budget is capped by context.max_tokens: a larger bin holds the same as the cap.
    const int capped = std::min(t.context_tokens, static_cast<int>(c.max_context_tokens));
    EXPECT_LE(t.tokens, static_cast<std::size_t>(capped));
    if (t.context_tokens > capped) {
      EXPECT_EQ(t.blocks, trial(t.retrieval, capped).blocks);
      EXPECT_EQ(t.recall, trial(t.retrieval, capped).recall);
    }
  }
  // More room never holds less evidence.
  for (int k = 1; k < 4; ++k)
    for (std::size_t b = 1; b < bins.size(); ++b)
      EXPECT_GE(trial(static_cast<router::Retrieval>(k), bins[b]).recall,
                trial(static_cast<router::Retrieval>(k), bins[b - 1]).recall);
  EXPECT_THROW(p.evidence({"", {"compiler"}}, bins), Error);
  EXPECT_THROW(p.evidence(q, {}), Error);
}

TEST(PipelineRouter, RoutedRequestsFollowTheRoutersDecision) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-router");
  Config c = tiny_config(dir);
  {
    const auto glove = embed::open_word_vectors();
    c.router_file = train_router(*glove, dir + "/router.json");
  }
  c.router_models = {{"r-small", "small"}, {"r-large", "large"}};
  Pipeline p(c);
  ingest_corpus(p);
  const router::Router loaded = router::Router::load(c.router_file);
  for (const char* q : {kQuestion, "hello", "derive the navier stokes equations"}) {
    SCOPED_TRACE(q);
    Request r = ask(q);
    r.use_cache = false;
    const Response out = p.run(r);
    ASSERT_TRUE(out.routed);
    ASSERT_EQ(out.features.size(), router::kFeatures);
    router::FeatureVector f;
    std::copy(out.features.begin(), out.features.end(), f.begin());
    const router::RouteDecision d = loaded.decide(f, {});
    EXPECT_EQ(out.decision.model, d.model);
    EXPECT_EQ(out.model, d.model == 0 ? "small" : "large");
    EXPECT_FLOAT_EQ(out.decision.temperature, d.temperature);  // the router's sampling, not the config's
    EXPECT_FLOAT_EQ(out.decision.top_p, d.top_p);
  }
  // An explicit model or the naive flow bypasses the router.
  Request r = ask(kQuestion);
  r.model = "small";
  Response out = p.run(r);
  EXPECT_FALSE(out.routed);
  EXPECT_TRUE(out.features.empty());
  EXPECT_EQ(out.model, "small");
  r = ask(kQuestion);
  r.flow = Flow::naive;
  out = p.run(r);
  EXPECT_FALSE(out.routed);
  EXPECT_EQ(out.model, "large");
  // A request's temperature overrides the router's.
  r = ask("hello");
  r.temperature = 0.0f;
  r.use_cache = false;
  out = p.run(r);
  EXPECT_TRUE(out.routed);
  EXPECT_FLOAT_EQ(out.decision.temperature, 0.0f);
  p.shutdown();
  for (const auto& row : log_rows(c.request_log)) {
    if (row["router_decision"]["routed"].get<bool>()) {
      EXPECT_EQ(row["router_features"].size(), router::kFeatures);
    }
  }
}

TEST(PipelineRouter, RouterModelsOffTheLadderAreReported) {
  RUVLLM_REQUIRE_VECTORS();
  const std::string dir = fresh_dir("pipeline-router-check");
  Config c = tiny_config(dir);
  {
    const auto glove = embed::open_word_vectors();
    c.router_file = train_router(*glove, dir + "/router.json");
  }
  // No router.models: "r-small" and "r-large" are not [[model]] names.
  const auto issues = check_config(c);
  ASSERT_FALSE(issues.empty());
  EXPECT_TRUE(std::any_of(issues.begin(), issues.end(), [](const ConfigIssue& i) { return i.key == "router.models"; }));
  try {
    Pipeline p(c);
    FAIL() << "a router whose models are not on the ladder was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("router.models"), std::string::npos) << e.what();
  }
  c.router_models = {{"r-small", "small"}, {"r-large", "large"}};
  EXPECT_TRUE(check_config(c).empty());
  c.router_file = dir + "/absent.json";
  const auto missing = check_config(c);
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing[0].key, "router.file");
}

}  // namespace
}  // namespace ruvllm::pipeline
