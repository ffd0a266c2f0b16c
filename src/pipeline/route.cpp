// The routing stage's inputs: what the embedder says about the query, as the router's plain signals.
#include "ruvllm/embed.h"
#include "ruvllm/pipeline.h"

namespace ruvllm::pipeline {

router::QuerySignals query_signals(const embed::Embedder& embedder, std::string text) {
  router::QuerySignals q;
  auto e = embedder.embed(text);
  q.text = std::move(text);
  q.embedding = std::move(e.vector);
  q.tokens = e.tokens;
  q.known_tokens = e.known;
  return q;
}

}  // namespace ruvllm::pipeline
