#include "model.h"

#include <gguf.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>

#include "backend.h"
#include "common/hash.h"

namespace ruvllm::llm::detail {
namespace fs = std::filesystem;

namespace {

struct GgufDeleter {
  void operator()(gguf_context* ctx) const { gguf_free(ctx); }
};
using GgufPtr = std::unique_ptr<gguf_context, GgufDeleter>;

void check_file_is_gguf(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(ErrorCode::not_found, "model file not found: " + path);
  if (!fs::is_regular_file(path, ec)) throw Error("model path is not a regular file: " + path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::io, "cannot open model file: " + path);
  std::array<char, 4> magic{};
  in.read(magic.data(), magic.size());
  if (in.gcount() < 4) throw Error("not a GGUF file (shorter than its 4-byte magic): " + path);
  if (std::string_view(magic.data(), 4) != "GGUF") {
    throw Error("not a GGUF file (the first bytes are not 'GGUF'): " + path);
  }
}

std::string string_value(const gguf_context* ctx, const char* key) {
  const int64_t id = gguf_find_key(ctx, key);
  if (id < 0 || gguf_get_kv_type(ctx, id) != GGUF_TYPE_STRING) return {};
  return gguf_get_val_str(ctx, id);
}

int64_t integer_value(const gguf_context* ctx, const std::string& key) {
  const int64_t id = gguf_find_key(ctx, key.c_str());
  if (id < 0) return 0;
  switch (gguf_get_kv_type(ctx, id)) {
    case GGUF_TYPE_UINT32: return gguf_get_val_u32(ctx, id);
    case GGUF_TYPE_INT32: return gguf_get_val_i32(ctx, id);
    case GGUF_TYPE_UINT64: return static_cast<int64_t>(gguf_get_val_u64(ctx, id));
    case GGUF_TYPE_INT64: return gguf_get_val_i64(ctx, id);
    default: return 0;
  }
}

}  // namespace

ModelInfo read_gguf_info(const std::string& path) {
  ensure_backend();
  check_file_is_gguf(path);
  LogCapture capture;
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
  GgufPtr ctx(gguf_init_from_file(path.c_str(), params));
  if (!ctx)
    throw Error(ErrorCode::corrupt, "corrupt GGUF file " + path + ": " + capture.message("header could not be parsed"));

  ModelInfo info;
  info.path = path;
  info.file_bytes = fs::file_size(path);
  info.architecture = string_value(ctx.get(), "general.architecture");
  if (info.architecture.empty()) throw Error("GGUF file has no general.architecture: " + path);
  info.description = string_value(ctx.get(), "general.name");
  info.tokenizer = string_value(ctx.get(), "tokenizer.ggml.model");
  info.pre_tokenizer = string_value(ctx.get(), "tokenizer.ggml.pre");
  info.chat_template = string_value(ctx.get(), "tokenizer.chat_template");
  info.generated_weights = !string_value(ctx.get(), "ruvllm.generated_weights").empty();
  const std::string& arch = info.architecture;
  info.n_ctx_train = static_cast<int>(integer_value(ctx.get(), arch + ".context_length"));
  info.n_embd = static_cast<int>(integer_value(ctx.get(), arch + ".embedding_length"));
  info.n_layer = static_cast<int>(integer_value(ctx.get(), arch + ".block_count"));
  if (const int64_t id = gguf_find_key(ctx.get(), "tokenizer.ggml.tokens"); id >= 0) {
    info.n_vocab = static_cast<int>(gguf_get_arr_n(ctx.get(), id));
  }
  // FNV-1a over everything that decides how text splits into tokens.
  uint64_t h = common::kFnvOffset;
  auto mix = [&h](std::string_view s) {
    h = common::fnv1a(s, h);
    h = common::fnv1a("\xFF", 1, h);  // a separator no UTF-8 string contains
  };
  mix(info.tokenizer);
  mix(info.pre_tokenizer);
  for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.merges"}) {
    const int64_t id = gguf_find_key(ctx.get(), key);
    if (id < 0 || gguf_get_arr_type(ctx.get(), id) != GGUF_TYPE_STRING) continue;
    for (std::size_t i = 0, n = gguf_get_arr_n(ctx.get(), id); i < n; ++i) mix(gguf_get_arr_str(ctx.get(), id, i));
  }
  info.vocab_hash = h;
  const int64_t file_type = integer_value(ctx.get(), "general.file_type");
  info.file_type = llama_ftype_name(static_cast<llama_ftype>(file_type));

  // Every tensor must lie inside the file: a truncated download fails here, not in the middle of
  // loading (or worse, on first use of a half-mapped page).
  const uint64_t data_offset = gguf_get_data_offset(ctx.get());
  uint64_t data_end = data_offset;
  for (int64_t i = 0; i < gguf_get_n_tensors(ctx.get()); ++i) {
    const int64_t* ne = gguf_get_tensor_ne(ctx.get(), i);
    uint64_t elements = 1;
    for (int d = 0; d < GGML_MAX_DIMS; ++d) elements *= static_cast<uint64_t>(ne[d]);
    info.n_params += elements;
    data_end = std::max<uint64_t>(
        data_end, data_offset + gguf_get_tensor_offset(ctx.get(), i) + gguf_get_tensor_size(ctx.get(), i));
  }
  if (data_end > info.file_bytes) {
    throw Error(ErrorCode::corrupt, "truncated GGUF file " + path + ": its tensors need " + std::to_string(data_end) +
                                        " bytes but the file has " + std::to_string(info.file_bytes));
  }
  info.hybrid = arch == "lfm2" || arch == "lfm2moe";
  return info;
}

LoadedModel::LoadedModel(ModelSpec spec, LoadMode mode, int gpu_layers)
    : spec_(std::move(spec)), info_(read_gguf_info(spec_.path)) {
  llama_model_params params = llama_model_default_params();
  params.load_mode = mode == LoadMode::mmap ? LLAMA_LOAD_MODE_MMAP : LLAMA_LOAD_MODE_NONE;
  params.n_gpu_layers = gpu_layers;
  LogCapture capture;
  model_.reset(llama_model_load_from_file(spec_.path.c_str(), params));
  if (!model_) {
    throw Error("cannot load model '" + spec_.name + "' from " + spec_.path + " (architecture '" + info_.architecture +
                "'): " + capture.message("llama.cpp gave no reason"));
  }
  vocab_ = llama_model_get_vocab(model_.get());
  info_.n_params = llama_model_n_params(model_.get());
  info_.n_vocab = llama_vocab_n_tokens(vocab_);
  info_.hybrid = llama_model_is_hybrid(model_.get());
  std::array<char, 256> desc{};
  llama_model_desc(model_.get(), desc.data(), desc.size());
  if (info_.description.empty()) info_.description = desc.data();
}

std::vector<llama_token> LoadedModel::tokenize(std::string_view text, bool add_special, bool parse_special) const {
  // A token is at least one byte, plus room for BOS/EOS.
  std::vector<llama_token> tokens(text.size() + 4);
  int32_t n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                             static_cast<int32_t>(tokens.size()), add_special, parse_special);
  if (n == INT32_MIN) throw Error("text is too long to tokenize");
  if (n < 0) {
    tokens.resize(static_cast<size_t>(-n));
    n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                       static_cast<int32_t>(tokens.size()), add_special, parse_special);
    if (n < 0) throw Error("tokenization failed");
  }
  tokens.resize(static_cast<size_t>(n));
  return tokens;
}

void LoadedModel::append_piece(llama_token token, std::string& out) const {
  std::array<char, 128> buf{};
  int32_t n = llama_token_to_piece(vocab_, token, buf.data(), buf.size(), 0, false);
  if (n >= 0) {
    out.append(buf.data(), static_cast<size_t>(n));
    return;
  }
  std::string big(static_cast<size_t>(-n), '\0');
  n = llama_token_to_piece(vocab_, token, big.data(), static_cast<int32_t>(big.size()), 0, false);
  if (n > 0) out.append(big.data(), static_cast<size_t>(n));
}

std::string LoadedModel::render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  const char* tmpl = llama_model_chat_template(model_.get(), nullptr);
  if (tmpl == nullptr) {
    throw Error("model '" + spec_.name + "' has no chat template; send a raw prompt instead");
  }
  std::vector<llama_chat_message> chat;
  chat.reserve(messages.size());
  size_t total = 0;
  for (const auto& m : messages) {
    chat.push_back({m.role.c_str(), m.content.c_str()});
    total += m.role.size() + m.content.size();
  }
  std::string out(2 * total + 256, '\0');
  int32_t n = llama_chat_apply_template(tmpl, chat.data(), chat.size(), add_generation_prompt, out.data(),
                                        static_cast<int32_t>(out.size()));
  if (n < 0) {
    throw Error("llama.cpp does not support the chat template of model '" + spec_.name + "'");
  }
  if (static_cast<size_t>(n) > out.size()) {
    out.resize(static_cast<size_t>(n));
    n = llama_chat_apply_template(tmpl, chat.data(), chat.size(), add_generation_prompt, out.data(),
                                  static_cast<int32_t>(out.size()));
  }
  out.resize(static_cast<size_t>(n));
  return out;
}

}  // namespace ruvllm::llm::detail
