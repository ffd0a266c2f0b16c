#include <cmath>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "backend.h"
#include "model.h"
#include "runner.h"
#include "ruvllm/llm.h"
#include "text.h"

namespace ruvllm::llm {
namespace {

// A context that computes pooled embeddings (no logits), one text at a time.
class EmbeddingContext {
 public:
  EmbeddingContext(std::shared_ptr<const detail::LoadedModel> model, int threads, int window)
      : model_(std::move(model)), pool_(threads), ctx_(nullptr, llama_free) {
    const int train = model_->info().n_ctx_train;
    window = train > 0 ? std::min(window, train) : window;
    llama_context_params cp = llama_context_default_params();
    cp.embeddings = true;
    cp.pooling_type = LLAMA_POOLING_TYPE_MEAN;
    // The whole text must be one ubatch: with a smaller n_ubatch llama.cpp pools only the last chunk.
    cp.n_ctx = cp.n_batch = cp.n_ubatch = static_cast<uint32_t>(window);
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = threads;
    cp.no_perf = true;
    detail::LogCapture capture;
    ctx_.reset(llama_init_from_model(model_->get(), cp));
    if (!ctx_) throw Error("cannot create an embedding context: " + capture.message("out of memory?"));
    pool_.attach(ctx_.get());
    window_ = static_cast<int>(llama_n_ubatch(ctx_.get()));
    batch_.emplace(window_);
  }

  std::vector<float> embed(std::string_view text) {
    if (text.empty()) throw Error("cannot embed an empty text");
    if (auto at = detail::first_invalid_utf8(text)) {
      throw Error("text to embed is not valid UTF-8 (byte " + std::to_string(*at) + ")");
    }
    const auto tokens = model_->tokenize(text, true, false);
    if (tokens.size() > static_cast<std::size_t>(window_)) {
      throw Error("text of " + std::to_string(tokens.size()) + " tokens exceeds the embedding window of " +
                  std::to_string(window_) + " tokens; split it into chunks");
    }
    std::lock_guard lock(mutex_);
    if (llama_memory_t mem = llama_get_memory(ctx_.get())) llama_memory_clear(mem, true);
    batch_->clear();
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      batch_->add(tokens[i], static_cast<llama_pos>(i), 0, true);  // every token is an output: pooling averages them
    }
    const bool encoder_only = llama_model_has_encoder(model_->get()) && !llama_model_has_decoder(model_->get());
    const int32_t rc = encoder_only ? llama_encode(ctx_.get(), batch_->get()) : llama_decode(ctx_.get(), batch_->get());
    if (rc != 0) throw Error("embedding failed: llama.cpp returned " + std::to_string(rc));
    const float* pooled = llama_get_embeddings_seq(ctx_.get(), 0);
    if (pooled == nullptr) throw Error("embedding failed: llama.cpp returned no pooled vector");
    std::vector<float> out(pooled, pooled + llama_model_n_embd_out(model_->get()));
    double norm = 0;
    for (float v : out) norm += static_cast<double>(v) * v;
    if (!(norm > 0) || !std::isfinite(norm)) throw Error("embedding is zero or not finite");
    const auto scale = static_cast<float>(1.0 / std::sqrt(norm));
    for (float& v : out) v *= scale;
    return out;
  }

 private:
  std::shared_ptr<const detail::LoadedModel> model_;
  detail::ThreadPool pool_;
  std::unique_ptr<llama_context, void (*)(llama_context*)> ctx_;
  std::optional<detail::Batch> batch_;
  int window_ = 0;
  std::mutex mutex_;
};

struct Loaded {
  std::shared_ptr<const detail::LoadedModel> model;
  std::unique_ptr<detail::Runner> runner;
  std::once_flag embedder_once;
  std::unique_ptr<EmbeddingContext> embedder;
};

// One per ladder rung; the map of slots never changes after construction, so lookups need no lock.
struct Slot {
  std::mutex mutex;
  std::shared_ptr<Loaded> loaded;
};

}  // namespace

struct Engine::Impl {
  EngineParams params;
  std::map<std::string, std::unique_ptr<Slot>> slots;

  const ModelSpec& spec(const std::string& name) const {
    for (const auto& s : params.ladder) {
      if (s.name == name) return s;
    }
    std::string known;
    for (const auto& s : params.ladder) known += (known.empty() ? "" : ", ") + s.name;
    throw Error(ErrorCode::not_found, "unknown model '" + name + "'; the ladder has: " + known);
  }

  int threads() const { return detail::default_threads(params.threads); }
  std::shared_ptr<std::mutex> compute = std::make_shared<std::mutex>();  // see RunnerParams::compute

  std::shared_ptr<Loaded> get(const std::string& name) {
    const ModelSpec& s = spec(name);
    Slot& slot = *slots.at(name);
    std::lock_guard lock(slot.mutex);
    if (!slot.loaded) {
      // A model that does not load is the operator's to fix (the file, the memory), not the
      // request's: unavailable, whatever the loader said.
      try {
        auto loaded = std::make_shared<Loaded>();
        loaded->model = std::make_shared<const detail::LoadedModel>(s, params.load_mode, params.gpu_layers);
        const detail::RunnerParams rp{.threads = threads(),
                                      .context = params.context,
                                      .parallel = params.parallel,
                                      .batch = params.batch,
                                      .cache_bytes = params.prefix_cache_bytes,
                                      .compute = compute,
                                      .inject_fault = params.inject_fault};
        loaded->runner = std::make_unique<detail::Runner>(loaded->model, rp);
        slot.loaded = std::move(loaded);
      } catch (const Error& e) {
        throw Error(ErrorCode::unavailable, "model '" + name + "' cannot be loaded: " + e.what());
      }
    }
    return slot.loaded;
  }
};

std::string_view to_string(Finish finish) {
  switch (finish) {
    case Finish::stop: return "stop";
    case Finish::length: return "length";
    case Finish::cancelled: return "cancelled";
  }
  return "?";
}

Engine::Engine(EngineParams params) : impl_(std::make_unique<Impl>()) {
  detail::ensure_backend();
  if (params.ladder.empty()) throw Error("the model ladder is empty");
  std::set<std::string> names;
  for (const auto& s : params.ladder) {
    if (s.name.empty()) throw Error("a ladder entry has no name");
    if (!names.insert(s.name).second) throw Error("model name '" + s.name + "' appears twice in the ladder");
  }
  if (params.parallel < 1 || static_cast<std::size_t>(params.parallel) > llama_max_parallel_sequences()) {
    throw Error("parallel must be in [1, " + std::to_string(llama_max_parallel_sequences()) + "], got " +
                std::to_string(params.parallel));
  }
  if (params.context < 16) throw Error("context must be >= 16 tokens, got " + std::to_string(params.context));
  if (params.batch < 1) throw Error("batch must be >= 1, got " + std::to_string(params.batch));
  if (params.threads < 0) throw Error("threads must be >= 0, got " + std::to_string(params.threads));
  impl_->params = std::move(params);
  for (const auto& s : impl_->params.ladder) impl_->slots.emplace(s.name, std::make_unique<Slot>());
}

Engine::~Engine() = default;

const std::vector<ModelSpec>& Engine::ladder() const { return impl_->params.ladder; }

void Engine::load(const std::string& model) { impl_->get(model); }

void Engine::unload(const std::string& model) {
  impl_->spec(model);
  std::shared_ptr<Loaded> loaded;
  {
    Slot& slot = *impl_->slots.at(model);
    std::lock_guard lock(slot.mutex);
    loaded = std::move(slot.loaded);
  }
  // Freed here, or when the last in-flight request to it returns.
}

bool Engine::loaded(const std::string& model) const {
  impl_->spec(model);
  Slot& slot = *impl_->slots.at(model);
  std::lock_guard lock(slot.mutex);
  return slot.loaded != nullptr;
}

ModelInfo Engine::info(const std::string& model) {
  const ModelSpec& s = impl_->spec(model);
  {
    Slot& slot = *impl_->slots.at(model);
    std::lock_guard lock(slot.mutex);
    if (slot.loaded) return slot.loaded->model->info();
  }
  return inspect_model(s.path);
}

GenerateResult Engine::generate(const std::string& model, GenerateRequest request) {
  auto loaded = impl_->get(model);
  return loaded->runner->submit(std::move(request)).get();
}

std::future<GenerateResult> Engine::submit(const std::string& model, GenerateRequest request) {
  return impl_->get(model)->runner->submit(std::move(request));
}

std::vector<int32_t> Engine::tokenize(const std::string& model, std::string_view text, bool special) {
  return impl_->get(model)->model->tokenize(text, true, special);
}

std::string Engine::render_chat(const std::string& model, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt) {
  return impl_->get(model)->model->render_chat(messages, add_generation_prompt);
}

std::vector<float> Engine::embed(const std::string& model, std::string_view text) {
  auto loaded = impl_->get(model);
  std::call_once(loaded->embedder_once,
                 [&] { loaded->embedder = std::make_unique<EmbeddingContext>(loaded->model, impl_->threads(), 2048); });
  return loaded->embedder->embed(text);
}

CacheStats Engine::cache_stats(const std::string& model) { return impl_->get(model)->runner->cache_stats(); }

llama_model* Engine::native_model(const std::string& model) { return impl_->get(model)->model->get(); }

ModelInfo inspect_model(const std::string& path) {
  ModelInfo info = detail::read_gguf_info(path);
  llama_model_params params = llama_model_default_params();
  params.vocab_only = true;
  detail::LogCapture capture;
  std::unique_ptr<llama_model, detail::ModelDeleter> model(llama_model_load_from_file(path.c_str(), params));
  if (!model) {
    throw Error("llama.cpp cannot read " + path + " (architecture '" + info.architecture +
                "'): " + capture.message("no reason given"));
  }
  info.n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model.get()));
  info.hybrid = llama_model_is_hybrid(model.get());
  return info;
}

}  // namespace ruvllm::llm
