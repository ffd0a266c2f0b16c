// ruvllm/llm.h — the reasoning head: GGUF models through llama.cpp (LFM2 first).
//
// An Engine owns a model ladder. Models load lazily on first use and stay loaded until unloaded.
// Each loaded model has one llama.cpp context with `parallel` sequences; requests submitted to the
// same model are decoded together in one batch (continuous batching). Reusable prompt prefixes
// (system prompt + memory context) are kept as saved sequence states and restored instead of
// re-running prefill — for hybrid models such as LFM2 too, whose conv state cannot be rolled back.
// Every failure a caller can act on is thrown as ruvllm::llm::Error with a message that says what.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "ruvllm/error.h"

struct llama_model;  // llama.cpp's model handle (llama.h)

namespace ruvllm::llm {

using ruvllm::Error;  // ruvllm/error.h: one type for every room, with a code
using ruvllm::ErrorCode;

enum class LoadMode {
  read,  // read the file into memory: peak RSS ~1.1x the file (measured: docs/llm.md)
  mmap,  // map the file: weights repacked for the CPU are copied, so peak RSS is ~1.8x a Q4 file
};

struct ModelSpec {             // one rung of the model ladder
  std::string name;            // id used by the router and the API, e.g. "lfm2-350m"
  std::string path;            // GGUF file
  std::string size_class;      // "350m", "700m", "1.2b", "2.6b", ...
  double relative_cost = 1.0;  // cost of a call relative to the other rungs
  int tier = 0;                // 0 = smallest; privacy and escalation rules refer to tiers
};

struct ModelInfo {
  std::string path, architecture, description, file_type, tokenizer, pre_tokenizer, chat_template;
  uint64_t n_params = 0, file_bytes = 0;
  int n_ctx_train = 0, n_embd = 0, n_layer = 0, n_vocab = 0;
  uint64_t vocab_hash = 0;         // tokenizer kind, pre-tokenizer, tokens and merges: equal = same tokens
  bool hybrid = false;             // attention + recurrent/conv layers (LFM2)
  bool generated_weights = false;  // written by `ruvllm model synth`: the text it writes is noise
};

// Reads a GGUF's metadata and vocabulary without its weights. Throws Error for a missing, truncated,
// corrupt or non-GGUF file and for an architecture this llama.cpp does not know.
ModelInfo inspect_model(const std::string& path);

struct Sampling {
  float temperature = 0.8f;      // >= 0; 0 = greedy (argmax)
  float top_p = 0.95f;           // (0, 1]
  int top_k = 40;                // >= 0; 0 = off
  float min_p = 0.05f;           // [0, 1)
  float repeat_penalty = 1.0f;   // > 0; 1 = off
  int repeat_last_n = 64;        // >= 0 tokens the penalty looks back over
  std::optional<uint32_t> seed;  // unset = random
};

// The sampling ranges every entry point accepts (configuration, pipeline, server, engine), defined
// once: temperature in [0, kMaxTemperature] (OpenAI's range), top_p in (0, 1]. A problem is what
// is wrong ("must be in [0, 2], got 5"; NaN included), nullopt when the value is in range; a check
// throws Error with `field` before the problem.
inline constexpr double kMaxTemperature = 2.0;
std::optional<std::string> temperature_problem(double value);
std::optional<std::string> top_p_problem(double value);
void check_temperature(double value, std::string_view field);
void check_top_p(double value, std::string_view field);

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

struct GenerateRequest {
  // The prompt, in one of three forms: chat messages (rendered with the model's chat template),
  // else raw text, else pre-tokenized raw tokens.
  std::vector<ChatMessage> messages;
  std::string prompt;
  std::vector<int32_t> prompt_tokens;
  // Reusable prefix: its first `cache_prefix` messages, bytes or tokens (by the form above). Its
  // state is saved after prefill and restored by later requests that start with the same tokens.
  std::size_t cache_prefix = 0;
  // Also save the state after generation, so that the next turn of a chat resumes from it.
  bool keep_state = false;

  Sampling sampling;
  int max_tokens = 256;           // >= 0 completion tokens; 0 = prefill only (warms the cache)
  bool ignore_eos = false;        // keep going past end-of-generation tokens (benchmarks)
  std::vector<std::string> stop;  // generation ends before the first occurrence of any of these
  int logprobs = 0;               // [0, 20]: top-N log-probabilities at each generated position
  // Streaming: called with each piece of complete UTF-8 text, in order; the pieces concatenate to
  // the final text exactly. Return false to stop (finish = cancelled).
  std::function<bool(std::string_view piece)> on_text;
  std::stop_token cancel;  // request_stop() ends generation at the next token
};

enum class Finish { stop, length, cancelled };
std::string_view to_string(Finish finish);  // "stop", "length", "cancelled" (OpenAI's finish_reason words)

struct TokenLogprob {  // the model's distribution (before temperature) at one generated position
  int32_t token = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // most likely tokens, best first
};                                             // stop: end-of-generation token or a stop string

struct Timings {  // microseconds
  int64_t queued = 0, prefill = 0, first_token = 0, decode = 0, total = 0;
};

struct GenerateResult {
  std::string model, text;
  int prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;  // cached: restored, not prefilled
  Finish finish = Finish::stop;
  Timings timings;
  std::vector<TokenLogprob> logprobs;  // when requested; the end-of-generation token included
  bool generated_weights = false;      // the model's weights were generated: the text is noise
};

struct EngineParams {
  std::vector<ModelSpec> ladder;
  LoadMode load_mode = LoadMode::read;
  int gpu_layers = 0;                                     // layers offloaded when built with CUDA; -1 = all
  int threads = 0;                                        // 0 = one per hardware thread
  int context = 4096;                                     // tokens per sequence (prompt + completion)
  int parallel = 4;                                       // sequences decoded together per model
  int batch = 512;                                        // prompt tokens per decode step
  std::size_t prefix_cache_bytes = std::size_t{1} << 30;  // per model
  // For tests of failure handling: called on a model's runner thread before it admits a request
  // ("admit") and before each decode step that has work ("step"); what it throws fails the requests concerned,
  // as an allocation failure there would, and the runner keeps serving. Empty in the product.
  std::function<void(std::string_view where)> inject_fault;
};

struct CacheStats {
  uint64_t hits = 0, misses = 0, entries = 0, bytes = 0, tokens_saved = 0;
};

class Engine {
 public:
  explicit Engine(EngineParams params);  // validates the ladder; loads nothing
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const std::vector<ModelSpec>& ladder() const;
  void load(const std::string& model);    // loads now; otherwise the first request does
  void unload(const std::string& model);  // waits for in-flight requests to that model
  bool loaded(const std::string& model) const;
  ModelInfo info(const std::string& model);

  // Blocking generation. Throws Error for an unknown model, invalid parameters or a prompt that
  // does not fit the context.
  GenerateResult generate(const std::string& model, GenerateRequest request);
  // Queues the request; it is decoded in the same batches as other requests to that model.
  std::future<GenerateResult> submit(const std::string& model, GenerateRequest request);

  std::vector<int32_t> tokenize(const std::string& model, std::string_view text, bool special = true);
  std::string render_chat(const std::string& model, const std::vector<ChatMessage>& messages,
                          bool add_generation_prompt = true);
  // Mean-pooled, L2-normalised embedding of `text` (any GGUF, LFM2 included).
  std::vector<float> embed(const std::string& model, std::string_view text);
  CacheStats cache_stats(const std::string& model);
  // The loaded llama.cpp model (loads it if needed), for work with llama.cpp's own C API next to the
  // engine: a context of one's own, LoRA adapters, a reference loop in a benchmark. The engine keeps
  // ownership; the pointer is valid until unload() or the engine's end.
  llama_model* native_model(const std::string& model);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads a model ladder from a TOML file: [[model]] tables with name, path, size_class,
// relative_cost, tier (default: the table's position). Relative paths resolve against the file's
// folder; names are unique and not "auto" (which means "let the router choose").
struct LadderIssue {
  std::string key;  // "model[1].path"; "" for the file as a whole (syntax)
  std::string message;
};
// Every problem goes to `issues`; the models read are returned either way.
std::vector<ModelSpec> read_ladder(const std::string& toml_path, std::vector<LadderIssue>& issues);
// Throws Error (invalid_argument) listing every problem.
std::vector<ModelSpec> read_ladder(const std::string& toml_path);

// ---- model tools --------------------------------------------------------------------------------

struct SynthParams {
  std::string size = "350m";  // "350m", "700m", "1.2b", "2.6b" (LFM2 public shapes) or "tiny"
  std::string out;            // output GGUF
  std::string type = "f16";   // tensor type of the matrices: f32, f16, q8_0, q4_0
  std::string vocab_gguf;     // llama-bpe vocabulary to cut from; "" = the bundled one
  uint64_t seed = 1;
  std::function<void(double)> progress;  // 0..1
};
struct SynthReport {
  uint64_t n_params = 0, file_bytes = 0;
  int n_vocab = 0;
};
// Writes a GGUF with the exact LFM2 architecture and shapes, generated weights and a working
// tokenizer. Its metadata says the weights are generated.
SynthReport synth_lfm2(const SynthParams& params);
// Parameter count of an LFM2 size, computed from its shapes.
uint64_t lfm2_parameter_count(const std::string& size);

// Quantizes with llama.cpp: type is q4_0, q4_k_m, q5_k_m, q8_0 or f16 (case-insensitive).
void quantize_model(const std::string& in, const std::string& out, const std::string& type, int threads = 0,
                    std::function<void(double)> progress = {});

}  // namespace ruvllm::llm
