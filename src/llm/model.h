// A loaded GGUF model: RAII over llama_model plus the vocabulary helpers every other part uses.
#pragma once

#include <llama.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ruvllm/llm.h"

namespace ruvllm::llm::detail {

struct ModelDeleter {
  void operator()(llama_model* model) const { llama_model_free(model); }
};

// Reads the GGUF header, metadata and tensor table (not the weights) and checks that the file is
// long enough for every tensor. Throws Error with the reason for a bad file.
ModelInfo read_gguf_info(const std::string& path);

class LoadedModel {
 public:
  // Throws Error: missing/corrupt file, unknown architecture, or llama.cpp's reason for failing.
  LoadedModel(ModelSpec spec, LoadMode mode, int gpu_layers);

  llama_model* get() const { return model_.get(); }
  const llama_vocab* vocab() const { return vocab_; }
  const ModelSpec& spec() const { return spec_; }
  const ModelInfo& info() const { return info_; }

  // add_special: BOS etc. as the model wants; parse_special: "<|im_start|>" becomes one token.
  std::vector<llama_token> tokenize(std::string_view text, bool add_special, bool parse_special) const;
  // The bytes of one token (special tokens render as nothing); may be part of a UTF-8 character.
  void append_piece(llama_token token, std::string& out) const;
  bool is_end_of_generation(llama_token token) const { return llama_vocab_is_eog(vocab_, token); }
  // Renders messages with the GGUF's chat template. Throws Error when the model has none or
  // llama.cpp does not know its template.
  std::string render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

 private:
  ModelSpec spec_;
  ModelInfo info_;
  std::unique_ptr<llama_model, ModelDeleter> model_;
  const llama_vocab* vocab_ = nullptr;
};

}  // namespace ruvllm::llm::detail
