#include "runner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "backend.h"
#include "common/utf8.h"

namespace ruvllm::llm::detail {
namespace {

int64_t micros(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

using common::require_utf8;

std::size_t common_prefix(const std::vector<llama_token>& a, const std::vector<llama_token>& b) {
  const auto [ia, ib] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  return static_cast<std::size_t>(ia - a.begin());
}

}  // namespace

Runner::Runner(std::shared_ptr<const LoadedModel> model, const RunnerParams& params)
    : model_(std::move(model)),
      params_(params),
      pool_(default_threads(params.threads)),
      ctx_(nullptr, llama_free),
      cache_(params.cache_bytes) {
  const int threads = default_threads(params_.threads);
  const int train = model_->info().n_ctx_train;
  const int context = train > 0 ? std::min(params_.context, train) : params_.context;

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(context) * static_cast<uint32_t>(params_.parallel);
  cp.n_seq_max = static_cast<uint32_t>(params_.parallel);
  cp.n_batch = static_cast<uint32_t>(params_.batch);
  cp.n_ubatch = static_cast<uint32_t>(params_.batch);
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  cp.no_perf = true;
  cp.kv_unified = false;  // each sequence its own KV stream: faster when prefixes are not shared
  LogCapture capture;
  ctx_.reset(llama_init_from_model(model_->get(), cp));
  if (!ctx_) {
    throw Error("cannot create a context for model '" + model_->spec().name +
                "': " + capture.message("out of memory?"));
  }
  pool_.attach(ctx_.get());
  context_ = static_cast<int>(llama_n_ctx_seq(ctx_.get()));
  params_.batch = static_cast<int>(llama_n_batch(ctx_.get()));  // llama.cpp caps it at the context size
  partial_removal_ = !(llama_model_is_recurrent(model_->get()) || llama_model_is_hybrid(model_->get()));

  batch_.emplace(params_.batch);
  slots_.resize(static_cast<std::size_t>(params_.parallel));
  fed_.resize(slots_.size());
  for (std::size_t i = 0; i < slots_.size(); ++i) slots_[i].seq = static_cast<llama_seq_id>(i);
  worker_ = std::thread([this] { loop(); });
}

Runner::~Runner() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
}

std::future<GenerateResult> Runner::submit(GenerateRequest request) {
  validate(request.sampling);
  if (request.logprobs < 0 || request.logprobs > 20) {
    throw Error("logprobs must be in [0, 20], got " + std::to_string(request.logprobs));
  }
  if (request.max_tokens < 0) {
    throw Error("max_tokens must be >= 0, got " + std::to_string(request.max_tokens));
  }
  for (const auto& s : request.stop) {
    if (s.empty()) throw Error("stop strings must not be empty");
    require_utf8(s, "stop string");
  }

  auto job = std::make_unique<Job>();
  const std::size_t n = request.cache_prefix;
  if (!request.messages.empty()) {
    for (std::size_t i = 0; i < request.messages.size(); ++i) {
      require_utf8(request.messages[i].role, "role of message " + std::to_string(i));
      require_utf8(request.messages[i].content, "content of message " + std::to_string(i));
    }
    if (n > request.messages.size()) {
      throw Error("cache_prefix (" + std::to_string(n) + ") exceeds the number of messages (" +
                  std::to_string(request.messages.size()) + ")");
    }
    std::string full = model_->render_chat(request.messages, true), prefix;
    if (n > 0) {
      const std::vector<ChatMessage> head(request.messages.begin(),
                                          request.messages.begin() + static_cast<std::ptrdiff_t>(n));
      prefix = model_->render_chat(head, false);
      // Only a prefix of the full rendering can be reused; templates that rewrite earlier turns
      // simply get no prefix reuse.
      if (!full.starts_with(prefix)) prefix.clear();
    }
    tokenize_split(*job, full, prefix.size());
  } else if (!request.prompt.empty()) {
    require_utf8(request.prompt, "prompt");
    if (n > request.prompt.size()) {
      throw Error("cache_prefix (" + std::to_string(n) + " bytes) exceeds the prompt length (" +
                  std::to_string(request.prompt.size()) + ")");
    }
    if (n < request.prompt.size() && (static_cast<unsigned char>(request.prompt[n]) & 0xC0) == 0x80) {
      throw Error("cache_prefix (" + std::to_string(n) + " bytes) splits a UTF-8 character");
    }
    tokenize_split(*job, request.prompt, n);
  } else {
    const int32_t n_vocab = model_->info().n_vocab;
    for (llama_token t : request.prompt_tokens) {
      if (t < 0 || t >= n_vocab) {
        throw Error("prompt token " + std::to_string(t) + " is outside the vocabulary [0, " + std::to_string(n_vocab) +
                    ")");
      }
    }
    if (n > request.prompt_tokens.size()) throw Error("cache_prefix exceeds the number of prompt tokens");
    job->tokens = request.prompt_tokens;
    job->cache_boundary = n;
  }
  if (job->tokens.empty()) throw Error("the prompt is empty");
  if (job->tokens.size() >= static_cast<std::size_t>(context_)) {
    throw Error("the prompt is " + std::to_string(job->tokens.size()) + " tokens but a sequence of model '" +
                model_->spec().name + "' holds " + std::to_string(context_) +
                " tokens (prompt + completion); shorten it or raise the context size");
  }
  job->request = std::move(request);
  job->submitted = Clock::now();
  auto future = job->promise.get_future();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw Error(ErrorCode::unavailable, "model '" + model_->spec().name + "' is being unloaded");
    queue_.push_back(std::move(job));
  }
  wake_.notify_one();
  return future;
}

void Runner::tokenize_split(Job& job, std::string_view text, std::size_t prefix_bytes) const {
  if (prefix_bytes == 0) {
    job.tokens = model_->tokenize(text, true, true);
    return;
  }
  // The prefix is tokenized on its own so that its tokens are the same in every request that
  // shares it, whatever follows.
  job.tokens = model_->tokenize(text.substr(0, prefix_bytes), true, true);
  job.cache_boundary = job.tokens.size();
  const auto tail = model_->tokenize(text.substr(prefix_bytes), false, true);
  job.tokens.insert(job.tokens.end(), tail.begin(), tail.end());
}

CacheStats Runner::cache_stats() const {
  std::lock_guard lock(mutex_);
  CacheStats stats = stats_;
  stats.entries = cache_.entries();
  stats.bytes = cache_.bytes();
  return stats;
}

// Nothing may escape this thread: an exception here would call std::terminate and take every
// model and the server with it. A failed admission fails its own request; a failure anywhere else
// in a turn leaves the sequences' state unknown, so it fails the active requests and clears them.
void Runner::loop() {
  uint64_t tick = 0;
  for (;;) {
    try {
      if (!turn(tick)) return;
    } catch (...) {
      const auto error = std::current_exception();
      for (auto& slot : slots_)
        if (slot.active) fail(slot, error);
    }
  }
}

bool Runner::turn(uint64_t& tick) {
  const auto any_active = [this] {
    return std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.active != nullptr; });
  };
  std::vector<std::unique_ptr<Job>> admitted, cancelled;
  {
    std::unique_lock lock(mutex_);
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || any_active(); });
    if (stopping_ && queue_.empty() && !any_active()) return false;
    // Requests cancelled while they wait leave the queue now, not when a sequence frees up.
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->request.cancel.stop_requested()) {
        cancelled.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    auto free_slots = std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.active; });
    while (free_slots-- > 0 && !queue_.empty()) {
      admitted.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  // Each popped job is answered here, one way or the other: dropped unanswered, its caller would
  // see a broken promise instead of the error.
  for (auto& job : cancelled) {
    try {
      GenerateResult result;
      result.model = model_->spec().name;
      result.finish = Finish::cancelled;
      result.prompt_tokens = static_cast<int>(job->tokens.size());
      result.generated_weights = model_->info().generated_weights;
      result.timings.queued = result.timings.total = micros(Clock::now() - job->submitted);
      job->promise.set_value(std::move(result));
    } catch (...) {
      job->promise.set_exception(std::current_exception());
    }
  }
  for (auto& job : admitted) {
    const Job* const submitted = job.get();
    try {
      if (params_.inject_fault) params_.inject_fault("admit");
      admit(job, ++tick);
    } catch (...) {
      if (job) {  // still ours: no slot holds it
        job->promise.set_exception(std::current_exception());
        continue;
      }
      for (auto& slot : slots_)
        if (slot.active && slot.active->job.get() == submitted) fail(slot, std::current_exception());
    }
  }
  for (auto& slot : slots_) {
    if (slot.active && slot.active->job->request.cancel.stop_requested()) finish(slot, Finish::cancelled);
  }
  step();
  return true;
}

void Runner::admit(std::unique_ptr<Job>& job, uint64_t tick) {
  const auto& tokens = job->tokens;
  // At least the last prompt token is decoded: its logits start the generation.
  const std::size_t limit = tokens.size() - 1;

  // The free slot that already holds the longest usable prefix of this prompt.
  Slot* best = nullptr;
  Slot* least_recent = nullptr;
  std::size_t best_keep = 0;
  for (auto& s : slots_) {
    if (s.active) continue;
    if (!least_recent || s.last_used < least_recent->last_used) least_recent = &s;
    std::size_t keep = std::min(common_prefix(s.memory, tokens), limit);
    // Hybrid/recurrent state cannot be cut back: only a pure extension of the memory is usable.
    if (keep < s.memory.size() && !partial_removal_) keep = 0;
    if (!best || keep > best_keep || (keep == best_keep && s.last_used < best->last_used)) {
      best = &s;
      best_keep = keep;
    }
  }
  Slot& slot = *best;  // admit() is only called with a free slot available
  std::size_t reuse = best_keep;
  Slot* target = best;
  if (auto hit = cache_.find(tokens, limit); hit && hit->tokens > best_keep) {
    target = least_recent;
    clear(*target);
    if (llama_state_seq_set_data(ctx_.get(), hit->state.data(), hit->state.size(), target->seq) == 0) {
      std::fputs("ruvllm: restoring a cached prefix state failed; prefilling the prompt instead\n", stderr);
      clear(*target);
      reuse = 0;
    } else {
      target->memory.assign(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(hit->tokens));
      reuse = hit->tokens;
    }
  } else if (!llama_memory_seq_rm(llama_get_memory(ctx_.get()), slot.seq, static_cast<llama_pos>(reuse), -1)) {
    clear(slot);
    reuse = 0;
  } else {
    slot.memory.resize(reuse);
  }

  auto active = std::make_unique<Active>(Active{
      .job = nullptr,
      .sampler = make_sampler(job->request.sampling, tokens, model_->info().n_vocab),
      .text = TextAssembler(job->request.stop),
  });
  active->cached = reuse;
  active->admitted = Clock::now();
  const std::size_t boundary = job->cache_boundary;
  const bool save_boundary =
      boundary > 0 && boundary <= limit && boundary >= reuse && !cache_.contains(std::span(tokens).first(boundary));
  active->job = std::move(job);
  target->active = std::move(active);
  target->last_used = tick;
  {
    std::lock_guard lock(mutex_);
    (reuse > 0 ? stats_.hits : stats_.misses) += 1;
    stats_.tokens_saved += reuse;
  }
  if (save_boundary) {
    if (boundary == reuse) {
      save_state(*target);
    } else {
      target->active->save_at = boundary;
    }
  }
}

bool Runner::step() {
  Batch& batch = *batch_;
  batch.clear();
  const auto add = [&](llama_token token, std::size_t pos, llama_seq_id seq, bool logits) {
    return batch.add(token, static_cast<llama_pos>(pos), seq, logits);
  };

  // Sequences that are generating go first: one token each keeps their latency flat while
  // prompts are prefilled in the remaining room of the batch.
  std::vector<std::size_t>& fed = fed_;
  std::fill(fed.begin(), fed.end(), 0);
  int room = params_.batch;
  for (std::size_t i = 0; i < slots_.size() && room > 0; ++i) {
    Slot& s = slots_[i];
    if (!s.active || !s.active->decoding) continue;
    s.active->logits_index = add(s.active->next, s.memory.size(), s.seq, true);
    fed[i] = 1;
    --room;
  }
  for (std::size_t i = 0; i < slots_.size() && room > 0; ++i) {
    Slot& s = slots_[i];
    if (!s.active || s.active->decoding) continue;
    Active& a = *s.active;
    const auto& tokens = a.job->tokens;
    const std::size_t pos = s.memory.size();
    std::size_t n = std::min(static_cast<std::size_t>(room), tokens.size() - pos);
    if (a.save_at > pos && a.save_at < pos + n) n = a.save_at - pos;  // stop where the state is saved
    for (std::size_t k = 0; k < n; ++k) add(tokens[pos + k], pos + k, s.seq, pos + k + 1 == tokens.size());
    a.logits_index = pos + n == tokens.size() ? batch.size() - 1 : -1;
    fed[i] = n;
    room -= static_cast<int>(n);
  }
  if (batch.size() == 0) return false;
  if (params_.inject_fault) params_.inject_fault("step");  // a decode step with work in it

  int32_t rc = 0;
  {
    std::unique_lock<std::mutex> turn;
    if (params_.compute) turn = std::unique_lock(*params_.compute);
    rc = llama_decode(ctx_.get(), batch.get());
  }
  if (rc != 0) {
    const auto error =
        std::make_exception_ptr(Error(ErrorCode::internal, "llama_decode failed with code " + std::to_string(rc) +
                                                               " for model '" + model_->spec().name + "'"));
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (fed[i] > 0) fail(slots_[i], error);
    }
    return true;
  }

  for (std::size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (fed[i] == 0) continue;
    Active& a = *s.active;
    if (a.decoding) {
      s.memory.push_back(a.next);
    } else {
      const auto& tokens = a.job->tokens;
      const auto from = tokens.begin() + static_cast<std::ptrdiff_t>(s.memory.size());
      s.memory.insert(s.memory.end(), from, from + static_cast<std::ptrdiff_t>(fed[i]));
      if (a.save_at != 0 && a.save_at == s.memory.size()) {
        save_state(s);
        a.save_at = 0;
      }
    }
    if (a.logits_index < 0) continue;
    try {
      sample(s);
    } catch (...) {
      fail(s, std::current_exception());
    }
  }
  return true;
}

void Runner::sample(Slot& slot) {
  Active& a = *slot.active;
  const GenerateRequest& request = a.job->request;
  if (!a.decoding) {
    a.decoding = true;
    a.prefilled = Clock::now();
  }
  if (request.max_tokens == 0) return finish(slot, Finish::length);  // prefill only (cache warm-up)

  llama_token token = 0;
  if (a.sampler) {
    token = llama_sampler_sample(a.sampler.get(), ctx_.get(), a.logits_index);
  } else {  // greedy without penalties: the argmax, without copying the vocabulary into candidates
    const float* logits = llama_get_logits_ith(ctx_.get(), a.logits_index);
    token = static_cast<llama_token>(std::max_element(logits, logits + model_->info().n_vocab) - logits);
  }
  if (a.generated == 0) a.first_token = Clock::now();
  if (request.logprobs > 0) a.logprobs.push_back(logprob_of(a.logits_index, token, request.logprobs));
  if (!request.ignore_eos && model_->is_end_of_generation(token)) return finish(slot, Finish::stop);
  ++a.generated;
  piece_.clear();
  model_->append_piece(token, piece_);
  const std::string_view text = a.text.push(piece_);
  if (!text.empty() && request.on_text && !request.on_text(text)) {
    a.declined = true;
    return finish(slot, Finish::cancelled);
  }
  if (a.text.stopped()) return finish(slot, Finish::stop);
  if (a.generated >= request.max_tokens || slot.memory.size() >= static_cast<std::size_t>(context_)) {
    return finish(slot, Finish::length);
  }
  a.next = token;
}

TokenLogprob Runner::logprob_of(int logits_index, llama_token token, int top_n) {
  const float* logits = llama_get_logits_ith(ctx_.get(), logits_index);
  const int n_vocab = model_->info().n_vocab;
  const float max = *std::max_element(logits, logits + n_vocab);
  double sum = 0;
  for (int i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max));
  const float log_norm = max + static_cast<float>(std::log(sum));
  order_.resize(static_cast<std::size_t>(n_vocab));
  std::iota(order_.begin(), order_.end(), 0);
  const auto n = static_cast<std::ptrdiff_t>(std::min(top_n, n_vocab));
  std::partial_sort(order_.begin(), order_.begin() + n, order_.end(),
                    [&](int32_t x, int32_t y) { return logits[x] > logits[y]; });
  TokenLogprob out;
  out.token = token;
  out.logprob = logits[token] - log_norm;
  for (std::ptrdiff_t i = 0; i < n; ++i) out.top.emplace_back(order_[i], logits[order_[i]] - log_norm);
  return out;
}

void Runner::finish(Slot& slot, Finish reason) {
  Active& a = *slot.active;
  const GenerateRequest& request = a.job->request;
  const std::string_view rest = a.text.finish();
  if (!a.declined && !rest.empty() && request.on_text) {
    try {
      request.on_text(rest);
    } catch (...) {
      return fail(slot, std::current_exception());
    }
  }
  const auto now = Clock::now();
  GenerateResult result;
  result.model = model_->spec().name;
  result.text = a.text.text();
  result.prompt_tokens = static_cast<int>(a.job->tokens.size());
  result.cached_tokens = static_cast<int>(a.cached);
  result.completion_tokens = a.generated;
  result.finish = reason;
  result.generated_weights = model_->info().generated_weights;
  result.logprobs = std::move(a.logprobs);
  result.timings.queued = micros(a.admitted - a.job->submitted);
  result.timings.prefill = micros((a.decoding ? a.prefilled : now) - a.admitted);
  result.timings.first_token = a.generated > 0 ? micros(a.first_token - a.job->submitted) : 0;
  result.timings.decode = a.generated > 0 ? micros(now - a.first_token) : 0;
  result.timings.total = micros(now - a.job->submitted);
  if (request.keep_state && !slot.memory.empty()) save_state(slot);
  a.job->promise.set_value(std::move(result));
  slot.active.reset();
}

void Runner::fail(Slot& slot, const std::exception_ptr& error) {
  slot.active->job->promise.set_exception(error);
  slot.active.reset();
  clear(slot);  // the sequence state is unknown after a failure
}

void Runner::save_state(Slot& slot) {
  const std::size_t size = llama_state_seq_get_size(ctx_.get(), slot.seq);
  std::vector<uint8_t> state(size);
  if (llama_state_seq_get_data(ctx_.get(), state.data(), state.size(), slot.seq) == 0) return;
  cache_.insert(slot.memory, std::move(state));
}

void Runner::clear(Slot& slot) {
  llama_memory_seq_rm(llama_get_memory(ctx_.get()), slot.seq, -1, -1);
  slot.memory.clear();
}

}  // namespace ruvllm::llm::detail
