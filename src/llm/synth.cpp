// `ruvllm model synth`: GGUF files with the exact LFM2 architecture and tensor shapes, generated
// weights and a working tokenizer. Compute per token is the real model's, so speed measured on
// them is honest; the text they write is noise, and their metadata says so.
#include <ggml.h>
#include <gguf.h>

#include <unistd.h>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "backend.h"
#include "ruvllm/llm.h"

#ifndef RUVLLM_BUNDLED_VOCAB
#define RUVLLM_BUNDLED_VOCAB ""
#endif

namespace ruvllm::llm {
namespace {

// LFM2 public configs (head_dim 64, conv L_cache 3, vocab 65536, rope theta 1e6, tied embeddings).
struct Lfm2Shape {
  int hidden, layers, heads, kv_heads, ffn;
  std::set<int> attention_layers;
};

constexpr int kVocab = 65536;
constexpr int kHeadDim = 64;
constexpr int kConvCache = 3;
constexpr int kContext = 32768;

const std::map<std::string, Lfm2Shape>& shapes() {
  static const std::map<std::string, Lfm2Shape> table = {
      {"350m", {1024, 16, 16, 8, 4608, {2, 5, 8, 10, 12, 14}}},
      {"700m", {1536, 16, 24, 8, 6912, {2, 5, 8, 10, 12, 14}}},
      {"1.2b", {2048, 16, 32, 8, 8192, {2, 5, 8, 10, 12, 14}}},
      {"2.6b", {2048, 30, 32, 8, 10752, {2, 5, 9, 13, 17, 21, 24, 27}}},
      // A small model of the same architecture for tests: same tokenizer, 2 conv + 2 attention layers.
      {"tiny", {128, 4, 2, 1, 384, {1, 3}}},
  };
  return table;
}

const Lfm2Shape& shape_of(const std::string& size) {
  const auto it = shapes().find(size);
  if (it == shapes().end()) {
    throw Error("unknown LFM2 size '" + size + "'; choose 350m, 700m, 1.2b, 2.6b or tiny");
  }
  return it->second;
}

struct TensorPlan {
  std::string name;
  int64_t ne0, ne1;  // ne1 = 1 for vectors
  float scale;       // weights drawn uniformly with this standard deviation; 0 = all ones (norms)
  bool f32 = false;  // stays f32 whatever the file type (vectors; the conv kernel, as in real files)
};

std::vector<TensorPlan> plan(const Lfm2Shape& s) {
  const int64_t h = s.hidden, kv = int64_t{s.kv_heads} * kHeadDim;
  std::vector<TensorPlan> t;
  t.push_back({"token_embd.weight", h, kVocab, 0.02f});
  t.push_back({"token_embd_norm.weight", h, 1, 0.0f, true});  // LFM2's final norm carries this name
  for (int i = 0; i < s.layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    t.push_back({b + "attn_norm.weight", h, 1, 0.0f, true});
    t.push_back({b + "ffn_norm.weight", h, 1, 0.0f, true});
    t.push_back({b + "ffn_gate.weight", h, s.ffn, 0.02f});
    t.push_back({b + "ffn_up.weight", h, s.ffn, 0.02f});
    t.push_back({b + "ffn_down.weight", s.ffn, h, 0.02f});
    if (s.attention_layers.contains(i)) {
      t.push_back({b + "attn_q.weight", h, h, 0.02f});
      t.push_back({b + "attn_k.weight", h, kv, 0.02f});
      t.push_back({b + "attn_v.weight", h, kv, 0.02f});
      t.push_back({b + "attn_output.weight", h, h, 0.02f});
      t.push_back({b + "attn_q_norm.weight", kHeadDim, 1, 0.0f, true});
      t.push_back({b + "attn_k_norm.weight", kHeadDim, 1, 0.0f, true});
    } else {
      t.push_back({b + "shortconv.conv.weight", kConvCache, h, 0.2f, true});  // ggml's ssm_conv needs f32
      t.push_back({b + "shortconv.in_proj.weight", h, 3 * h, 0.02f});
      t.push_back({b + "shortconv.out_proj.weight", h, h, 0.02f});
    }
  }
  return t;
}

ggml_type parse_type(const std::string& type) {
  static const std::map<std::string, ggml_type> types = {
      {"f32", GGML_TYPE_F32}, {"f16", GGML_TYPE_F16}, {"q8_0", GGML_TYPE_Q8_0}, {"q4_0", GGML_TYPE_Q4_0}};
  const auto it = types.find(type);
  if (it == types.end()) throw Error("unsupported synth type '" + type + "'; choose f32, f16, q8_0 or q4_0");
  return it->second;
}

uint32_t file_type_of(ggml_type type) {  // llama_ftype values
  switch (type) {
    case GGML_TYPE_F32: return 0;
    case GGML_TYPE_F16: return 1;
    case GGML_TYPE_Q4_0: return 2;
    default: return 7;  // Q8_0
  }
}

// SplitMix64: fast, seedable, and the same on every machine, so a synth file is reproducible.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }  // [0, 1)
};

struct GgufDeleter {
  void operator()(gguf_context* ctx) const { gguf_free(ctx); }
};
struct GgmlDeleter {
  void operator()(ggml_context* ctx) const { ggml_free(ctx); }
};
struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// LFM2's special tokens, appended after the regular tokens kept from llama-bpe.
const std::vector<std::string>& lfm2_special_tokens() {
  static const std::vector<std::string> tokens = {"<|pad|>",
                                                  "<|startoftext|>",
                                                  "<|endoftext|>",
                                                  "<|fim_pre|>",
                                                  "<|fim_mid|>",
                                                  "<|fim_suf|>",
                                                  "<|im_start|>",
                                                  "<|im_end|>",
                                                  "<|tool_list_start|>",
                                                  "<|tool_list_end|>",
                                                  "<|tool_call_start|>",
                                                  "<|tool_call_end|>",
                                                  "<|tool_response_start|>",
                                                  "<|tool_response_end|>",
                                                  "<|cot_start|>",
                                                  "<|cot_end|>"};
  return tokens;
}

// The ChatML form LFM2 uses; llama.cpp recognises it as chatml.
constexpr const char* kChatTemplate =
    "{{- bos_token -}}{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

// Cuts llama-bpe's vocabulary to LFM2's 65,536 tokens: the first regular tokens (all 256 byte
// tokens come first), the merges among kept tokens, then LFM2's special tokens.
void write_tokenizer(gguf_context* out, const std::string& vocab_path) {
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
  std::unique_ptr<gguf_context, GgufDeleter> src(gguf_init_from_file(vocab_path.c_str(), params));
  if (!src) throw Error("cannot read the tokenizer source " + vocab_path);
  const int64_t tokens_id = gguf_find_key(src.get(), "tokenizer.ggml.tokens");
  const int64_t merges_id = gguf_find_key(src.get(), "tokenizer.ggml.merges");
  if (tokens_id < 0 || merges_id < 0) throw Error(vocab_path + " has no BPE tokens and merges");

  const auto& special = lfm2_special_tokens();
  const std::size_t n_regular = kVocab - special.size();
  if (gguf_get_arr_n(src.get(), tokens_id) < n_regular) throw Error(vocab_path + " has too few tokens");
  std::vector<std::string> tokens;
  tokens.reserve(kVocab);
  for (std::size_t i = 0; i < n_regular; ++i) tokens.emplace_back(gguf_get_arr_str(src.get(), tokens_id, i));
  const std::unordered_set<std::string> kept(tokens.begin(), tokens.end());
  tokens.insert(tokens.end(), special.begin(), special.end());

  std::vector<std::string> merges;
  for (std::size_t i = 0; i < gguf_get_arr_n(src.get(), merges_id); ++i) {
    const std::string merge = gguf_get_arr_str(src.get(), merges_id, i);
    const auto space = merge.find(' ', 1);
    if (space == std::string::npos) continue;
    const std::string left = merge.substr(0, space), right = merge.substr(space + 1);
    if (kept.contains(left) && kept.contains(right) && kept.contains(left + right)) merges.push_back(merge);
  }

  std::vector<const char*> token_ptrs, merge_ptrs;
  for (const auto& t : tokens) token_ptrs.push_back(t.c_str());
  for (const auto& m : merges) merge_ptrs.push_back(m.c_str());
  std::vector<int32_t> types(kVocab, 1);                                              // LLAMA_TOKEN_TYPE_NORMAL
  std::fill(types.begin() + static_cast<std::ptrdiff_t>(n_regular), types.end(), 3);  // CONTROL

  const auto id_of = [&](const std::string& t) {
    return static_cast<uint32_t>(n_regular + (std::find(special.begin(), special.end(), t) - special.begin()));
  };
  gguf_set_val_str(out, "tokenizer.ggml.model", "gpt2");
  gguf_set_val_str(out, "tokenizer.ggml.pre", "lfm2");
  gguf_set_arr_str(out, "tokenizer.ggml.tokens", token_ptrs.data(), token_ptrs.size());
  gguf_set_arr_data(out, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types.data(), types.size());
  gguf_set_arr_str(out, "tokenizer.ggml.merges", merge_ptrs.data(), merge_ptrs.size());
  gguf_set_val_u32(out, "tokenizer.ggml.bos_token_id", id_of("<|startoftext|>"));
  gguf_set_val_u32(out, "tokenizer.ggml.eos_token_id", id_of("<|im_end|>"));
  gguf_set_val_u32(out, "tokenizer.ggml.padding_token_id", id_of("<|pad|>"));
  gguf_set_val_bool(out, "tokenizer.ggml.add_bos_token", true);
  gguf_set_val_bool(out, "tokenizer.ggml.add_eos_token", false);
  gguf_set_val_str(out, "tokenizer.chat_template", kChatTemplate);
}

}  // namespace

uint64_t lfm2_parameter_count(const std::string& size) {
  uint64_t n = 0;
  for (const auto& t : plan(shape_of(size))) n += static_cast<uint64_t>(t.ne0 * t.ne1);
  return n;
}

SynthReport synth_lfm2(const SynthParams& params) {
  detail::ensure_backend();
  const Lfm2Shape& s = shape_of(params.size);
  const ggml_type matrix_type = parse_type(params.type);
  if (params.out.empty()) throw Error("synth needs an output path");
  const std::string vocab = params.vocab_gguf.empty() ? RUVLLM_BUNDLED_VOCAB : params.vocab_gguf;
  if (vocab.empty() || !std::filesystem::exists(vocab)) {
    throw Error("tokenizer source not found: '" + vocab +
                "' (the llama-bpe vocabulary from llama.cpp's models/ folder; run scripts/setup.sh or pass --vocab)");
  }

  std::unique_ptr<gguf_context, GgufDeleter> gguf(gguf_init_empty());
  gguf_context* g = gguf.get();
  std::vector<uint32_t> kv_heads(static_cast<std::size_t>(s.layers), 0);  // 0 marks a conv layer
  for (int i : s.attention_layers) kv_heads[static_cast<std::size_t>(i)] = static_cast<uint32_t>(s.kv_heads);
  gguf_set_val_str(g, "general.architecture", "lfm2");
  gguf_set_val_str(g, "general.name", ("LFM2-" + params.size + " (generated weights)").c_str());
  gguf_set_val_u32(g, "general.file_type", file_type_of(matrix_type));
  gguf_set_val_u32(g, "general.quantization_version", GGML_QNT_VERSION);
  gguf_set_val_str(g, "ruvllm.generated_weights",
                   ("true: written by `ruvllm model synth` with seed " + std::to_string(params.seed) +
                    "; the shapes are LFM2's, the weights are random, the text it writes is noise")
                       .c_str());
  gguf_set_val_u32(g, "lfm2.vocab_size", kVocab);
  gguf_set_val_u32(g, "lfm2.context_length", kContext);
  gguf_set_val_u32(g, "lfm2.embedding_length", static_cast<uint32_t>(s.hidden));
  gguf_set_val_u32(g, "lfm2.feed_forward_length", static_cast<uint32_t>(s.ffn));
  gguf_set_val_u32(g, "lfm2.block_count", static_cast<uint32_t>(s.layers));
  gguf_set_val_u32(g, "lfm2.attention.head_count", static_cast<uint32_t>(s.heads));
  gguf_set_arr_data(g, "lfm2.attention.head_count_kv", GGUF_TYPE_UINT32, kv_heads.data(), kv_heads.size());
  gguf_set_val_f32(g, "lfm2.rope.freq_base", 1000000.0f);
  gguf_set_val_f32(g, "lfm2.attention.layer_norm_rms_epsilon", 1e-5f);
  gguf_set_val_u32(g, "lfm2.shortconv.l_cache", kConvCache);
  write_tokenizer(g, vocab);

  const auto tensors = plan(s);
  ggml_init_params meta{tensors.size() * ggml_tensor_overhead(), nullptr, /*no_alloc=*/true};
  std::unique_ptr<ggml_context, GgmlDeleter> ctx(ggml_init(meta));
  std::vector<ggml_type> types;
  for (const auto& t : tensors) {
    const ggml_type type = t.f32 ? GGML_TYPE_F32 : matrix_type;
    ggml_tensor* tensor = ggml_new_tensor_2d(ctx.get(), type, t.ne0, t.ne1);
    ggml_set_name(tensor, t.name.c_str());
    gguf_add_tensor(g, tensor);
    types.push_back(type);
  }

  // Metadata first, then each tensor's data streamed in order, so that memory stays at one tensor.
  // A unique partial name: concurrent writers of the same file (parallel tests) never collide.
  const std::string tmp = params.out + ".partial." + std::to_string(::getpid());
  if (!gguf_write_to_file(g, tmp.c_str(), /*only_meta=*/true)) throw Error("cannot write " + tmp);
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(tmp.c_str(), "ab"));
  if (!file) throw Error("cannot append to " + tmp);
  const std::size_t alignment = gguf_get_alignment(g);
  uint64_t written = 0, params_done = 0;
  const uint64_t params_total = lfm2_parameter_count(params.size);
  std::vector<float> values;
  std::vector<uint8_t> bytes;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (gguf_get_tensor_offset(g, static_cast<int64_t>(i)) != written) throw Error("GGUF layout mismatch");
    const auto n = static_cast<std::size_t>(t.ne0 * t.ne1);
    values.resize(n);
    SplitMix64 rng{params.seed * 0x100000001B3ull + i};
    const float half_width = t.scale * std::sqrt(3.0f);  // uniform(-a, a) has std a / sqrt(3)
    for (auto& v : values) v = t.scale == 0.0f ? 1.0f : (2.0f * rng.uniform() - 1.0f) * half_width;
    const std::size_t size = ggml_row_size(types[i], t.ne0) * static_cast<std::size_t>(t.ne1);
    bytes.resize(size);
    if (types[i] == GGML_TYPE_F32) {
      std::memcpy(bytes.data(), values.data(), size);
    } else if (types[i] == GGML_TYPE_F16) {
      ggml_fp32_to_fp16_row(values.data(), reinterpret_cast<ggml_fp16_t*>(bytes.data()), static_cast<int64_t>(n));
    } else {
      ggml_quantize_chunk(types[i], values.data(), bytes.data(), 0, t.ne1, t.ne0, nullptr);
    }
    const std::size_t padded = GGML_PAD(size, alignment);
    bytes.resize(padded, 0);
    if (std::fwrite(bytes.data(), 1, padded, file.get()) != padded) throw Error("write failed: " + tmp);
    written += padded;
    params_done += n;
    if (params.progress) params.progress(static_cast<double>(params_done) / static_cast<double>(params_total));
  }
  if (std::fflush(file.get()) != 0) throw Error("write failed: " + tmp);
  file.reset();
  std::filesystem::rename(tmp, params.out);

  SynthReport report;
  report.n_params = params_done;
  report.file_bytes = std::filesystem::file_size(params.out);
  report.n_vocab = kVocab;
  return report;
}

}  // namespace ruvllm::llm
