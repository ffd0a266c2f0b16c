// Training: the mean loss over labelled outcomes and Adam in the paper's three phases (dense →
// iterative hard thresholding → retraining on the fixed support), clear examples first.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "common/adam.h"
#include "common/random.h"
#include "internal.h"

namespace ruvllm::router {
namespace {

// The weight decay of the mean loss: the prior's precision l2 spread over the training rows (as in
// a MAP estimate, Σ losses + l2/2·‖W‖²), so that the prior's pull weakens as the evidence grows.
double decay(const TrainParams& p, std::size_t rows) {
  return p.l2 / static_cast<double>(std::max<std::size_t>(rows, 1));
}

// Mean loss + decay/2·‖matrices‖² over the examples in `order`, gradient into g (zeroed first);
// decay = decay(p, X.size()).
double batch_loss(const Layout& L, const std::vector<double>& th, const std::vector<FeatureVector>& X,
                  const std::vector<Labels>& Y, const std::size_t* order, std::size_t n, const TrainParams& p,
                  std::vector<double>* g) {
  const double l2 = decay(p, X.size());
  if (g) g->assign(th.size(), 0.0);
  Trace tr;
  double total = 0;
  const double scale = 1.0 / static_cast<double>(n);
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = order[k];
    total += Y[i].weight * example_loss(L, th.data(), X[i], Y[i], p, tr, g ? g->data() : nullptr, scale * Y[i].weight);
  }
  double reg = 0;
  for (const Matrix& m : matrices(L)) {
    for (std::size_t e = m.offset; e < m.offset + m.rows * m.cols; ++e) {
      reg += th[e] * th[e];
      if (g) (*g)[e] += l2 * th[e];
    }
  }
  return total * scale + 0.5 * l2 * reg;
}

// Keeps the largest (1 − sparsity) share of each cell matrix; `support` records what survived.
void hard_threshold(const Layout& L, std::vector<double>& th, double sparsity, std::vector<char>& support) {
  support.assign(th.size(), 1);
  for (const Matrix& m : matrices(L)) {
    if (!m.sparse) continue;
    const std::size_t n = m.rows * m.cols, keep = static_cast<std::size_t>(std::ceil((1 - sparsity) * n));
    if (keep >= n) continue;
    std::vector<double> mags(n);
    for (std::size_t e = 0; e < n; ++e) mags[e] = std::fabs(th[m.offset + e]);
    std::nth_element(mags.begin(), mags.begin() + static_cast<std::ptrdiff_t>(n - keep), mags.end());
    const double cut = mags[n - keep];
    std::size_t kept = 0;
    for (std::size_t e = 0; e < n; ++e) {  // ties at the cut: keep the first ones, exactly `keep` in all
      const bool survive = std::fabs(th[m.offset + e]) > cut || (std::fabs(th[m.offset + e]) == cut && kept < keep);
      if (survive && kept < keep) {
        ++kept;
      } else {
        th[m.offset + e] = 0;
        support[m.offset + e] = 0;
      }
    }
  }
}

// The outcomes that label some head, with their features (features(i): outcome i's, asked for
// labelled outcomes only), weighed as the loss counts them.
struct Rows {
  std::vector<FeatureVector> X;
  std::vector<Labels> Y;
};
template <typename Features>
Rows labelled_rows(const std::vector<Outcome>& outcomes, const Ladder& ladder, const TrainParams& p,
                   Features&& features) {
  Rows rows;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    Labels y = make_labels(outcomes[i], ladder, p);
    if (!y.labelled()) continue;
    rows.X.push_back(features(i));
    rows.Y.push_back(y);
  }
  return rows;
}

// The model head starts at the targets' prior (add-one counts).
void start_at_prior(const Layout& L, const std::vector<Labels>& Y, std::vector<double>& th) {
  std::vector<double> count(L.N, 1.0);
  double total = static_cast<double>(L.N);
  for (const Labels& y : Y) {
    if (y.model < 0) continue;
    for (std::size_t m = 0; m < L.N; ++m) count[m] += y.target[m];
    total += 1;
  }
  for (std::size_t m = 0; m < L.N; ++m) th[L.am + m] = std::log(count[m] / total);
}

// Router::Impl::model_view: the slots that took one value on every model row (NaN elsewhere), or
// empty when every slot varied.
std::vector<float> model_view(const Rows& rows) {
  std::vector<float> view(kFeatures, std::numeric_limits<float>::quiet_NaN());
  std::vector<char> seen(kFeatures, 0), varied(kFeatures, 0);
  for (std::size_t i = 0; i < rows.X.size(); ++i) {
    if (rows.Y[i].model < 0) continue;
    for (std::size_t k = 0; k < kFeatures; ++k) {
      if (!seen[k])
        seen[k] = 1, view[k] = rows.X[i][k];
      else if (rows.X[i][k] != view[k])
        varied[k] = 1;
    }
  }
  bool any = false;
  for (std::size_t k = 0; k < kFeatures; ++k) {
    if (varied[k]) view[k] = std::numeric_limits<float>::quiet_NaN();
    any |= !varied[k];
  }
  if (!any) view.clear();
  return view;
}

// The rows of one epoch: the curriculum's clearest share early in the dense phase, else all.
std::vector<std::size_t> epoch_rows(const TrainParams& p, int epoch, int dense, const std::vector<std::size_t>& all,
                                    const std::vector<std::size_t>& by_clarity) {
  if (!(p.curriculum && epoch < dense / 2)) return all;
  const double share = 0.3 + 0.7 * epoch / std::max(1.0, dense / 2.0);
  const auto count = std::max<std::size_t>(1, static_cast<std::size_t>(share * all.size()));
  return {by_clarity.begin(), by_clarity.begin() + static_cast<std::ptrdiff_t>(count)};
}

// The three phases over p.epochs: 50 % dense, 25 % hard thresholding after every step, then
// retraining with fresh moments on the support frozen at the first retraining epoch.
void optimise(const Layout& L, std::vector<double>& th, const Rows& rows, const std::vector<std::size_t>& all,
              const TrainParams& p) {
  const auto& [X, Y] = rows;
  std::vector<std::size_t> by_clarity = all;  // curriculum: clear examples (large utility margin) first
  std::stable_sort(by_clarity.begin(), by_clarity.end(),
                   [&](std::size_t a, std::size_t b) { return Y[a].margin > Y[b].margin; });
  const int dense = std::max(1, p.epochs / 2), iht = p.sparsity > 0 ? p.epochs / 4 : 0;
  std::vector<double> g;
  common::Adam adam(th.size());
  std::vector<char> support;
  std::mt19937_64 rng(p.seed ^ 0x9e3779b97f4a7c15ULL);
  for (int epoch = 0; epoch < p.epochs; ++epoch) {
    const bool thresholding = epoch >= dense && epoch < dense + iht;
    const bool fixed_support = epoch >= dense + iht && p.sparsity > 0;
    const char* phase = thresholding ? "hard-threshold" : fixed_support ? "sparse-retrain" : "dense";
    if (epoch == dense + iht && p.sparsity > 0) {  // retraining: fresh moments, support frozen
      hard_threshold(L, th, p.sparsity, support);
      adam.reset();
    }
    std::vector<std::size_t> order = epoch_rows(p, epoch, dense, all, by_clarity);
    common::shuffle(order, rng);
    double epoch_loss = 0;
    for (std::size_t start = 0; start < order.size(); start += p.batch) {
      const std::size_t n = std::min(p.batch, order.size() - start);
      epoch_loss += batch_loss(L, th, X, Y, order.data() + start, n, p, &g) * static_cast<double>(n);
      adam.step(th, g, p.learning_rate, [&](std::size_t k) { return fixed_support && !support[k]; });
      if (thresholding) hard_threshold(L, th, p.sparsity, support);
    }
    epoch_loss /= static_cast<double>(order.size());
    if (!std::isfinite(epoch_loss)) throw Error("router: training diverged (non-finite loss); parameters unchanged");
    if (p.progress) p.progress(epoch + 1, phase, epoch_loss);
  }
}

// The measured share of zeros in the cell's matrices.
double cell_sparsity(const Layout& L, const std::vector<double>& th) {
  std::size_t zeros = 0, total = 0;
  for (const Matrix& m : matrices(L)) {
    if (!m.sparse) continue;
    for (std::size_t e = 0; e < m.rows * m.cols; ++e) zeros += th[m.offset + e] == 0, ++total;
  }
  return static_cast<double>(zeros) / static_cast<double>(total);
}

std::vector<std::size_t> indices(std::size_t n) {
  std::vector<std::size_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  return all;
}

}  // namespace

double Router::loss(const std::vector<Outcome>& outcomes, const TrainParams& params,
                    std::vector<double>* gradient) const {
  if (outcomes.empty()) throw Error("router: no outcomes");
  const Layout L(shape_, ladder_.models.size(), ladder_.context_bins.size());
  // Untrained: the features as training would see them (out of fold); trained: as decide() does.
  std::vector<FeatureVector> raw;
  const FeatureFit fit = impl_->fitted ? impl_->fit : fit_features(outcomes, ladder_.models.size(), params.seed, &raw);
  Rows rows = labelled_rows(outcomes, ladder_, params, [&](std::size_t i) {
    return normalise(fit, impl_->fitted ? raw_features(fit, outcomes[i].signals) : raw[i]);
  });
  weigh_evidence(rows.Y, params.evidence_share);  // the objective train() minimises
  if (rows.X.empty()) throw Error("router: no outcome has a trial of a ladder model");
  const std::vector<std::size_t> order = indices(rows.X.size());
  return batch_loss(L, theta_, rows.X, rows.Y, order.data(), order.size(), params, gradient);
}

TrainReport Router::train(const std::vector<Outcome>& outcomes, const TrainParams& p) {
  if (outcomes.empty()) throw Error("router: the training set is empty");
  if (p.epochs < 1 || p.batch < 1 || !(p.learning_rate > 0) || !(p.sparsity >= 0 && p.sparsity < 1) || !(p.l2 >= 0)) {
    throw Error("router: epochs, batch and learning_rate must be positive, sparsity in [0, 1), l2 ≥ 0");
  }
  const Layout L(shape_, ladder_.models.size(), ladder_.context_bins.size());
  auto impl = std::make_shared<Impl>();
  std::vector<FeatureVector> features;  // the training rows' features, out of fold, as the fit computed them
  impl->fit = fit_features(outcomes, ladder_.models.size(), p.seed, &features);
  for (FeatureVector& x : features) x = normalise(impl->fit, x);
  impl->fitted = true;
  Rows rows = labelled_rows(outcomes, ladder_, p, [&](std::size_t i) { return features[i]; });
  for (const Labels& y : rows.Y) {
    impl->context_trained |= y.context >= 0;
    impl->retrieval_trained |= y.retrieval >= 0;
    impl->sampling_trained |= std::isfinite(y.temperature) || std::isfinite(y.top_p);
  }
  const auto with_model = std::count_if(rows.Y.begin(), rows.Y.end(), [](const Labels& y) { return y.model >= 0; });
  if (with_model == 0) throw Error("router: no training outcome has a trial of a ladder model");
  weigh_evidence(rows.Y, p.evidence_share);
  std::vector<double> th = theta_;
  start_at_prior(L, rows.Y, th);
  // Evidence rows: which slots the model rows left fixed.
  if (with_model < static_cast<std::ptrdiff_t>(rows.Y.size())) impl->model_view = model_view(rows);
  const std::vector<std::size_t> all = indices(rows.X.size());
  TrainReport report;
  report.examples = rows.X.size();
  report.initial_loss = batch_loss(L, th, rows.X, rows.Y, all.data(), all.size(), p, nullptr);
  optimise(L, th, rows, all, p);
  report.final_loss = batch_loss(L, th, rows.X, rows.Y, all.data(), all.size(), p, nullptr);
  report.sparsity = cell_sparsity(L, th);
  report.context_trained = impl->context_trained;
  report.retrieval_trained = impl->retrieval_trained;
  report.sampling_trained = impl->sampling_trained;
  theta_ = std::move(th);
  objective_ = {p.lambda_latency, p.mu_cost, p.l2, p.share_ties, true};
  compile(L, theta_, quantized_, *impl);
  impl_ = std::move(impl);
  return report;
}

}  // namespace ruvllm::router
