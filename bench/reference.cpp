#include "reference.h"

#include <ggml-cpu.h>
#include <llama.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <vector>

namespace ruvllm::bench {

struct RawLlama::State {
  llama_model* model = nullptr;  // not owned
  llama_context* ctx = nullptr;
  ggml_threadpool* pool = nullptr;
  int n_vocab = 0;
  ~State() {
    if (ctx) llama_free(ctx);
    if (pool) ggml_threadpool_free(pool);
  }
};

RawLlama::RawLlama(llama_model* model, int threads, int n_ctx, int n_batch) : state_(std::make_unique<State>()) {
  state_->model = model;
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(n_ctx);
  cp.n_batch = cp.n_ubatch = static_cast<uint32_t>(n_batch);
  cp.n_threads = cp.n_threads_batch = threads;
  cp.no_perf = true;
  state_->ctx = llama_init_from_model(state_->model, cp);
  if (!state_->ctx) throw std::runtime_error("reference: cannot create a context");
  // The same persistent pool as the engine's (poll 0: idle workers sleep), so that neither side's
  // idle threads spin while the other is measured.
  ggml_threadpool_params tp = ggml_threadpool_params_default(threads);
  tp.poll = 0;
  state_->pool = ggml_threadpool_new(&tp);
  llama_attach_threadpool(state_->ctx, state_->pool, nullptr);
  state_->n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(state_->model));
}

RawLlama::~RawLlama() = default;

double RawLlama::prompt_seconds(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<llama_token> tokens(static_cast<std::size_t>(n));
  for (auto& t : tokens) t = static_cast<llama_token>(rng() % static_cast<uint32_t>(state_->n_vocab));
  llama_memory_clear(llama_get_memory(state_->ctx), false);
  const auto start = std::chrono::steady_clock::now();
  const int n_batch = static_cast<int>(llama_n_batch(state_->ctx));
  for (int i = 0; i < n; i += n_batch) {
    const int len = std::min(n_batch, n - i);
    if (llama_decode(state_->ctx, llama_batch_get_one(tokens.data() + i, len)) != 0) {
      throw std::runtime_error("reference: llama_decode failed");
    }
  }
  llama_synchronize(state_->ctx);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double RawLlama::generate_seconds(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  llama_token token = static_cast<llama_token>(rng() % static_cast<uint32_t>(state_->n_vocab));
  llama_memory_clear(llama_get_memory(state_->ctx), false);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    if (llama_decode(state_->ctx, llama_batch_get_one(&token, 1)) != 0) {
      throw std::runtime_error("reference: llama_decode failed");
    }
    llama_synchronize(state_->ctx);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

LlamaBenchResult run_llama_bench(const std::string& binary, const std::string& model, int threads, int reps,
                                 bool use_mmap) {
  const std::string cmd = "'" + binary + "' -m '" + model + "' -t " + std::to_string(threads) + " -p 512 -n 64 -r " +
                          std::to_string(reps) + " -lm " + (use_mmap ? "mmap" : "none") + " -o json 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) throw std::runtime_error("cannot run " + binary);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe.get())) out.append(buf, n);
  LlamaBenchResult result;
  try {
    for (const auto& row : nlohmann::json::parse(out)) {
      if (row.value("n_prompt", 0) > 0) result.prompt_tps = row.at("avg_ts").get<double>();
      if (row.value("n_gen", 0) > 0) result.generate_tps = row.at("avg_ts").get<double>();
    }
  } catch (const std::exception& e) {
    throw std::runtime_error("llama-bench gave no JSON (" + std::string(e.what()) + "): " + out.substr(0, 400));
  }
  return result;
}

}  // namespace ruvllm::bench
