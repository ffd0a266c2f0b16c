// The engine against llama.cpp driven directly (brute force), on the real trained tiny model and
// on a generated LFM2 of the real architecture.
#include <gguf.h>
#include <gtest/gtest.h>
#include <llama.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>

#include "fixtures.h"
#include "llm/text.h"
#include "ruvllm/llm.h"

namespace ruvllm::llm {
namespace {

using test::tiny_lfm2;

constexpr const char* kStories = "models/stories260K.gguf";

EngineParams one_model(const std::string& name, const std::string& path, int parallel = 1, int context = 2048) {
  EngineParams p;
  p.ladder = {{name, path, "", 1.0, 0}};
  p.parallel = parallel;
  p.context = context;
  p.threads = 2;
  return p;
}

GenerateRequest greedy(std::string prompt, int max_tokens) {
  GenerateRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0;
  return r;
}

// Greedy decoding written directly on llama.cpp's API: argmax of the logits, token by token.
std::string reference_greedy(const std::string& path, const std::string& prompt, int max_tokens) {
  llama_model_params mp = llama_model_default_params();
  std::unique_ptr<llama_model, void (*)(llama_model*)> model(llama_model_load_from_file(path.c_str(), mp),
                                                             llama_model_free);
  const llama_vocab* vocab = llama_model_get_vocab(model.get());
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = 512;
  cp.n_threads = cp.n_threads_batch = 2;
  std::unique_ptr<llama_context, void (*)(llama_context*)> ctx(llama_init_from_model(model.get(), cp), llama_free);
  std::vector<llama_token> tokens(prompt.size() + 8);
  tokens.resize(
      static_cast<std::size_t>(llama_tokenize(vocab, prompt.c_str(), static_cast<int32_t>(prompt.size()), tokens.data(),
                                              static_cast<int32_t>(tokens.size()), true, true)));
  std::string text;
  llama_batch batch = llama_batch_get_one(tokens.data(), static_cast<int32_t>(tokens.size()));
  llama_token next = 0;
  for (int i = 0; i < max_tokens; ++i) {
    if (llama_decode(ctx.get(), batch) != 0) throw std::runtime_error("decode failed");
    const float* logits = llama_get_logits_ith(ctx.get(), -1);
    next = static_cast<llama_token>(std::max_element(logits, logits + llama_vocab_n_tokens(vocab)) - logits);
    if (llama_vocab_is_eog(vocab, next)) break;
    char piece[256];
    const int n = llama_token_to_piece(vocab, next, piece, sizeof piece, 0, false);
    text.append(piece, static_cast<std::size_t>(std::max(0, n)));
    batch = llama_batch_get_one(&next, 1);
  }
  return text;
}

// ---- the real trained model ---------------------------------------------------------------------

TEST(Stories, GreedyWritesEnglishAndMatchesDirectLlamaCpp) {
  RUVLLM_REQUIRE_SHARED(path, kStories);
  Engine engine(one_model("stories", path));
  const auto result = engine.generate("stories", greedy("Once upon a time", 48));
  // The model's known opening: a TinyStories sentence about a little boy or girl.
  EXPECT_EQ(result.text.rfind(", there was a little", 0), 0u) << result.text;
  EXPECT_EQ(result.text, reference_greedy(path, "Once upon a time", 48));
  EXPECT_FALSE(result.generated_weights);
}

TEST(Stories, StreamingYieldsExactlyTheFinalTextAndSeedsRepeat) {
  RUVLLM_REQUIRE_SHARED(path, kStories);
  Engine engine(one_model("stories", path));
  GenerateRequest r = greedy("Once upon a time, there was a", 60);
  r.sampling.temperature = 0.9f;
  r.sampling.seed = 5;
  std::string streamed;
  int pieces = 0;
  r.on_text = [&](std::string_view piece) {
    streamed.append(piece);
    ++pieces;
    return true;
  };
  const auto first = engine.generate("stories", r);
  EXPECT_EQ(streamed, first.text);
  EXPECT_GT(pieces, 5);
  r.on_text = nullptr;
  EXPECT_EQ(engine.generate("stories", r).text, first.text);  // same seed, same text
  r.sampling.seed = 6;
  EXPECT_NE(engine.generate("stories", r).text, first.text);
}

TEST(Stories, StopStringEndsTheTextBeforeIt) {
  RUVLLM_REQUIRE_SHARED(path, kStories);
  Engine engine(one_model("stories", path));
  const std::string full = engine.generate("stories", greedy("Once upon a time", 48)).text;
  ASSERT_GT(full.size(), 30u);
  const std::string stop = full.substr(20, 5);
  GenerateRequest r = greedy("Once upon a time", 48);
  r.stop = {stop, "zzzz-not-there"};
  std::string streamed;
  r.on_text = [&](std::string_view p) {
    streamed.append(p);
    return true;
  };
  const auto result = engine.generate("stories", r);
  EXPECT_EQ(result.finish, Finish::stop);
  EXPECT_EQ(result.text, full.substr(0, full.find(stop)));
  EXPECT_EQ(streamed, result.text);
}

TEST(Stories, TokenCountsAreExact) {
  RUVLLM_REQUIRE_SHARED(path, kStories);
  Engine engine(one_model("stories", path));
  GenerateRequest r = greedy("Once upon a time, in a small town", 9);
  r.ignore_eos = true;
  r.logprobs = 3;
  const auto result = engine.generate("stories", r);
  EXPECT_EQ(result.finish, Finish::length);
  EXPECT_EQ(result.completion_tokens, 9);
  EXPECT_EQ(result.prompt_tokens, static_cast<int>(engine.tokenize("stories", r.prompt).size()));
  ASSERT_EQ(result.logprobs.size(), 9u);
  for (const auto& lp : result.logprobs) {
    ASSERT_EQ(lp.top.size(), 3u);
    EXPECT_EQ(lp.token, lp.top[0].first);  // greedy picks the most likely token
    EXPECT_FLOAT_EQ(lp.logprob, lp.top[0].second);
    EXPECT_LE(lp.top[0].second, 0.0f);
    EXPECT_GE(lp.top[0].second, lp.top[1].second);
  }
}

TEST(Stories, CancellationByCallbackAndByStopToken) {
  RUVLLM_REQUIRE_SHARED(path, kStories);
  Engine engine(one_model("stories", path));
  GenerateRequest r = greedy("Once upon a time", 200);
  r.ignore_eos = true;
  int calls = 0;
  r.on_text = [&](std::string_view) { return ++calls < 3; };
  auto result = engine.generate("stories", r);
  EXPECT_EQ(result.finish, Finish::cancelled);
  EXPECT_EQ(calls, 3);
  EXPECT_LT(result.completion_tokens, 20);

  std::stop_source source;
  r.cancel = source.get_token();
  r.on_text = [&](std::string_view) {
    source.request_stop();  // as another thread would, e.g. when a client disconnects
    return true;
  };
  result = engine.generate("stories", r);
  EXPECT_EQ(result.finish, Finish::cancelled);
  EXPECT_LT(result.completion_tokens, 5);

  r.on_text = nullptr;  // cancelled before it starts: no tokens
  result = engine.generate("stories", r);
  EXPECT_EQ(result.finish, Finish::cancelled);
  EXPECT_EQ(result.completion_tokens, 0);
}

TEST(Stories, ACancelledQueuedRequestLeavesTheQueueAtOnce) {
  RUVLLM_REQUIRE_SHARED(path, kStories);
  Engine engine(one_model("stories", path, 1));
  // A slow consumer keeps the only sequence busy for about a second (2 ms per token).
  GenerateRequest busy = greedy("Once upon a time", 500);
  busy.ignore_eos = true;
  busy.on_text = [](std::string_view) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return true;
  };
  auto running = engine.submit("stories", busy);
  std::stop_source source;
  GenerateRequest waiting = greedy("The dog", 10);
  waiting.cancel = source.get_token();
  auto queued = engine.submit("stories", waiting);
  source.request_stop();
  ASSERT_EQ(queued.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(queued.get().finish, Finish::cancelled);
  EXPECT_EQ(running.wait_for(std::chrono::seconds(0)), std::future_status::timeout);  // still generating
  EXPECT_EQ(running.get().completion_tokens, 500);
}

TEST(Stories, BatchedRequestsGiveTheSameTextAsOneAtATime) {
  RUVLLM_REQUIRE_SHARED(path, kStories);
  const std::vector<std::string> prompts = {"Once upon a time", "The little dog", "Lily wanted to",
                                            "One day, Tom",     "The sun was",    "Mom said"};
  Engine single(one_model("stories", path, 1));
  std::vector<std::string> expected;
  for (const auto& p : prompts) expected.push_back(single.generate("stories", greedy(p, 40)).text);

  // Six requests on four sequences (two wait their turn), and a batch of 8 tokens: prompts are
  // prefilled in chunks between the decode steps of the others.
  EngineParams params = one_model("stories", path, 4);
  params.batch = 8;
  Engine batched(params);
  std::vector<std::future<GenerateResult>> futures;
  for (const auto& p : prompts) futures.push_back(batched.submit("stories", greedy(p, 40)));
  for (std::size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(futures[i].get().text, expected[i]) << prompts[i];
}

TEST(Stories, RepeatedPrefixIsReusedNotRecomputed) {
  RUVLLM_REQUIRE_SHARED(path, kStories);
  Engine engine(one_model("stories", path, 1));
  const std::string prefix = "Once upon a time, there was a little girl named Lily. She loved to play outside. ";
  GenerateRequest a = greedy(prefix + "One day", 8);
  a.cache_prefix = prefix.size();
  GenerateRequest b = greedy(prefix + "Her mom", 8);
  b.cache_prefix = prefix.size();
  const auto ra = engine.generate("stories", a);
  const auto rb = engine.generate("stories", b);
  const int prefix_tokens = static_cast<int>(engine.tokenize("stories", prefix).size());
  EXPECT_EQ(ra.cached_tokens, 0);
  EXPECT_GE(rb.cached_tokens, prefix_tokens);
  Engine cold(one_model("stories", path, 1));
  EXPECT_EQ(rb.text, cold.generate("stories", b).text);
}

// ---- the generated LFM2 (hybrid: short-conv + attention) ------------------------------------------

TEST(Lfm2, TinyGeneratedModelLoadsAndGenerates) {
  Engine engine(one_model("tiny", tiny_lfm2()));
  const ModelInfo info = engine.info("tiny");
  EXPECT_EQ(info.architecture, "lfm2");
  EXPECT_TRUE(info.hybrid);
  EXPECT_TRUE(info.generated_weights);
  GenerateRequest r;
  r.messages = {{"system", "You are terse."}, {"user", "Name a colour."}};
  r.max_tokens = 12;
  r.ignore_eos = true;
  r.sampling.seed = 1;
  const auto result = engine.generate("tiny", r);
  EXPECT_EQ(result.completion_tokens, 12);
  EXPECT_TRUE(result.generated_weights);
  EXPECT_EQ(detail::first_invalid_utf8(result.text), std::nullopt);
  EXPECT_EQ(engine.info("tiny").n_params, lfm2_parameter_count("tiny"));  // counted by llama.cpp
}

// A throw on a runner's thread (an allocation failure in admission or around a decode step) fails
// the request it hit with that error; the runner keeps serving, and what it serves next is what it
// served before. Without the runner's catch this test ends in std::terminate.
TEST(Lfm2, AFailureOnTheRunnerThreadFailsOnlyItsRequestAndTheEngineCarriesOn) {
  std::atomic<int> fail_admit{0}, fail_step{0};
  EngineParams p = one_model("tiny", tiny_lfm2(), 2);
  p.inject_fault = [&](std::string_view where) {
    if (where == "admit" && fail_admit.exchange(0)) throw std::bad_alloc();
    if (where == "step" && fail_step.exchange(0)) throw std::bad_alloc();
  };
  Engine engine(std::move(p));
  const auto before = engine.generate("tiny", greedy("The quick brown fox", 10));
  fail_admit = 1;
  EXPECT_THROW(engine.generate("tiny", greedy("The quick brown fox", 10)), std::bad_alloc);
  fail_step = 1;
  EXPECT_THROW(engine.generate("tiny", greedy("The quick brown fox", 10)), std::bad_alloc);
  const auto after = engine.generate("tiny", greedy("The quick brown fox", 10));
  EXPECT_EQ(after.text, before.text);
  EXPECT_EQ(after.completion_tokens, before.completion_tokens);
  EXPECT_EQ(fail_admit, 0);
  EXPECT_EQ(fail_step, 0);
}

// Restoring a saved prefix state must leave the model exactly where a cold prefill would: for a
// hybrid model that includes the conv state, which cannot be recomputed from the KV cache.
TEST(Lfm2, RestoredPrefixGivesTheSameLogitsAsColdPrefill) {
  GenerateRequest r;
  std::string system = "You answer questions about the memory below.\n";
  for (int i = 0; i < 40; ++i)
    system += "Fact " + std::to_string(i) + ": item " + std::to_string(i * 7) + " is blue.\n";
  r.messages = {{"system", system}, {"user", "Which item is blue?"}};
  r.cache_prefix = 1;
  r.max_tokens = 6;
  r.ignore_eos = true;
  r.sampling.temperature = 0;
  r.logprobs = 8;

  Engine engine(one_model("tiny", tiny_lfm2()));
  const auto cold = engine.generate("tiny", r);
  GenerateRequest other = r;
  other.messages[1].content = "Is anything red?";
  engine.generate("tiny", other);  // the sequence now holds another suffix: reuse must come from the cache
  const auto warm = engine.generate("tiny", r);
  EXPECT_EQ(cold.cached_tokens, 0);
  EXPECT_GT(warm.cached_tokens, 400);
  EXPECT_LT(warm.cached_tokens, warm.prompt_tokens);
  EXPECT_EQ(warm.text, cold.text);
  ASSERT_EQ(warm.logprobs.size(), cold.logprobs.size());
  for (std::size_t i = 0; i < cold.logprobs.size(); ++i) {
    for (std::size_t k = 0; k < cold.logprobs[i].top.size(); ++k) {
      EXPECT_EQ(warm.logprobs[i].top[k].first, cold.logprobs[i].top[k].first);
      EXPECT_NEAR(warm.logprobs[i].top[k].second, cold.logprobs[i].top[k].second, 1e-4);
    }
  }

  // And against a fresh engine that prefills the whole prompt in one go, no prefix split at all.
  GenerateRequest plain = r;
  plain.cache_prefix = 0;
  Engine fresh(one_model("tiny", tiny_lfm2()));
  const auto reference = fresh.generate("tiny", plain);
  EXPECT_EQ(reference.text, warm.text);
  for (std::size_t k = 0; k < reference.logprobs[0].top.size(); ++k) {
    EXPECT_EQ(warm.logprobs[0].top[k].first, reference.logprobs[0].top[k].first);
    EXPECT_NEAR(warm.logprobs[0].top[k].second, reference.logprobs[0].top[k].second, 2e-2);
  }
  const auto stats = engine.cache_stats("tiny");
  EXPECT_GE(stats.entries, 1u);
  EXPECT_GT(stats.bytes, 0u);
}

TEST(Lfm2, KeepStateResumesTheNextTurnWithoutPrefill) {
  Engine engine(one_model("tiny", tiny_lfm2()));
  GenerateRequest turn1;
  turn1.prompt = "User: hello there\nAssistant:";
  turn1.max_tokens = 5;
  turn1.ignore_eos = true;
  turn1.sampling.temperature = 0;
  turn1.logprobs = 1;  // returns the generated token ids
  turn1.keep_state = true;
  const auto r1 = engine.generate("tiny", turn1);
  engine.generate("tiny", greedy("an unrelated request takes the only sequence", 3));

  GenerateRequest turn2;
  turn2.prompt_tokens = engine.tokenize("tiny", turn1.prompt);
  for (const auto& lp : r1.logprobs) turn2.prompt_tokens.push_back(lp.token);
  const auto more = engine.tokenize("tiny", "\nUser: and then?\nAssistant:");
  turn2.prompt_tokens.insert(turn2.prompt_tokens.end(), more.begin() + 1, more.end());  // no second BOS
  turn2.max_tokens = 4;
  turn2.ignore_eos = true;
  turn2.sampling.temperature = 0;
  const auto r2 = engine.generate("tiny", turn2);
  // Everything turn 1 decoded is restored: its prompt and all generated tokens but the last,
  // which was sampled and never fed back.
  EXPECT_EQ(r2.cached_tokens, r1.prompt_tokens + r1.completion_tokens - 1);
  Engine fresh(one_model("tiny", tiny_lfm2()));
  EXPECT_EQ(fresh.generate("tiny", turn2).text, r2.text);
}

// ---- embeddings ----------------------------------------------------------------------------------

// Mean of the per-token embeddings from a context without pooling, L2-normalised: brute force.
std::vector<float> reference_mean_embedding(const std::string& path, const std::string& text) {
  llama_model_params mp = llama_model_default_params();
  std::unique_ptr<llama_model, void (*)(llama_model*)> model(llama_model_load_from_file(path.c_str(), mp),
                                                             llama_model_free);
  const llama_vocab* vocab = llama_model_get_vocab(model.get());
  std::vector<llama_token> tokens(text.size() + 8);
  tokens.resize(
      static_cast<std::size_t>(llama_tokenize(vocab, text.c_str(), static_cast<int32_t>(text.size()), tokens.data(),
                                              static_cast<int32_t>(tokens.size()), true, false)));
  llama_context_params cp = llama_context_default_params();
  cp.embeddings = true;
  cp.pooling_type = LLAMA_POOLING_TYPE_NONE;
  cp.n_ctx = cp.n_batch = cp.n_ubatch = static_cast<uint32_t>(tokens.size() + 16);
  cp.n_threads = cp.n_threads_batch = 2;
  std::unique_ptr<llama_context, void (*)(llama_context*)> ctx(llama_init_from_model(model.get(), cp), llama_free);
  llama_batch batch = llama_batch_init(static_cast<int32_t>(tokens.size()), 0, 1);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    batch.token[i] = tokens[i];
    batch.pos[i] = static_cast<llama_pos>(i);
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = true;
  }
  batch.n_tokens = static_cast<int32_t>(tokens.size());
  EXPECT_EQ(llama_decode(ctx.get(), batch), 0);
  const int n_embd = llama_model_n_embd(model.get());
  std::vector<double> sum(static_cast<std::size_t>(n_embd), 0.0);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const float* e = llama_get_embeddings_ith(ctx.get(), static_cast<int32_t>(i));
    for (int d = 0; d < n_embd; ++d) sum[static_cast<std::size_t>(d)] += e[d];
  }
  llama_batch_free(batch);
  double norm = 0;
  for (double v : sum) norm += v * v;
  std::vector<float> out;
  for (double v : sum) out.push_back(static_cast<float>(v / std::sqrt(norm)));
  return out;
}

TEST(Embeddings, MeanPoolingMatchesBruteForceOverEveryToken) {
  // Longer than llama.cpp's default 512-token ubatch: a context with a smaller ubatch would pool
  // only the last chunk.
  std::string text;
  for (int i = 0; i < 160; ++i) text += "memory node " + std::to_string(i) + " links to the next. ";
  Engine engine(one_model("tiny", tiny_lfm2()));
  const auto tokens = engine.tokenize("tiny", text, false);
  ASSERT_GT(tokens.size(), 600u);
  const auto ours = engine.embed("tiny", text);
  const auto reference = reference_mean_embedding(tiny_lfm2(), text);
  ASSERT_EQ(ours.size(), reference.size());
  double dot = 0, max_diff = 0;
  for (std::size_t i = 0; i < ours.size(); ++i) {
    dot += static_cast<double>(ours[i]) * reference[i];
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(ours[i] - reference[i])));
  }
  EXPECT_GT(dot, 0.9999);
  EXPECT_LT(max_diff, 1e-3);
  EXPECT_EQ(engine.embed("tiny", text), ours);  // deterministic, and the state is cleared between texts
  EXPECT_NE(engine.embed("tiny", "a different text"), ours);
}

TEST(Embeddings, BadTextIsAClearError) {
  Engine engine(one_model("tiny", tiny_lfm2()));
  EXPECT_THROW(engine.embed("tiny", ""), Error);
  EXPECT_THROW(engine.embed("tiny", "bad \xC3 utf-8"), Error);
  std::string huge;
  for (int i = 0; i < 3000; ++i) huge += "word" + std::to_string(i) + " ";
  try {
    engine.embed("tiny", huge);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds the embedding window"), std::string::npos) << e.what();
  }
  EXPECT_EQ(engine.embed("tiny", "still works").size(), 128u);
}

// ---- bad input -------------------------------------------------------------------------------------

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("UNEXPECTED EXCEPTION TYPE: ") + e.what();
  }
  return "NO ERROR";
}

std::string load_error(const std::string& path) {
  return error_of([&] {
    Engine engine(one_model("m", path));
    engine.load("m");
  });
}

TEST(BadInput, BrokenModelFilesAreClearErrors) {
  EXPECT_NE(load_error("/nonexistent/model.gguf").find("not found"), std::string::npos);
  EXPECT_NE(load_error(test::write_file("notes.txt", "just some text, not a model")).find("not a GGUF"),
            std::string::npos);
  EXPECT_NE(load_error(test::write_file("empty.gguf", "")).find("not a GGUF"), std::string::npos);
  const std::string model = test::read_file(tiny_lfm2());
  EXPECT_NE(load_error(test::write_file("truncated.gguf", model.substr(0, model.size() / 2))).find("truncated"),
            std::string::npos);
  EXPECT_NE(load_error(test::write_file("corrupt.gguf", "GGUF" + std::string(64, '\x7f'))).find("corrupt"),
            std::string::npos);

  // A well-formed GGUF of an architecture llama.cpp does not know.
  std::unique_ptr<gguf_context, void (*)(gguf_context*)> g(gguf_init_empty(), gguf_free);
  gguf_set_val_str(g.get(), "general.architecture", "martian-transformer");
  const std::string alien = test::tmp_dir() + "/alien.gguf";
  ASSERT_TRUE(gguf_write_to_file(g.get(), alien.c_str(), false));
  const std::string alien_error = load_error(alien);
  EXPECT_NE(alien_error.find("martian-transformer"), std::string::npos) << alien_error;
  EXPECT_NE(alien_error.find("unknown model architecture"), std::string::npos) << alien_error;
  EXPECT_THROW(inspect_model(alien), Error);
}

TEST(BadInput, InvalidRequestsAreClearErrorsAndTheEngineCarriesOn) {
  Engine engine(one_model("tiny", tiny_lfm2(), 1, 64));
  const auto bad = [&](const std::function<void(GenerateRequest&)>& edit) {
    GenerateRequest r = greedy("hello", 4);
    edit(r);
    return error_of([&] { engine.generate("tiny", r); });
  };
  EXPECT_NE(bad([](auto& r) { r.sampling.temperature = -0.5f; }).find("temperature"), std::string::npos);
  EXPECT_NE(bad([](auto& r) { r.sampling.temperature = std::nanf(""); }).find("temperature"), std::string::npos);
  EXPECT_NE(bad([](auto& r) { r.sampling.top_p = 1.5f; }).find("top_p"), std::string::npos);
  EXPECT_NE(bad([](auto& r) { r.sampling.top_p = 0.0f; }).find("top_p"), std::string::npos);
  EXPECT_NE(bad([](auto& r) { r.sampling.top_k = -1; }).find("top_k"), std::string::npos);
  EXPECT_NE(bad([](auto& r) { r.sampling.min_p = 1.0f; }).find("min_p"), std::string::npos);
  EXPECT_NE(bad([](auto& r) { r.sampling.repeat_penalty = 0.0f; }).find("repeat_penalty"), std::string::npos);
  EXPECT_NE(bad([](auto& r) { r.max_tokens = -1; }).find("max_tokens"), std::string::npos);
  EXPECT_NE(bad([](auto& r) { r.logprobs = 21; }).find("logprobs"), std::string::npos);
  EXPECT_NE(bad([](auto& r) { r.stop = {""}; }).find("stop"), std::string::npos);
  EXPECT_NE(bad([](auto& r) { r.prompt = "caf\xC3"; }).find("UTF-8"), std::string::npos);
  EXPECT_NE(bad([](auto& r) {
              r.prompt = "caf\xC3\xA9";
              r.cache_prefix = 4;
            }).find("splits"),
            std::string::npos);
  EXPECT_NE(bad([](auto& r) { r.cache_prefix = 99; }).find("cache_prefix"), std::string::npos);
  EXPECT_NE(bad([](auto& r) {
              r.prompt.clear();
              r.prompt_tokens = {1, 70000};
            }).find("vocabulary"),
            std::string::npos);
  EXPECT_NE(bad([](auto& r) {
              r.prompt.clear();
              r.messages = {{"user", "bad \xFF"}};
            }).find("UTF-8"),
            std::string::npos);
  EXPECT_NE(bad([](auto& r) {
              r.prompt.clear();
              for (int i = 0; i < 400; ++i) r.prompt += "word ";  // the context is 64, padded to 256
            }).find("holds"),
            std::string::npos);
  EXPECT_NE(error_of([&] { engine.generate("no-such-model", greedy("hi", 1)); }).find("unknown model"),
            std::string::npos);
  EXPECT_NE(error_of([&] { Engine e(EngineParams{}); }).find("empty"), std::string::npos);
  EXPECT_NE(error_of([&] {
              EngineParams p = one_model("a", tiny_lfm2());
              p.ladder.push_back(p.ladder.front());
              Engine e(p);
            }).find("twice"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              EngineParams p = one_model("a", tiny_lfm2());
              p.parallel = 0;
              Engine e(p);
            }).find("parallel"),
            std::string::npos);
  // Nothing above broke the engine.
  GenerateRequest ok = greedy("hello", 3);
  ok.ignore_eos = true;
  EXPECT_EQ(engine.generate("tiny", ok).completion_tokens, 3);
}

}  // namespace
}  // namespace ruvllm::llm
