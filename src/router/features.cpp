// The router's 128 features, slot by slot (docs/router.md has the table), and what extraction
// fits on training data: PCA of the query vectors, spherical k-means domains and clusters, the
// word model behind each ladder model's expected accuracy (words.cpp), and the normalisation.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "common/utf8.h"
#include "internal.h"

namespace ruvllm::router {
namespace {

constexpr std::size_t kQuery = 0, kLang = 1, kDomain = 9, kUser = 25, kType = 26;
constexpr std::size_t kEmbedNorm = 32, kPc = 33, kEntropy = 41, kSparsity = 42, kCluster = 43;
constexpr std::size_t kRetK = 47, kRetScore = 48, kRetEntropy = 52, kRetDepth = 53, kRetRecall = 54;
constexpr std::size_t kDensity = 55, kCoherence = 71, kTopRead = 8;
constexpr std::size_t kBudget = 95, kDevice = 96, kPrivacy = 100, kMemory = 104, kBattery = 105;
constexpr std::size_t kConcurrent = 106, kAccuracy = 107, kText = 123;

std::array<std::string, kFeatures> make_names() {
  std::array<std::string, kFeatures> n;
  auto idx = [](std::size_t i) { return (i < 10 ? "0" : "") + std::to_string(i); };
  n[kQuery] = "query.tokens";
  const char* langs[] = {"latin", "latin_ext", "cyrillic", "greek", "arabic_hebrew", "indic", "cjk", "other"};
  for (std::size_t i = 0; i < 8; ++i) n[kLang + i] = std::string("query.lang_") + langs[i];
  for (std::size_t i = 0; i < kDomains; ++i) n[kDomain + i] = "query.domain_" + idx(i);
  n[kUser] = "query.user_frequency";
  const char* types[] = {"question", "multiple_choice", "math", "code", "instruction", "other"};
  for (std::size_t i = 0; i < 6; ++i) n[kType + i] = std::string("query.type_") + types[i];
  n[kEmbedNorm] = "embed.norm";
  for (std::size_t i = 0; i < kPca; ++i) n[kPc + i] = "embed.pc" + std::to_string(i);
  n[kEntropy] = "embed.entropy";
  n[kSparsity] = "embed.sparsity";
  for (std::size_t i = 0; i < kClusters; ++i) n[kCluster + i] = "embed.cluster" + std::to_string(i);
  n[kRetK] = "retrieval.k";
  const char* stats[] = {"mean", "std", "min", "max"};
  for (std::size_t i = 0; i < 4; ++i) n[kRetScore + i] = std::string("retrieval.score_") + stats[i];
  n[kRetEntropy] = "retrieval.attention_entropy";
  n[kRetDepth] = "retrieval.graph_depth";
  n[kRetRecall] = "retrieval.recall_estimate";
  for (std::size_t i = 0; i < 16; ++i) n[kDensity + i] = "retrieval.density_" + idx(i);
  for (std::size_t i = 0; i < kTopRead; ++i) {
    n[kCoherence + i] = "retrieval.coherence_mean_" + idx(i);
    n[kCoherence + 8 + i] = "retrieval.coherence_centroid_" + idx(i);
    n[kCoherence + 16 + i] = "retrieval.coherence_top1_" + idx(i);
  }
  n[kBudget] = "system.latency_budget";
  const char* devices[] = {"cpu", "cpu_small", "gpu", "other"};
  for (std::size_t i = 0; i < 4; ++i) n[kDevice + i] = std::string("system.device_") + devices[i];
  const char* privacy[] = {"public", "internal", "confidential", "restricted"};
  for (std::size_t i = 0; i < 4; ++i) n[kPrivacy + i] = std::string("system.privacy_") + privacy[i];
  n[kMemory] = "system.memory_available";
  n[kBattery] = "system.battery";
  n[kConcurrent] = "system.concurrent_requests";
  for (std::size_t i = 0; i < kMaxTiers; ++i) n[kAccuracy + i] = "system.accuracy_model_" + idx(i);
  const char* text[] = {"text.chars", "text.digit_share", "text.lines", "text.known_share", "text.mean_word_length"};
  for (std::size_t i = 0; i < 5; ++i) n[kText + i] = text[i];
  return n;
}

// The script of a code point, as one of the 8 language slots.
std::size_t script(char32_t c) {
  if (c < 0x80) return 0;
  if (c < 0x250 || (c >= 0x1E00 && c < 0x1F00)) return 1;
  if (c >= 0x400 && c < 0x530) return 2;
  if ((c >= 0x370 && c < 0x400) || (c >= 0x1F00 && c < 0x2000)) return 3;
  if (c >= 0x590 && c < 0x800) return 4;
  if (c >= 0x900 && c < 0xE00) return 5;
  if ((c >= 0x3040 && c < 0x3100) || (c >= 0x4E00 && c < 0xA000) || (c >= 0xAC00 && c < 0xD7B0) ||
      (c >= 0x3400 && c < 0x4DC0)) {
    return 6;
  }
  return 7;
}

bool is_letter(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c != 0xD7 && c != 0xF7 && c < 0x2000) ||
         c >= 0x3040;
}

char32_t decode(std::string_view s, std::size_t len) {
  const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  if (len == 1) return b(0);
  if (len == 2) return ((b(0) & 0x1Fu) << 6) | (b(1) & 0x3Fu);
  if (len == 3) return ((b(0) & 0x0Fu) << 12) | ((b(1) & 0x3Fu) << 6) | (b(2) & 0x3Fu);
  return ((b(0) & 0x07u) << 18) | ((b(1) & 0x3Fu) << 12) | ((b(2) & 0x3Fu) << 6) | (b(3) & 0x3Fu);
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
  return out;
}

bool starts_with_word(const std::string& lower, std::initializer_list<std::string_view> words) {
  const std::size_t start = lower.find_first_not_of(" \t\r\n\"'(");
  if (start == std::string::npos) return false;
  for (std::string_view w : words) {
    if (lower.compare(start, w.size(), w) == 0 &&
        (start + w.size() == lower.size() || !std::isalpha(static_cast<unsigned char>(lower[start + w.size()])))) {
      return true;
    }
  }
  return false;
}

// Query-type indicators (not exclusive): question, multiple choice, math, code, instruction, other.
void query_type(std::string_view text, float* out) {
  const std::string lower = lower_ascii(text);
  const bool question =
      lower.find('?') != std::string::npos || starts_with_word(lower, {"who", "what", "when", "where", "which", "why",
                                                                       "how", "is", "are", "does", "do", "can", "did"});
  // Options on their own lines: "A." / "A)" / "(A)" at a line start, for at least two letters.
  int options = 0;
  for (char letter : {'a', 'b', 'c', 'd'}) {
    const std::string forms[] = {std::string("\n") + letter + ".", std::string("\n") + letter + ")",
                                 std::string("\n(") + letter + ")"};
    for (const std::string& f : forms) {
      if (lower.find(f) != std::string::npos) {
        ++options;
        break;
      }
    }
  }
  std::size_t digits = 0, operators = 0;
  for (char c : text) {
    digits += (c >= '0' && c <= '9');
    operators += (c == '+' || c == '*' || c == '=' || c == '/' || c == '%' || c == '$');
  }
  const bool math =
      operators >= 2 ||
      (digits >= 3 && (lower.find("how many") != std::string::npos || lower.find("how much") != std::string::npos ||
                       lower.find("calculate") != std::string::npos || lower.find("total") != std::string::npos));
  const bool code = lower.find("```") != std::string::npos || lower.find("def ") != std::string::npos ||
                    lower.find("();") != std::string::npos || lower.find("#include") != std::string::npos ||
                    (std::count(text.begin(), text.end(), '{') >= 1 && std::count(text.begin(), text.end(), ';') >= 2);
  const bool instruction =
      starts_with_word(lower, {"write", "explain", "list", "summarize", "summarise", "translate", "give", "describe",
                               "compare", "tell", "create", "generate", "please", "find", "solve"});
  out[0] = question;
  out[1] = options >= 2;
  out[2] = math;
  out[3] = code;
  out[4] = instruction;
  out[5] = !(question || options >= 2 || math || code || instruction);
}

double cosine(const float* a, const float* b, std::size_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0;
}

void check_finite(const std::vector<float>& v, const char* what) {
  for (float x : v) {
    if (!std::isfinite(x)) throw Error(std::string("router: ") + what + " has a non-finite value");
  }
}

// Spherical k-means (k-means++ start, deterministic under the seed) on unit vectors.
std::vector<float> spherical_kmeans(const std::vector<const std::vector<float>*>& rows, std::size_t dim, std::size_t k,
                                    uint64_t seed) {
  std::vector<float> c(k * dim, 0.0f);
  if (rows.empty()) return c;
  std::mt19937_64 rng(seed);
  std::vector<double> best(rows.size(), 1e300);
  std::size_t first = uniform_below(rng, rows.size());
  std::copy(rows[first]->begin(), rows[first]->end(), c.begin());
  for (std::size_t j = 1; j < k; ++j) {
    double total = 0;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const double d = 1 - cosine(rows[i]->data(), &c[(j - 1) * dim], dim);
      best[i] = std::min(best[i], std::max(0.0, d));
      total += best[i] * best[i];
    }
    double pick = total > 0 ? std::uniform_real_distribution<double>(0, total)(rng) : 0;
    std::size_t chosen = 0;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      pick -= best[i] * best[i];
      if (pick <= 0) {
        chosen = i;
        break;
      }
    }
    std::copy(rows[chosen]->begin(), rows[chosen]->end(), c.begin() + static_cast<std::ptrdiff_t>(j * dim));
  }
  std::vector<double> sum(k * dim);
  for (int iteration = 0; iteration < 25; ++iteration) {
    std::fill(sum.begin(), sum.end(), 0.0);
    for (const auto* r : rows) {
      const std::size_t j = nearest(c, k, *r);
      for (std::size_t t = 0; t < dim; ++t) sum[j * dim + t] += (*r)[t];
    }
    for (std::size_t j = 0; j < k; ++j) {
      double norm = 0;
      for (std::size_t t = 0; t < dim; ++t) norm += sum[j * dim + t] * sum[j * dim + t];
      if (norm <= 0) continue;  // an empty cluster keeps its centroid
      norm = std::sqrt(norm);
      for (std::size_t t = 0; t < dim; ++t) c[j * dim + t] = static_cast<float>(sum[j * dim + t] / norm);
    }
  }
  return c;
}

// Top principal directions of the centred rows by power iteration with deflation.
std::vector<float> principal_components(const std::vector<const std::vector<float>*>& rows,
                                        const std::vector<float>& centre, std::size_t dim, uint64_t seed) {
  std::vector<double> cov(dim * dim, 0.0), x(dim);
  for (const auto* r : rows) {
    for (std::size_t a = 0; a < dim; ++a) x[a] = (*r)[a] - centre[a];
    for (std::size_t a = 0; a < dim; ++a) {
      for (std::size_t b = 0; b < dim; ++b) cov[a * dim + b] += x[a] * x[b];
    }
  }
  std::vector<float> out(kPca * dim, 0.0f);
  std::mt19937_64 rng(seed);
  std::vector<double> v(dim), w(dim);
  for (std::size_t k = 0; k < kPca && !rows.empty(); ++k) {
    for (double& e : v) e = normal(rng);
    double lambda = 0;
    for (int it = 0; it < 200; ++it) {
      for (std::size_t a = 0; a < dim; ++a) {
        double s = 0;
        for (std::size_t b = 0; b < dim; ++b) s += cov[a * dim + b] * v[b];
        w[a] = s;
      }
      double norm = std::sqrt(std::inner_product(w.begin(), w.end(), w.begin(), 0.0));
      if (norm <= 0) break;
      for (std::size_t a = 0; a < dim; ++a) v[a] = w[a] / norm;
      lambda = norm;
    }
    for (std::size_t a = 0; a < dim; ++a) out[k * dim + a] = static_cast<float>(v[a]);
    for (std::size_t a = 0; a < dim; ++a) {  // deflate
      for (std::size_t b = 0; b < dim; ++b) cov[a * dim + b] -= lambda * v[a] * v[b];
    }
  }
  return out;
}

}  // namespace

const std::array<std::string_view, kFeatures>& feature_names() {
  static const std::array<std::string, kFeatures> names = make_names();
  static const std::array<std::string_view, kFeatures> views = [] {
    std::array<std::string_view, kFeatures> v;
    for (std::size_t i = 0; i < kFeatures; ++i) v[i] = names[i];
    return v;
  }();
  return views;
}

std::size_t nearest(const std::vector<float>& centroids, std::size_t k, const std::vector<float>& v) {
  const std::size_t dim = v.size();
  std::size_t best = 0;
  double best_dot = -1e300;
  for (std::size_t j = 0; j < k; ++j) {
    double d = 0;
    for (std::size_t t = 0; t < dim; ++t) d += static_cast<double>(centroids[j * dim + t]) * v[t];
    if (d > best_dot) best_dot = d, best = j;
  }
  return best;
}

FeatureVector raw_features(const FeatureFit& fit, const Signals& s) {
  FeatureVector f{};
  const std::string& text = s.query.text;
  if (common::first_invalid_utf8(text)) throw Error("router: the query is not valid UTF-8");
  check_finite(s.query.embedding, "the query embedding");
  check_finite(s.retrieval.scores, "a retrieval score");
  for (const auto& e : s.retrieval.embeddings) check_finite(e, "a retrieved node's embedding");
  const double numbers[] = {s.query.user_requests_24h,  s.retrieval.attention_entropy, s.retrieval.search_agreement,
                            s.system.latency_budget_ms, s.system.memory_available_gib, s.system.battery};
  for (double x : numbers) {
    if (!std::isfinite(x)) throw Error("router: a request signal is not a finite number");
  }
  // --- query
  f[kQuery] = static_cast<float>(std::log1p(static_cast<double>(s.query.tokens)));
  std::array<double, 8> script_count{};
  std::size_t letters = 0, digits = 0, lines = 1, word_chars = 0, words = 0;
  bool in_word = false;
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len = 1;
    common::classify_utf8(std::string_view(text).substr(i), len);
    const char32_t c = decode(std::string_view(text).substr(i, len), len);
    i += len;
    if (c == '\n') ++lines;
    if (c >= '0' && c <= '9') ++digits;
    const bool letter = is_letter(c);
    if (letter) {
      ++letters;
      ++script_count[script(c)];
      ++word_chars;
      if (!in_word) ++words;
    }
    in_word = letter;
  }
  for (std::size_t i = 0; i < 8; ++i) f[kLang + i] = letters ? static_cast<float>(script_count[i] / letters) : 0;
  f[kUser] = static_cast<float>(std::log1p(std::max(0.0, s.query.user_requests_24h)));
  query_type(text, &f[kType]);
  // --- text shape
  f[kText + 0] = static_cast<float>(std::log1p(static_cast<double>(text.size())));
  f[kText + 1] = text.empty() ? 0 : static_cast<float>(static_cast<double>(digits) / text.size());
  f[kText + 2] = static_cast<float>(std::log(static_cast<double>(lines)));
  f[kText + 3] = s.query.tokens ? static_cast<float>(static_cast<double>(s.query.known_tokens) / s.query.tokens) : 0;
  f[kText + 4] = words ? static_cast<float>(static_cast<double>(word_chars) / words) : 0;
  // --- embedding
  const std::vector<float>& e = s.query.embedding;
  if (!e.empty() && fit.dim && e.size() != fit.dim) {
    throw Error("router: the query embedding has " + std::to_string(e.size()) +
                " dimensions, the router was fitted on " + std::to_string(fit.dim));
  }
  if (!e.empty()) {
    double norm = 0, l1 = 0;
    for (float x : e) norm += static_cast<double>(x) * x, l1 += std::fabs(x);
    norm = std::sqrt(norm);
    f[kEmbedNorm] = static_cast<float>(norm);
    if (norm > 0) {
      double entropy = 0;
      for (float x : e) {
        const double p = static_cast<double>(x) * x / (norm * norm);
        if (p > 0) entropy -= p * std::log(p);
      }
      const double n = static_cast<double>(e.size());
      f[kEntropy] = static_cast<float>(entropy / std::log(std::max(2.0, n)));
      f[kSparsity] = n > 1 ? static_cast<float>((std::sqrt(n) - l1 / norm) / (std::sqrt(n) - 1)) : 0;
    }
    if (fit.dim) {
      for (std::size_t k = 0; k < kPca; ++k) {
        double d = 0;
        for (std::size_t t = 0; t < fit.dim; ++t)
          d += static_cast<double>(fit.pca[k * fit.dim + t]) * (e[t] - fit.centre[t]);
        f[kPc + k] = static_cast<float>(d);
      }
      for (std::size_t j = 0; j < kDomains; ++j)
        f[kDomain + j] = static_cast<float>(cosine(&fit.domains[j * fit.dim], e.data(), fit.dim));
      f[kCluster + nearest(fit.clusters, kClusters, e)] = 1;
    }
  }
  // --- retrieval
  const auto& r = s.retrieval;
  if (!r.scores.empty()) {
    const double k = static_cast<double>(r.scores.size());
    double mean = 0, sq = 0, lo = r.scores[0], hi = r.scores[0];
    for (float x : r.scores)
      mean += x, sq += static_cast<double>(x) * x, lo = std::min<double>(lo, x), hi = std::max<double>(hi, x);
    mean /= k;
    f[kRetK] = static_cast<float>(std::log1p(k));
    f[kRetScore + 0] = static_cast<float>(mean);
    f[kRetScore + 1] = static_cast<float>(std::sqrt(std::max(0.0, sq / k - mean * mean)));
    f[kRetScore + 2] = static_cast<float>(lo);
    f[kRetScore + 3] = static_cast<float>(hi);
    for (std::size_t i = 0; i < 16 && i < r.scores.size(); ++i) f[kDensity + i] = r.scores[i];
  }
  f[kRetEntropy] = static_cast<float>(r.attention_entropy);
  f[kRetDepth] = static_cast<float>(std::max(0, r.graph_depth));
  f[kRetRecall] = static_cast<float>(std::clamp(r.search_agreement, 0.0, 1.0));
  const std::size_t top = std::min(kTopRead, r.embeddings.size());
  if (top > 0) {
    const std::size_t dim = r.embeddings[0].size();
    for (std::size_t i = 0; i < top; ++i) {
      if (r.embeddings[i].size() != dim) throw Error("router: retrieved embeddings differ in dimension");
    }
    std::vector<float> centroid(dim, 0.0f);
    for (std::size_t i = 0; i < top; ++i) {
      for (std::size_t t = 0; t < dim; ++t) centroid[t] += r.embeddings[i][t];
    }
    for (std::size_t i = 0; i < top; ++i) {
      double mean = 0;
      for (std::size_t j = 0; j < top; ++j) {
        if (j != i) mean += cosine(r.embeddings[i].data(), r.embeddings[j].data(), dim);
      }
      f[kCoherence + i] = top > 1 ? static_cast<float>(mean / static_cast<double>(top - 1)) : 0;
      f[kCoherence + 8 + i] = static_cast<float>(cosine(r.embeddings[i].data(), centroid.data(), dim));
      f[kCoherence + 16 + i] = static_cast<float>(cosine(r.embeddings[i].data(), r.embeddings[0].data(), dim));
    }
  }
  // --- system
  f[kBudget] = static_cast<float>(std::log1p(std::max(0.0, s.system.latency_budget_ms)));
  f[kDevice + static_cast<std::size_t>(std::clamp(s.system.device_class, 0, 3))] = 1;
  f[kPrivacy + static_cast<std::size_t>(std::clamp(s.system.privacy, 0, 3))] = 1;
  f[kMemory] = static_cast<float>(std::log1p(std::max(0.0, s.system.memory_available_gib)));
  f[kBattery] = static_cast<float>(std::clamp(s.system.battery, 0.0, 1.0));
  f[kConcurrent] = static_cast<float>(std::log1p(static_cast<double>(s.system.concurrent_requests)));
  // Each model's expected quality on this query, from its words.
  predict_accuracy(fit.words, text, &f[kAccuracy]);
  return f;
}

FeatureVector normalise(const FeatureFit& fit, const FeatureVector& raw) {
  FeatureVector out;
  // Clipped: a slot that was rare in training (an indicator seen once in 10,000 rows) must not reach
  // the network as a value in the hundreds.
  for (std::size_t i = 0; i < kFeatures; ++i) out[i] = std::clamp((raw[i] - fit.shift[i]) * fit.scale[i], -8.0f, 8.0f);
  return out;
}

namespace {
// Raw features with the accuracy slots replaced by the given (out-of-fold) predictions.
std::vector<FeatureVector> with_accuracy(const FeatureFit& fit, const std::vector<Outcome>& outcomes,
                                         const std::vector<std::array<float, kMaxTiers>>& accuracy) {
  std::vector<FeatureVector> out(outcomes.size());
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    out[i] = raw_features(fit, outcomes[i].signals);
    std::copy(accuracy[i].begin(), accuracy[i].end(), out[i].begin() + kAccuracy);
  }
  return out;
}
}  // namespace

FeatureFit fit_features(const std::vector<Outcome>& outcomes, std::size_t tiers, uint64_t seed,
                        std::vector<FeatureVector>* training_raw) {
  FeatureFit fit;
  std::vector<const std::vector<float>*> rows;
  for (const Outcome& o : outcomes) {
    const auto& e = o.signals.query.embedding;
    if (e.empty()) continue;
    if (fit.dim == 0) fit.dim = e.size();
    if (e.size() != fit.dim) throw Error("router: training queries' embeddings differ in dimension");
    check_finite(e, "a training query's embedding");
    rows.push_back(&e);
  }
  if (fit.dim) {
    fit.centre.assign(fit.dim, 0.0f);
    std::vector<double> sum(fit.dim, 0.0);
    for (const auto* r : rows) {
      for (std::size_t t = 0; t < fit.dim; ++t) sum[t] += (*r)[t];
    }
    for (std::size_t t = 0; t < fit.dim; ++t)
      fit.centre[t] = static_cast<float>(sum[t] / static_cast<double>(rows.size()));
    fit.pca = principal_components(rows, fit.centre, fit.dim, seed);
    fit.domains = spherical_kmeans(rows, fit.dim, kDomains, seed + 1);
    fit.clusters = spherical_kmeans(rows, fit.dim, kClusters, seed + 2);
  }
  std::vector<std::array<float, kMaxTiers>> accuracy;
  fit.words = fit_word_model(outcomes, tiers, &accuracy);
  // Normalisation from the training rows' out-of-fold raw features.
  fit.shift.assign(kFeatures, 0.0f);
  fit.scale.assign(kFeatures, 1.0f);
  std::vector<double> mean(kFeatures, 0.0), sq(kFeatures, 0.0);
  std::vector<FeatureVector> raws = with_accuracy(fit, outcomes, accuracy);
  for (const FeatureVector& raw : raws) {
    for (std::size_t i = 0; i < kFeatures; ++i) mean[i] += raw[i], sq[i] += static_cast<double>(raw[i]) * raw[i];
  }
  const double n = static_cast<double>(std::max<std::size_t>(outcomes.size(), 1));
  for (std::size_t i = 0; i < kFeatures; ++i) {
    const double m = mean[i] / n, sd = std::sqrt(std::max(0.0, sq[i] / n - m * m));
    fit.shift[i] = static_cast<float>(m);
    // A slot that never varied in training carries no information: it is zeroed, not amplified.
    fit.scale[i] = sd > 1e-6 ? static_cast<float>(1 / sd) : 0.0f;
  }
  if (training_raw) *training_raw = std::move(raws);
  return fit;
}

std::vector<FeatureVector> out_of_fold_features(const FeatureFit& fit, const std::vector<Outcome>& outcomes) {
  return with_accuracy(fit, outcomes, out_of_fold_accuracy(fit.words, outcomes));
}

std::vector<FeatureVector> training_features(const FeatureFit& fit, const std::vector<Outcome>& outcomes) {
  std::vector<FeatureVector> out = out_of_fold_features(fit, outcomes);
  for (FeatureVector& f : out) f = normalise(fit, f);
  return out;
}

}  // namespace ruvllm::router
