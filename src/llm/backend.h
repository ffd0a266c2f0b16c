// Process-wide llama.cpp set-up and log routing, shared by everything in src/llm.
#pragma once

#include <ggml-cpu.h>
#include <llama.h>

#include <memory>
#include <string>

namespace ruvllm::llm::detail {

// Initialises the llama.cpp backends once per process and routes llama.cpp's log through ruvllm:
// errors go to stderr (everything with RUVLLM_LLAMA_LOG=debug), and errors are also
// collected for the calling thread while a LogCapture is alive, so that a failed load can say why.
void ensure_backend();

// Collects llama.cpp error lines logged on this thread during its lifetime.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  // The collected lines, joined with "; ", or `fallback` when there were none.
  std::string message(const std::string& fallback) const;

 private:
  std::string lines_;
  std::string* previous_;
};

// A persistent ggml CPU thread pool for one llama.cpp context. ggml is built without OpenMP: with
// OpenMP, two threads that each drive a context (a runner and an embedder, or two models) make
// libgomp throttle its barriers and decode runs ~30 % slower (measured: bench models, 350M Q4_0).
// poll = 0: idle workers sleep instead of spinning, so an idle context never slows a busy one.
class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  // Attaches the pool to `ctx` for both generation and batch work.
  void attach(llama_context* ctx) const { llama_attach_threadpool(ctx, pool_.get(), nullptr); }

 private:
  std::unique_ptr<ggml_threadpool, void (*)(ggml_threadpool*)> pool_;
};

// An owned llama_batch with room for `capacity` tokens of one sequence id each.
class Batch {
 public:
  explicit Batch(int capacity) : batch_(llama_batch_init(capacity, 0, 1)), capacity_(capacity) {}
  ~Batch() { llama_batch_free(batch_); }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  void clear() { batch_.n_tokens = 0; }
  // Appends a token; returns its row (the index of its logits when `output` is set).
  int add(llama_token token, llama_pos pos, llama_seq_id seq, bool output) {
    const int i = batch_.n_tokens++;
    batch_.token[i] = token;
    batch_.pos[i] = pos;
    batch_.n_seq_id[i] = 1;
    batch_.seq_id[i][0] = seq;
    batch_.logits[i] = output;
    return i;
  }
  int size() const { return batch_.n_tokens; }
  int capacity() const { return capacity_; }
  const llama_batch& get() const { return batch_; }

 private:
  llama_batch batch_;
  int capacity_;
};

// Threads to use when the caller asked for 0 ("all"): one per hardware thread.
int default_threads(int requested);

}  // namespace ruvllm::llm::detail
