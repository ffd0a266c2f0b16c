// Near-duplicate lookup: MinHash LSH bands give the candidates, their Jaccard estimate and (where
// both sides have vectors) the cosine confirm them.
#include <algorithm>
#include <cmath>

#include "store.h"
#include "text_match.h"

namespace ruvllm::memory {

using detail::require_utf8;
using detail::Statement;
using detail::to_floats;

std::optional<std::string> Memory::find_duplicate(std::string_view text, const std::vector<float>& vector,
                                                  double vector_threshold) const {
  require_utf8(text, "text");
  if (!vector.empty()) impl_->check_vector(vector, "vector");
  const auto tokens = embed::word_tokens(text);
  if (tokens.empty()) return std::nullopt;
  const auto sig = detail::minhash(tokens);
  Impl::Reader reader(*impl_);
  std::vector<int64_t> candidates;
  Statement band(*reader, "SELECT key FROM minhash WHERE band = ? AND hash = ? LIMIT 64");
  const auto bands = detail::band_hashes(sig);
  for (std::size_t b = 0; b < bands.size(); ++b) {
    band.bind(1, static_cast<int64_t>(b)).bind(2, bands[b]);
    while (band.step()) candidates.push_back(band.integer(0));
    band.reset();
  }
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  Statement get(*reader,
                "SELECT n.id, n.text, v.data FROM nodes n LEFT JOIN vectors v ON v.key = n.key WHERE n.key = ?");
  for (int64_t key : candidates) {
    get.bind(1, key);
    if (get.step() && detail::jaccard_estimate(sig, detail::minhash(embed::word_tokens(get.text(1)))) >= 0.8) {
      bool same = true;
      if (!vector.empty() && !get.is_null(2) && impl_->params.index.metric != Metric::l2) {
        const std::vector<float> other = to_floats(get.blob(2));
        double dot = 0, na = 0, nb = 0;
        for (std::size_t i = 0; i < other.size() && i < vector.size(); ++i) {
          dot += static_cast<double>(vector[i]) * other[i];
          na += static_cast<double>(vector[i]) * vector[i];
          nb += static_cast<double>(other[i]) * other[i];
        }
        same = na > 0 && nb > 0 && dot / std::sqrt(na * nb) >= vector_threshold;
      }
      if (same) return get.text(0);
    }
    get.reset();
  }
  return std::nullopt;
}

}  // namespace ruvllm::memory
