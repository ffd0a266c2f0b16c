// A GGUF model of the llm engine's ladder as an embedder (mean pooling is done by the engine).
#include "ruvllm/embed.h"
#include "ruvllm/llm.h"

namespace ruvllm::embed {
namespace {

class ModelEmbedder final : public Embedder {
 public:
  ModelEmbedder(std::shared_ptr<llm::Engine> engine, std::string model)
      : engine_(std::move(engine)), model_(std::move(model)) {
    if (!engine_) throw Error("model embedder: no engine");
    try {
      const llm::ModelInfo info = engine_->info(model_);
      dimension_ = static_cast<std::size_t>(info.n_embd);
      name_ = "gguf:" + model_ + "(" + info.architecture + "," + std::to_string(info.n_embd) + "d)";
    } catch (const Error& e) {
      throw e.prefixed("model embedder: ");
    }
  }

  std::size_t dimension() const override { return dimension_; }
  std::string name() const override { return name_; }

  Embedding embed(std::string_view text) const override {
    Embedding out;
    out.tokens = word_tokens(text).size();  // validates UTF-8 too
    out.known = out.tokens;
    if (out.tokens == 0) return out;
    try {
      out.vector = engine_->embed(model_, text);
    } catch (const Error& e) {
      throw e.prefixed("model embedder: ");
    }
    if (out.vector.size() != dimension_)
      throw Error("model embedder: the model returned a vector of the wrong dimension");
    return out;
  }

 private:
  std::shared_ptr<llm::Engine> engine_;
  std::string model_, name_;
  std::size_t dimension_ = 0;
};

}  // namespace

std::unique_ptr<Embedder> open_model_embedder(std::shared_ptr<llm::Engine> engine, std::string model) {
  return std::make_unique<ModelEmbedder>(std::move(engine), std::move(model));
}

}  // namespace ruvllm::embed
