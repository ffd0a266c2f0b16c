// One loaded model's generation loop: a llama.cpp context with `parallel` sequences, fed by a
// queue, decoding every active sequence in one batch per step (continuous batching).
#pragma once

#include <llama.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "backend.h"
#include "model.h"
#include "prefix_cache.h"
#include "sampling.h"
#include "text.h"

namespace ruvllm::llm::detail {

struct RunnerParams {
  int threads = 0;
  int context = 4096;  // per sequence; capped at the model's training context
  int parallel = 4;
  int batch = 512;
  std::size_t cache_bytes = std::size_t{1} << 30;
  // Shared by every model of an engine: decode steps take turns on the engine's threads. Two
  // llama.cpp thread pools on the same cores spin against each other (measured: 4 clients over
  // two models on 2 cores ran at 1.06x the naive flow's throughput instead of ~2x).
  std::shared_ptr<std::mutex> compute;
  std::function<void(std::string_view where)> inject_fault;  // EngineParams::inject_fault
};

class Runner {
 public:
  Runner(std::shared_ptr<const LoadedModel> model, const RunnerParams& params);
  ~Runner();  // finishes every queued and active request, then stops
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Validates and tokenizes on the calling thread (throws Error); generation happens on the
  // runner's thread, where `on_text` is called.
  std::future<GenerateResult> submit(GenerateRequest request);

  CacheStats cache_stats() const;
  int context_per_sequence() const { return context_; }

 private:
  using Clock = std::chrono::steady_clock;

  struct Job {
    GenerateRequest request;
    std::vector<llama_token> tokens;  // the whole prompt
    std::size_t cache_boundary = 0;   // tokens[0, boundary) is a declared reusable prefix
    std::promise<GenerateResult> promise;
    Clock::time_point submitted;
  };

  struct Active {
    std::unique_ptr<Job> job;
    SamplerPtr sampler;
    TextAssembler text;
    std::vector<TokenLogprob> logprobs;
    std::size_t save_at = 0;  // position whose state goes into the prefix cache (0 = none)
    std::size_t cached = 0;   // prompt tokens reused instead of prefilled
    int generated = 0;
    llama_token next = 0;   // sampled, to be decoded in the next step
    bool decoding = false;  // prompt done; feeding sampled tokens
    bool declined = false;  // on_text returned false: call it no more
    int logits_index = -1;  // row of this sequence's logits in the last batch
    Clock::time_point admitted, prefilled, first_token;
  };

  struct Slot {
    llama_seq_id seq = 0;
    std::vector<llama_token> memory;  // tokens whose state the sequence holds
    uint64_t last_used = 0;
    std::unique_ptr<Active> active;
  };

  void tokenize_split(Job& job, std::string_view text, std::size_t prefix_bytes) const;
  void loop();
  bool turn(uint64_t& tick);  // one pass of the loop; false once stopping with nothing left
  // Takes `job` from its argument once it owns a slot; a throw before that leaves it there.
  void admit(std::unique_ptr<Job>& job, uint64_t tick);
  bool step();  // one decode over all active sequences; false when nothing was active
  void sample(Slot& slot);
  TokenLogprob logprob_of(int logits_index, llama_token token, int top_n);
  void finish(Slot& slot, Finish reason);
  void fail(Slot& slot, const std::exception_ptr& error);
  void save_state(Slot& slot);
  void clear(Slot& slot);

  std::shared_ptr<const LoadedModel> model_;
  RunnerParams params_;
  ThreadPool pool_;  // outlives the context that uses it (declared before it)
  std::unique_ptr<llama_context, void (*)(llama_context*)> ctx_;
  int context_ = 0;
  bool partial_removal_ = true;  // false for recurrent/hybrid memory: no rollback of conv state
  PrefixCache cache_;
  std::vector<Slot> slots_;
  std::optional<Batch> batch_;
  std::vector<std::size_t> fed_;  // per slot: tokens it has in the current batch (scratch)
  std::string piece_;             // bytes of the last sampled token (scratch)
  std::vector<int32_t> order_;    // vocabulary indices for top-N log-probabilities (scratch)

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool stopping_ = false;
  CacheStats stats_;  // guarded by mutex_

  std::thread worker_;  // last: starts after everything above exists
};

}  // namespace ruvllm::llm::detail
