// Shared inside the router room: the feature fit, the parameter layout, the cell, the labels and
// the compiled weights.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/random.h"
#include "ruvllm/router.h"

namespace ruvllm::router {

constexpr std::size_t kDomains = 16, kClusters = 4, kPca = 8, kMaxTiers = 16, kRetrievalHeads = 4;

// The historical-accuracy slots' estimator (words.cpp): per ladder model, ridge regression of its
// quality on the query's TF-IDF word vector (sublinear tf, smoothed idf, unit length).
struct WordModel {
  std::vector<std::string> terms;                    // sorted; a term's position is its column
  std::vector<float> idf;                            // per term
  std::size_t tiers = 0;                             // models with a row of weights
  std::vector<float> weight;                         // tiers × terms
  std::vector<double> intercept;                     // per tier: mean training quality; NaN = the model had no trial
  double alpha = 0;                                  // ridge strength, chosen by cross-validation
  std::unordered_map<std::string, uint32_t> column;  // term → column; built by index(), not saved
  void index();                                      // throws Error on a repeated term
};
// The query's TF-IDF vector over the model's terms: (column, value) sorted by column.
std::vector<std::pair<uint32_t, float>> word_vector(const WordModel& model, std::string_view text);
// out[m] = the predicted quality of tier m (untouched for a tier without trials).
void predict_accuracy(const WordModel& model, std::string_view text, float* out);
// Fits on the training queries; also gives each row's out-of-fold predictions (kFolds folds).
// A row's fold follows its query text, so a query repeated in the data never predicts itself.
constexpr std::size_t kFolds = 5;
std::size_t fold_of(std::string_view query_text);
constexpr double kRidgeStrengths[] = {2, 5, 10, 20, 50};  // α tried by cross-validation
WordModel fit_word_model(const std::vector<Outcome>& outcomes, std::size_t tiers,
                         std::vector<std::array<float, kMaxTiers>>* out_of_fold_predictions);
// Each row predicted by a fit without its fold, at the model's ridge strength.
std::vector<std::array<float, kMaxTiers>> out_of_fold_accuracy(const WordModel& model,
                                                               const std::vector<Outcome>& outcomes);

// What feature extraction learns from training data; saved with the model.
struct FeatureFit {
  std::size_t dim = 0;                   // embedding dimension (0 = no embeddings seen)
  std::vector<float> centre;             // dim: mean embedding (PCA centring)
  std::vector<float> pca;                // kPca × dim, orthonormal rows
  std::vector<float> domains, clusters;  // kDomains / kClusters × dim, unit centroids
  WordModel words;                       // the accuracy slots
  std::vector<float> shift, scale;       // kFeatures: normalised = (raw − shift) · scale
};

// Raw (un-normalised) features.
FeatureVector raw_features(const FeatureFit& fit, const Signals& s);
// Training rows' raw features with the accuracy slots out of fold: each row reads a word model fitted
// without its fold (fold_of), so no row's slots depend on its own label.
std::vector<FeatureVector> out_of_fold_features(const FeatureFit& fit, const std::vector<Outcome>& outcomes);
FeatureVector normalise(const FeatureFit& fit, const FeatureVector& raw);
// Fits PCA, clusters and the word model, then the normalisation on the training rows' features;
// `training_raw` (optional) receives those features, as out_of_fold_features would compute them.
FeatureFit fit_features(const std::vector<Outcome>& outcomes, std::size_t tiers, uint64_t seed,
                        std::vector<FeatureVector>* training_raw = nullptr);
// Training rows' normalised features (out-of-fold accuracy slots), in order.
std::vector<FeatureVector> training_features(const FeatureFit& fit, const std::vector<Outcome>& outcomes);
std::size_t nearest(const std::vector<float>& centroids, std::size_t k, const std::vector<float>& v);

// Where each parameter lives in the flat θ.
struct Layout {
  std::size_t D, H, rw, ru, T, N, C;  // chunk = D: inputs per step
  std::size_t W1, W2, U1, U2, bz, bh, zeta, nu;
  std::size_t Am, am, Ac, ac, Ar, ar, wt, bt, wp, bp, wc, bc, total;
  Layout(const RouterShape& s, std::size_t models, std::size_t context_bins);
};

// The parameter regions that are matrices (rows × cols at offset): the parts that are quantised,
// thresholded and L2'd, in layout order (compile()'s scale_row follows it).
struct Matrix {
  std::size_t offset, rows, cols;
  bool sparse;  // W1, W2, U1, U2: the cell's low-rank factors, thresholded by IHT
};
std::vector<Matrix> matrices(const Layout& L);

// ---- labels (labels.cpp) -------------------------------------------------------------------------

inline std::array<double, kMaxTiers> nan_tiers() {
  std::array<double, kMaxTiers> a;
  a.fill(std::numeric_limits<double>::quiet_NaN());
  return a;
}

struct Labels {
  int model = -1, context = -1, retrieval = -1;  // -1 = masked
  double temperature = std::numeric_limits<double>::quiet_NaN(), top_p = std::numeric_limits<double>::quiet_NaN();
  std::array<double, kMaxTiers> quality = nan_tiers();  // best quality per model, NaN = no trial
  double best_quality = -1;
  double margin = 0;                       // best U − second best U: the curriculum's clarity
  std::array<double, kMaxTiers> target{};  // the model head's: sums to 1 when model ≥ 0 (make_labels)
  double weight = 1;                       // evidence rows: TrainParams::evidence_share of the loss
  bool labelled() const { return model >= 0 || context >= 0 || retrieval >= 0; }
};
// U = quality − λ·latency − μ·cost of one trial (an unknown latency or cost counts as 0).
double utility(const Trial& t, double lambda_latency, double mu_cost);
Labels make_labels(const Outcome& o, const Ladder& ladder, const TrainParams& p);
void weigh_evidence(std::vector<Labels>& Y, double share);

// ---- the cell (cell.cpp) -------------------------------------------------------------------------

constexpr std::size_t kMaxHidden = 128, kMaxRank = 64, kMaxSteps = 8;
constexpr double kTempMin = 0.05, kTempMax = 2.0;  // the temperature head's clip

inline double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
inline double softplus(double x) { return x > 30 ? x : std::log1p(std::exp(x)); }

// Forward values of one example kept for the backward pass.
struct Trace {
  double a[kMaxSteps][kMaxRank], b[kMaxSteps][kMaxRank];
  double z[kMaxSteps][kMaxHidden], c[kMaxSteps][kMaxHidden], h[kMaxSteps + 1][kMaxHidden];
  double pm[kMaxTiers], pc[16], pr[kRetrievalHeads];
  double temp_pre, temp, tp_pre, top_p, conf_pre, conf;
};

// Loss of one example (double precision, as training sees it); adds its gradient (times `scale`)
// into g when g is not null. `tr` is scratch space, reused across calls.
double example_loss(const Layout& L, const double* th, const FeatureVector& x, const Labels& y, const TrainParams& p,
                    Trace& tr, double* g, double scale);

struct Router::Impl {
  FeatureFit fit;
  bool fitted = false;
  bool context_trained = false, retrieval_trained = false, sampling_trained = false;
  // The model, sampling and confidence heads learn from model-labelled rows only. Slots that took
  // one value on all of them (the retrieval slots, when the outcome set had no retrieval but
  // evidence rows did) carry nothing those heads learned: they read that value there instead
  // (NaN = the slot varied: read as is). Empty: no such slot.
  std::vector<float> model_view;
  // Float copies of θ for decide(), and the int8 versions (per-row scale) after quantize().
  std::vector<float> f;
  std::vector<int8_t> q;
  std::vector<float> row_scale;             // one per quantised row, in layout order
  std::array<std::size_t, 10> scale_row{};  // first row_scale entry of each matrix
};

// ---- inference (int8.cpp) ------------------------------------------------------------------------

// θ into the float copy decide() reads, and with `quantize` into int8 rows with one scale each.
void compile(const Layout& L, const std::vector<double>& theta, bool quantize, Router::Impl& impl);

struct HeadOutputs {
  float pm[kMaxTiers], pc[16], pr[kRetrievalHeads];
  float temp, top_p, conf;
};
// Fills `o` for x (float or int8 weights); the model, sampling and confidence heads from x as the
// model view shows it.
void infer_heads(const Layout& L, const Router::Impl& impl, bool quantized, const FeatureVector& x, HeadOutputs& o);

using common::normal;  // common/random.h: the same numbers on every standard library
using common::uniform_below;

// tier_for's arithmetic, shared with the evaluation's curve so that a breakpoint found there is
// exactly where tier_for switches: the allowed models' normalised probability mass above each
// allowed model m below the largest allowed one, passed to visit(m, above) in ascending m until it
// returns true. Returns the largest allowed model; throws Error when none is allowed.
template <typename Visit>
std::size_t walk_masses_above(const float* p, std::size_t models, const bool* allowed, Visit&& visit) {
  double mass = 0;
  std::size_t largest = models;
  for (std::size_t m = 0; m < models; ++m) {
    if (allowed && !allowed[m]) continue;
    mass += p[m];
    largest = m;
  }
  if (largest == models) throw Error("router: no model is allowed");
  double above = 1;
  for (std::size_t m = 0; m < largest; ++m) {
    if (allowed && !allowed[m]) continue;
    above -= mass > 0 ? p[m] / mass : 0;
    if (visit(m, above)) break;
  }
  return largest;
}

}  // namespace ruvllm::router
