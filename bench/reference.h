// The reference for `bench models`: llama.cpp's C API driven directly, the way llama-bench does
// it (pp: one batch of random tokens, logits for the last; tg: single-token decodes, no sampling),
// with nothing of ruvllm in between: same file, threads, context size and thread-pool settings.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

struct llama_model;

namespace ruvllm::bench {

class RawLlama {
 public:
  // A context of its own on `model` (not owned: the engine's loaded weights, so that the
  // comparison is of the loops alone, not of where two copies of the weights happen to sit in memory).
  RawLlama(llama_model* model, int threads, int n_ctx, int n_batch);
  ~RawLlama();
  RawLlama(const RawLlama&) = delete;
  RawLlama& operator=(const RawLlama&) = delete;

  // Seconds for one prefill of `n` random tokens from an empty context.
  double prompt_seconds(int n, uint32_t seed);
  // Seconds for `n` single-token decodes from an empty context.
  double generate_seconds(int n, uint32_t seed);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Runs llama.cpp's own llama-bench binary on the file; returns {pp tok/s, tg tok/s} (avg_ts), or
// throws with its output when it fails.
struct LlamaBenchResult {
  double prompt_tps = 0, generate_tps = 0;
};
LlamaBenchResult run_llama_bench(const std::string& binary, const std::string& model, int threads, int reps,
                                 bool use_mmap);

}  // namespace ruvllm::bench
