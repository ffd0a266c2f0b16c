// The FastGRNN cell (Kusupati et al. 2018) and the decision heads: forward and analytic backward
// passes in double for training, a float and a fused int8 path for decide(), Adam training in the
// paper's three phases (dense → iterative hard thresholding → retraining on the fixed support).
//
//   z  = σ(W x_t + U h + b_z)          W = W1·W2, U = U1·U2 (low rank), shared by gate and candidate
//   h̃  = tanh(W x_t + U h + b_h)
//   h' = (σ(ζ)(1 − z) + σ(ν)) ⊙ h̃ + z ⊙ h
// Heads on the last h: model (softmax over the ladder), context bin (softmax), retrieval strategy
// (softmax), temperature (softplus, clipped), top_p (0.7 + 0.3·σ) and confidence (σ).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "common/adam.h"
#include "common/random.h"
#include "internal.h"

namespace ruvllm::router {
namespace {

constexpr std::size_t kMaxHidden = 128, kMaxRank = 64, kMaxSteps = 8;
constexpr double kTempMin = 0.05, kTempMax = 2.0;

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
double softplus(double x) { return x > 30 ? x : std::log1p(std::exp(x)); }
double smooth_l1_grad(double d) { return std::fabs(d) < 1 ? d : (d > 0 ? 1 : -1); }
double smooth_l1(double d) { return std::fabs(d) < 1 ? 0.5 * d * d : std::fabs(d) - 0.5; }

void check_shape(const RouterShape& s) {
  if (s.hidden < 1 || s.hidden > kMaxHidden) throw Error("router: hidden must be in [1, 128]");
  if (s.rank_w < 1 || s.rank_w > kMaxRank || s.rank_u < 1 || s.rank_u > kMaxRank) {
    throw Error("router: rank_w and rank_u must be in [1, 64]");
  }
  if (s.steps != 1 && s.steps != 2 && s.steps != 4 && s.steps != 8) throw Error("router: steps must be 1, 2, 4 or 8");
}

// Matrix regions of θ (rows × cols at offset): the parts that are quantised, thresholded and L2'd.
struct Matrix {
  std::size_t offset, rows, cols;
  bool sparse;  // W1, W2, U1, U2: the cell's low-rank factors, thresholded by IHT
};
std::vector<Matrix> matrices(const Layout& L) {
  return {{L.W1, L.H, L.rw, true},
          {L.W2, L.rw, L.D, true},
          {L.U1, L.H, L.ru, true},
          {L.U2, L.ru, L.H, true},
          {L.Am, L.N, L.H, false},
          {L.Ac, L.C, L.H, false},
          {L.Ar, kRetrievalHeads, L.H, false},
          {L.wt, 1, L.H, false},
          {L.wp, 1, L.H, false},
          {L.wc, 1, L.H, false}};
}

// Forward values of one example kept for the backward pass.
struct Trace {
  double a[kMaxSteps][kMaxRank], b[kMaxSteps][kMaxRank];
  double z[kMaxSteps][kMaxHidden], c[kMaxSteps][kMaxHidden], h[kMaxSteps + 1][kMaxHidden];
  double pm[kMaxTiers], pc[16], pr[kRetrievalHeads];
  double temp_pre, temp, tp_pre, top_p, conf_pre, conf;
};

void softmax(const double* logits, std::size_t n, double* p) {
  double hi = logits[0];
  for (std::size_t i = 1; i < n; ++i) hi = std::max(hi, logits[i]);
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) sum += p[i] = std::exp(logits[i] - hi);
  for (std::size_t i = 0; i < n; ++i) p[i] /= sum;
}

void forward(const Layout& L, const double* th, const FeatureVector& x, Trace& tr) {
  const double sz = sigmoid(th[L.zeta]), sn = sigmoid(th[L.nu]);
  std::fill(tr.h[0], tr.h[0] + L.H, 0.0);
  for (std::size_t t = 0; t < L.T; ++t) {
    const float* xt = x.data() + t * L.D;
    const double* hp = tr.h[t];
    for (std::size_t r = 0; r < L.rw; ++r) {
      double s = 0;
      for (std::size_t j = 0; j < L.D; ++j) s += th[L.W2 + r * L.D + j] * xt[j];
      tr.a[t][r] = s;
    }
    for (std::size_t r = 0; r < L.ru; ++r) {
      double s = 0;
      for (std::size_t j = 0; j < L.H; ++j) s += th[L.U2 + r * L.H + j] * hp[j];
      tr.b[t][r] = s;
    }
    for (std::size_t i = 0; i < L.H; ++i) {
      double pre = 0;
      for (std::size_t r = 0; r < L.rw; ++r) pre += th[L.W1 + i * L.rw + r] * tr.a[t][r];
      for (std::size_t r = 0; r < L.ru; ++r) pre += th[L.U1 + i * L.ru + r] * tr.b[t][r];
      const double z = sigmoid(pre + th[L.bz + i]), c = std::tanh(pre + th[L.bh + i]);
      tr.z[t][i] = z;
      tr.c[t][i] = c;
      tr.h[t + 1][i] = (sz * (1 - z) + sn) * c + z * hp[i];
    }
  }
  const double* h = tr.h[L.T];
  auto head = [&](std::size_t A, std::size_t bias, std::size_t n, double* p) {
    double logits[kMaxTiers];
    for (std::size_t k = 0; k < n; ++k) {
      double s = th[bias + k];
      for (std::size_t i = 0; i < L.H; ++i) s += th[A + k * L.H + i] * h[i];
      logits[k] = s;
    }
    softmax(logits, n, p);
  };
  head(L.Am, L.am, L.N, tr.pm);
  head(L.Ac, L.ac, L.C, tr.pc);
  head(L.Ar, L.ar, kRetrievalHeads, tr.pr);
  auto affine = [&](std::size_t w, std::size_t b) {
    double s = th[b];
    for (std::size_t i = 0; i < L.H; ++i) s += th[w + i] * h[i];
    return s;
  };
  tr.temp_pre = affine(L.wt, L.bt);
  tr.temp = std::clamp(softplus(tr.temp_pre), kTempMin, kTempMax);
  tr.tp_pre = affine(L.wp, L.bp);
  tr.top_p = 0.7 + 0.3 * sigmoid(tr.tp_pre);
  tr.conf_pre = affine(L.wc, L.bc);
  tr.conf = sigmoid(tr.conf_pre);
}

std::size_t argmax(const double* p, std::size_t n) { return static_cast<std::size_t>(std::max_element(p, p + n) - p); }

// Loss of one example; adds its gradient (times `scale`) into g when g is not null.
double example_loss(const Layout& L, const double* th, const FeatureVector& x, const Labels& y, const TrainParams& p,
                    Trace& tr, double* g, double scale) {
  forward(L, th, x, tr);
  double loss = 0;  // y.model < 0: an evidence row, no model head term
  if (y.model >= 0)
    for (std::size_t k = 0; k < L.N; ++k)
      if (y.target[k] > 0) loss -= y.target[k] * std::log(std::max(tr.pm[k], 1e-300));
  if (y.context >= 0) loss -= std::log(std::max(tr.pc[y.context], 1e-300));
  if (y.retrieval >= 0) loss -= std::log(std::max(tr.pr[y.retrieval], 1e-300));
  if (std::isfinite(y.temperature)) loss += p.alpha * smooth_l1(tr.temp - y.temperature);
  if (std::isfinite(y.top_p)) loss += p.beta * smooth_l1(tr.top_p - y.top_p);
  // Confidence: will the model the head prefers do as well as the best one did? (the target
  // follows the current prediction and is held constant for the gradient)
  const double q_pred = y.model >= 0 ? y.quality[argmax(tr.pm, L.N)] : std::numeric_limits<double>::quiet_NaN();
  const bool conf_known = std::isfinite(q_pred);
  const double conf_target = conf_known && q_pred >= y.best_quality - p.epsilon ? 1 : 0;
  if (conf_known) {
    loss -= p.gamma * (conf_target * std::log(std::max(tr.conf, 1e-300)) +
                       (1 - conf_target) * std::log(std::max(1 - tr.conf, 1e-300)));
  }
  if (!g) return loss;

  const double* h = tr.h[L.T];
  double dh[kMaxHidden] = {};
  // Cross-entropy against a target distribution: the one-hot label, or the model head's target.
  auto head_back = [&](std::size_t A, std::size_t bias, std::size_t n, const double* pr, int label,
                       const double* target = nullptr) {
    for (std::size_t k = 0; k < n; ++k) {
      const double d = scale * (pr[k] - (target ? target[k] : static_cast<int>(k) == label ? 1 : 0));
      g[bias + k] += d;
      for (std::size_t i = 0; i < L.H; ++i) {
        g[A + k * L.H + i] += d * h[i];
        dh[i] += d * th[A + k * L.H + i];
      }
    }
  };
  if (y.model >= 0) head_back(L.Am, L.am, L.N, tr.pm, y.model, y.target.data());
  if (y.context >= 0) head_back(L.Ac, L.ac, L.C, tr.pc, y.context);
  if (y.retrieval >= 0) head_back(L.Ar, L.ar, kRetrievalHeads, tr.pr, y.retrieval);
  auto affine_back = [&](std::size_t w, std::size_t b, double d) {
    g[b] += d;
    for (std::size_t i = 0; i < L.H; ++i) {
      g[w + i] += d * h[i];
      dh[i] += d * th[w + i];
    }
  };
  const double soft = softplus(tr.temp_pre);
  if (std::isfinite(y.temperature) && soft > kTempMin && soft < kTempMax) {
    affine_back(L.wt, L.bt, scale * p.alpha * smooth_l1_grad(tr.temp - y.temperature) * sigmoid(tr.temp_pre));
  }
  if (std::isfinite(y.top_p)) {
    const double s = sigmoid(tr.tp_pre);
    affine_back(L.wp, L.bp, scale * p.beta * smooth_l1_grad(tr.top_p - y.top_p) * 0.3 * s * (1 - s));
  }
  if (conf_known) affine_back(L.wc, L.bc, scale * p.gamma * (tr.conf - conf_target));

  // Back through time.
  const double sz = sigmoid(th[L.zeta]), sn = sigmoid(th[L.nu]);
  double dsz = 0, dsn = 0;
  for (std::size_t t = L.T; t-- > 0;) {
    const float* xt = x.data() + t * L.D;
    const double* hp = tr.h[t];
    double dpre[kMaxHidden], dprev[kMaxHidden];
    for (std::size_t i = 0; i < L.H; ++i) {
      const double z = tr.z[t][i], c = tr.c[t][i];
      const double dc = dh[i] * (sz * (1 - z) + sn), dz = dh[i] * (hp[i] - sz * c);
      dsz += dh[i] * (1 - z) * c;
      dsn += dh[i] * c;
      dprev[i] = dh[i] * z;
      const double dpz = dz * z * (1 - z), dph = dc * (1 - c * c);
      g[L.bz + i] += dpz;
      g[L.bh + i] += dph;
      dpre[i] = dpz + dph;
    }
    double da[kMaxRank] = {}, db[kMaxRank] = {};
    for (std::size_t i = 0; i < L.H; ++i) {
      for (std::size_t r = 0; r < L.rw; ++r) {
        g[L.W1 + i * L.rw + r] += dpre[i] * tr.a[t][r];
        da[r] += dpre[i] * th[L.W1 + i * L.rw + r];
      }
      for (std::size_t r = 0; r < L.ru; ++r) {
        g[L.U1 + i * L.ru + r] += dpre[i] * tr.b[t][r];
        db[r] += dpre[i] * th[L.U1 + i * L.ru + r];
      }
    }
    for (std::size_t r = 0; r < L.rw; ++r) {
      for (std::size_t j = 0; j < L.D; ++j) g[L.W2 + r * L.D + j] += da[r] * xt[j];
    }
    for (std::size_t r = 0; r < L.ru; ++r) {
      for (std::size_t j = 0; j < L.H; ++j) {
        g[L.U2 + r * L.H + j] += db[r] * hp[j];
        dprev[j] += db[r] * th[L.U2 + r * L.H + j];
      }
    }
    std::copy(dprev, dprev + L.H, dh);
  }
  g[L.zeta] += dsz * sz * (1 - sz);
  g[L.nu] += dsn * sn * (1 - sn);
  return loss;
}

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

}  // namespace

Layout::Layout(const RouterShape& s, std::size_t models, std::size_t context_bins)
    : D(kFeatures / s.steps), H(s.hidden), rw(s.rank_w), ru(s.rank_u), T(s.steps), N(models), C(context_bins) {
  check_shape(s);
  std::size_t at = 0;
  auto take = [&](std::size_t n) { return std::exchange(at, at + n); };
  W1 = take(H * rw);
  W2 = take(rw * D);
  U1 = take(H * ru);
  U2 = take(ru * H);
  bz = take(H);
  bh = take(H);
  zeta = take(1);
  nu = take(1);
  Am = take(N * H);
  am = take(N);
  Ac = take(C * H);
  ac = take(C);
  Ar = take(kRetrievalHeads * H);
  ar = take(kRetrievalHeads);
  wt = take(H);
  bt = take(1);
  wp = take(H);
  bp = take(1);
  wc = take(H);
  bc = take(1);
  total = at;
}

double utility(const Trial& t, double lambda_latency, double mu_cost) {
  return t.quality - (std::isfinite(t.latency_ms) ? lambda_latency * t.latency_ms : 0) -
         (std::isfinite(t.cost) ? mu_cost * t.cost : 0);
}

Labels make_labels(const Outcome& o, const Ladder& ladder, const TrainParams& p) {
  Labels y;
  const std::size_t n = ladder.models.size();
  std::vector<double> best_u(n, -1e300);
  auto utility = [&](const Trial& t) { return router::utility(t, p.lambda_latency, p.mu_cost); };
  bool model_free = false;
  for (const Trial& t : o.trials) {
    if (t.model == kAnyModel) {
      model_free = true;
      continue;
    }
    if (t.model >= n) throw Error("router: outcome " + o.id + " names a model outside the ladder");
    best_u[t.model] = std::max(best_u[t.model], utility(t));
    y.quality[t.model] = std::isfinite(y.quality[t.model]) ? std::max(y.quality[t.model], t.quality) : t.quality;
    y.best_quality = std::max(y.best_quality, t.quality);
  }
  double first = -1e300, second = -1e300;
  for (std::size_t m = 0; m < n; ++m) {
    if (best_u[m] <= -1e299) continue;
    if (best_u[m] > first + 1e-12) {  // strictly better: ties stay with the cheaper model
      second = first;
      first = best_u[m];
      y.model = static_cast<int>(m);
    } else {
      second = std::max(second, best_u[m]);
    }
  }
  // Model-free settings (evidence a context holds): the cheapest (context bin, then retrieval
  // strategy) within ε of the best, chosen jointly so that the two labels name one trial.
  if (model_free) {
    double best = -1e300;
    for (const Trial& t : o.trials)
      if (t.model == kAnyModel) best = std::max(best, utility(t));
    const Trial* pick = nullptr;
    auto rank = [](const Trial& t) { return std::pair(t.context_bin, t.retrieval); };
    for (const Trial& t : o.trials)
      if (t.model == kAnyModel && utility(t) >= best - p.epsilon && (!pick || rank(t) < rank(*pick))) pick = &t;
    y.retrieval = pick->retrieval;
    // Without retrieval the context size means nothing: its label is masked then.
    y.context = pick->retrieval == static_cast<int>(Retrieval::none) ? -1 : pick->context_bin;
  }
  if (y.model < 0) {
    y.margin = 1;  // evidence rows are labelled exactly: clear from the start of the curriculum
    return y;
  }
  y.margin = second > -1e299 ? first - second : 1;
  // The model head's target. Shared ties: the models tied at the best U share it equally, so that
  // P(model) learns P(best) + P(tied for best)/k over k tied models; on two models with right/wrong
  // answers, P(strong) = ½ + ½·E[q_s − q_w]: the expected gain of the call, the order APGR rewards. A one-hot "strictly
  // better" label learns P(strong strictly better) instead, which cannot tell a query the weak model fails on from one
  // it ties on. Without sharing: all of it on y.model (ties to the cheaper model).
  if (p.share_ties) {
    std::array<bool, kMaxTiers> at_best{};
    std::size_t tied = 0;
    for (std::size_t m = 0; m < n; ++m) tied += at_best[m] = best_u[m] > -1e299 && best_u[m] >= first - 1e-12;
    for (std::size_t m = 0; m < n; ++m) y.target[m] = at_best[m] ? 1 / static_cast<double>(tied) : 0;
  } else {
    y.target[static_cast<std::size_t>(y.model)] = 1;
  }
  // Context bin and retrieval: the cheapest setting of the chosen model within ε of its best
  // (trials of the chosen model that record them take precedence over model-free ones).
  double best_ctx = -1e300, best_ret = -1e300;
  for (const Trial& t : o.trials) {
    if (static_cast<int>(t.model) != y.model) continue;
    if (t.context_bin >= 0) best_ctx = std::max(best_ctx, utility(t));
    if (t.retrieval >= 0) best_ret = std::max(best_ret, utility(t));
  }
  int own_ctx = -1, own_ret = -1;
  for (const Trial& t : o.trials) {
    if (static_cast<int>(t.model) != y.model) continue;
    const double u = utility(t);
    if (t.context_bin >= 0 && u >= best_ctx - p.epsilon && (own_ctx < 0 || t.context_bin < own_ctx)) {
      own_ctx = t.context_bin;
    }
    if (t.retrieval >= 0 && u >= best_ret - p.epsilon && (own_ret < 0 || t.retrieval < own_ret)) {
      own_ret = t.retrieval;
    }
    if (u >= first - 1e-12) {  // the sampling of the best trial
      if (std::isfinite(t.temperature)) y.temperature = t.temperature;
      if (std::isfinite(t.top_p)) y.top_p = t.top_p;
    }
  }
  if (own_ctx >= 0 || own_ret >= 0) {  // both from one source: the model's own trials over evidence rows
    y.context = own_ctx;
    y.retrieval = own_ret;
  }
  return y;
}

// Evidence rows are few beside the model rows (hundreds of labelled questions against thousands of
// outcome records): weighted so that they carry `share` of the loss.
void weigh_evidence(std::vector<Labels>& Y, double share) {
  if (!(share >= 0 && share < 1)) throw Error("router: evidence_share must be in [0, 1)");
  const auto with_model = std::count_if(Y.begin(), Y.end(), [](const Labels& y) { return y.model >= 0; });
  const auto evidence = static_cast<std::ptrdiff_t>(Y.size()) - with_model;
  if (evidence == 0 || with_model == 0) return;
  const double w = share / (1 - share) * static_cast<double>(with_model) / static_cast<double>(evidence);
  for (Labels& y : Y)
    if (y.model < 0) y.weight = w;
}

int utility_label(const Outcome& outcome, const Ladder& ladder, double lambda_latency, double mu_cost) {
  TrainParams p;
  p.lambda_latency = lambda_latency;
  p.mu_cost = mu_cost;
  return make_labels(outcome, ladder, p).model;
}

Router::Router(Ladder ladder, const RouterShape& shape, uint64_t seed)
    : ladder_(std::move(ladder)), shape_(shape), impl_(std::make_shared<Impl>()) {
  const std::size_t n = ladder_.models.size();
  if (n < 1 || n > kMaxTiers) throw Error("router: the ladder needs 1 to 16 models");
  if (ladder_.context_bins.empty() || ladder_.context_bins.size() > 16) throw Error("router: 1 to 16 context bins");
  if (ladder_.cost.empty()) ladder_.cost.assign(n, std::numeric_limits<double>::quiet_NaN());
  if (ladder_.max_privacy.empty()) ladder_.max_privacy.assign(n, 3);
  if (ladder_.cost.size() != n || ladder_.max_privacy.size() != n) {
    throw Error("router: ladder cost and max_privacy need one entry per model");
  }
  const Layout L(shape_, n, ladder_.context_bins.size());
  theta_.assign(L.total, 0.0);
  std::mt19937_64 rng(seed);
  auto fill = [&](std::size_t at, std::size_t count, double sd) {
    for (std::size_t i = 0; i < count; ++i) theta_[at + i] = sd * normal(rng);
  };
  fill(L.W1, L.H * L.rw, 1 / std::sqrt(static_cast<double>(L.rw)));
  fill(L.W2, L.rw * L.D, 1 / std::sqrt(static_cast<double>(L.D)));
  fill(L.U1, L.H * L.ru, 1 / std::sqrt(static_cast<double>(L.ru)));
  fill(L.U2, L.ru * L.H, 1 / std::sqrt(static_cast<double>(L.H)));
  theta_[L.zeta] = 1;  // the paper's initialisation
  theta_[L.nu] = -4;
  fill(L.Am, L.N * L.H, 0.1 / std::sqrt(static_cast<double>(L.H)));
  fill(L.Ac, L.C * L.H, 0.1 / std::sqrt(static_cast<double>(L.H)));
  fill(L.Ar, kRetrievalHeads * L.H, 0.1 / std::sqrt(static_cast<double>(L.H)));
  // Sampling heads start at the defaults exactly (zero weights): 0.7 and 0.9.
  theta_[L.bt] = std::log(std::expm1(0.7));
  theta_[L.bp] = std::log(2.0);
  compile(L, theta_, false, *impl_);
}

double Router::loss(const std::vector<Outcome>& outcomes, const TrainParams& params,
                    std::vector<double>* gradient) const {
  if (outcomes.empty()) throw Error("router: no outcomes");
  const Layout L(shape_, ladder_.models.size(), ladder_.context_bins.size());
  // Untrained: the features as training would see them (out of fold); trained: as decide() does.
  std::vector<FeatureVector> raw;
  const FeatureFit fit = impl_->fitted ? impl_->fit : fit_features(outcomes, ladder_.models.size(), params.seed, &raw);
  std::vector<FeatureVector> X;
  std::vector<Labels> Y;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    Labels y = make_labels(outcomes[i], ladder_, params);
    if (!y.labelled()) continue;
    X.push_back(normalise(fit, impl_->fitted ? raw_features(fit, outcomes[i].signals) : raw[i]));
    Y.push_back(y);
  }
  weigh_evidence(Y, params.evidence_share);  // the objective train() minimises
  if (X.empty()) throw Error("router: no outcome has a trial of a ladder model");
  std::vector<std::size_t> order(X.size());
  std::iota(order.begin(), order.end(), 0);
  return batch_loss(L, theta_, X, Y, order.data(), order.size(), params, gradient);
}

TrainReport Router::train(const std::vector<Outcome>& outcomes, const TrainParams& p) {
  if (outcomes.empty()) throw Error("router: the training set is empty");
  if (p.epochs < 1 || p.batch < 1 || !(p.learning_rate > 0) || !(p.sparsity >= 0 && p.sparsity < 1) || !(p.l2 >= 0)) {
    throw Error("router: epochs, batch and learning_rate must be positive, sparsity in [0, 1), l2 ≥ 0");
  }
  const Layout L(shape_, ladder_.models.size(), ladder_.context_bins.size());
  auto impl = std::make_shared<Impl>();
  std::vector<FeatureVector> rows;  // the training rows' features, out of fold, as the fit computed them
  impl->fit = fit_features(outcomes, ladder_.models.size(), p.seed, &rows);
  for (FeatureVector& x : rows) x = normalise(impl->fit, x);
  impl->fitted = true;
  std::vector<FeatureVector> X;
  std::vector<Labels> Y;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    Labels y = make_labels(outcomes[i], ladder_, p);
    if (!y.labelled()) continue;
    impl->context_trained |= y.context >= 0;
    impl->retrieval_trained |= y.retrieval >= 0;
    impl->sampling_trained |= std::isfinite(y.temperature) || std::isfinite(y.top_p);
    X.push_back(rows[i]);
    Y.push_back(y);
  }
  const auto with_model = std::count_if(Y.begin(), Y.end(), [](const Labels& y) { return y.model >= 0; });
  if (with_model == 0) throw Error("router: no training outcome has a trial of a ladder model");
  weigh_evidence(Y, p.evidence_share);
  std::vector<double> th = theta_;
  {  // the model head starts at the targets' prior
    std::vector<double> count(L.N, 1.0);
    double total = static_cast<double>(L.N);
    for (const Labels& y : Y) {
      if (y.model < 0) continue;
      for (std::size_t m = 0; m < L.N; ++m) count[m] += y.target[m];
      total += 1;
    }
    for (std::size_t m = 0; m < L.N; ++m) th[L.am + m] = std::log(count[m] / total);
  }
  if (with_model < static_cast<std::ptrdiff_t>(Y.size())) {  // evidence rows: which slots the model rows left fixed
    impl->model_view.assign(kFeatures, std::numeric_limits<float>::quiet_NaN());
    std::vector<char> seen(kFeatures, 0), varied(kFeatures, 0);
    for (std::size_t i = 0; i < X.size(); ++i) {
      if (Y[i].model < 0) continue;
      for (std::size_t k = 0; k < kFeatures; ++k) {
        if (!seen[k])
          seen[k] = 1, impl->model_view[k] = X[i][k];
        else if (X[i][k] != impl->model_view[k])
          varied[k] = 1;
      }
    }
    bool any = false;
    for (std::size_t k = 0; k < kFeatures; ++k) {
      if (varied[k]) impl->model_view[k] = std::numeric_limits<float>::quiet_NaN();
      any |= !varied[k];
    }
    if (!any) impl->model_view.clear();
  }
  std::vector<std::size_t> all(X.size());
  std::iota(all.begin(), all.end(), 0);
  TrainReport report;
  report.examples = X.size();
  report.initial_loss = batch_loss(L, th, X, Y, all.data(), all.size(), p, nullptr);
  // Curriculum: clear examples (large utility margin) first.
  std::vector<std::size_t> by_clarity = all;
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
    std::vector<std::size_t> order;
    if (p.curriculum && epoch < dense / 2) {
      const double share = 0.3 + 0.7 * epoch / std::max(1.0, dense / 2.0);
      order.assign(by_clarity.begin(), by_clarity.begin() + static_cast<std::ptrdiff_t>(std::max<std::size_t>(
                                                                1, static_cast<std::size_t>(share * X.size()))));
    } else {
      order = all;
    }
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
  report.final_loss = batch_loss(L, th, X, Y, all.data(), all.size(), p, nullptr);
  std::size_t zeros = 0, total = 0;
  for (const Matrix& m : matrices(L)) {
    if (!m.sparse) continue;
    for (std::size_t e = 0; e < m.rows * m.cols; ++e) zeros += th[m.offset + e] == 0, ++total;
  }
  report.sparsity = static_cast<double>(zeros) / static_cast<double>(total);
  report.context_trained = impl->context_trained;
  report.retrieval_trained = impl->retrieval_trained;
  report.sampling_trained = impl->sampling_trained;
  theta_ = std::move(th);
  objective_ = {p.lambda_latency, p.mu_cost, p.l2, p.share_ties, true};
  compile(L, theta_, quantized_, *impl);
  impl_ = std::move(impl);
  return report;
}

// ---- inference --------------------------------------------------------------------------------

void compile(const Layout& L, const std::vector<double>& theta, bool quantize, Router::Impl& impl) {
  impl.f.assign(theta.begin(), theta.end());
  impl.q.assign(theta.size(), 0);
  impl.row_scale.clear();
  std::size_t at_row = 0, index = 0;
  for (const Matrix& m : matrices(L)) impl.scale_row[index++] = std::exchange(at_row, at_row + m.rows);
  if (!quantize) return;
  for (const Matrix& m : matrices(L)) {
    for (std::size_t r = 0; r < m.rows; ++r) {
      const std::size_t at = m.offset + r * m.cols;
      double hi = 0;
      for (std::size_t c = 0; c < m.cols; ++c) hi = std::max(hi, std::fabs(theta[at + c]));
      const double scale = hi > 0 ? hi / 127 : 1;
      impl.row_scale.push_back(static_cast<float>(scale));
      for (std::size_t c = 0; c < m.cols; ++c) {
        impl.q[at + c] = static_cast<int8_t>(std::clamp(std::lround(theta[at + c] / scale), -127L, 127L));
      }
    }
  }
}

namespace {

// y[r] = Σ_c M[r][c]·x[c] over a matrix region, from float or int8 weights (fused: int8 × float,
// one scale per row).
struct Weights {
  const Router::Impl& impl;
  bool q;
  void matvec(std::size_t offset, std::size_t rows, std::size_t cols, std::size_t scale_row, const float* x,
              float* y) const {
    if (!q) {
      const float* w = impl.f.data() + offset;
      for (std::size_t r = 0; r < rows; ++r, w += cols) {
        float s = 0;
        for (std::size_t c = 0; c < cols; ++c) s += w[c] * x[c];
        y[r] = s;
      }
      return;
    }
    const int8_t* w = impl.q.data() + offset;
    for (std::size_t r = 0; r < rows; ++r, w += cols) {
      float s = 0;
      for (std::size_t c = 0; c < cols; ++c) s += static_cast<float>(w[c]) * x[c];
      y[r] = s * impl.row_scale[scale_row + r];
    }
  }
};

struct HeadOutputs {
  float pm[kMaxTiers], pc[16], pr[kRetrievalHeads];
  float temp, top_p, conf;
};

void infer(const Layout& L, const Router::Impl& impl, bool quantized, const FeatureVector& x, HeadOutputs& out) {
  const Weights w{impl, quantized};
  const auto& sr = impl.scale_row;
  const float* f = impl.f.data();
  const float sz = 1 / (1 + std::exp(-f[L.zeta])), sn = 1 / (1 + std::exp(-f[L.nu]));
  float h[kMaxHidden] = {}, a[kMaxRank], b[kMaxRank], wx[kMaxHidden], uh[kMaxHidden];
  for (std::size_t t = 0; t < L.T; ++t) {
    w.matvec(L.W2, L.rw, L.D, sr[1], x.data() + t * L.D, a);
    w.matvec(L.W1, L.H, L.rw, sr[0], a, wx);
    w.matvec(L.U2, L.ru, L.H, sr[3], h, b);
    w.matvec(L.U1, L.H, L.ru, sr[2], b, uh);
    for (std::size_t i = 0; i < L.H; ++i) {
      const float pre = wx[i] + uh[i];
      const float z = 1 / (1 + std::exp(-(pre + f[L.bz + i]))), c = std::tanh(pre + f[L.bh + i]);
      h[i] = (sz * (1 - z) + sn) * c + z * h[i];
    }
  }
  auto head = [&](std::size_t A, std::size_t bias, std::size_t n, std::size_t scale_row, float* p) {
    w.matvec(A, n, L.H, scale_row, h, p);
    float hi = -1e30f, sum = 0;
    for (std::size_t k = 0; k < n; ++k) hi = std::max(hi, p[k] += f[bias + k]);
    for (std::size_t k = 0; k < n; ++k) sum += p[k] = std::exp(p[k] - hi);
    for (std::size_t k = 0; k < n; ++k) p[k] /= sum;
  };
  head(L.Am, L.am, L.N, sr[4], out.pm);
  head(L.Ac, L.ac, L.C, sr[5], out.pc);
  head(L.Ar, L.ar, kRetrievalHeads, sr[6], out.pr);
  float v;
  w.matvec(L.wt, 1, L.H, sr[7], h, &v);
  out.temp =
      std::clamp(static_cast<float>(softplus(v + f[L.bt])), static_cast<float>(kTempMin), static_cast<float>(kTempMax));
  w.matvec(L.wp, 1, L.H, sr[8], h, &v);
  out.top_p = 0.7f + 0.3f / (1 + std::exp(-(v + f[L.bp])));
  w.matvec(L.wc, 1, L.H, sr[9], h, &v);
  out.conf = 1 / (1 + std::exp(-(v + f[L.bc])));
}

}  // namespace

FeatureVector Router::features(const Signals& signals) const {
  if (!impl_->fitted) throw Error("router: untrained (no feature fit); train one or load a router file");
  return normalise(impl_->fit, raw_features(impl_->fit, signals));
}

std::vector<FeatureVector> Router::training_features(const std::vector<Outcome>& outcomes) const {
  if (!impl_->fitted) throw Error("router: untrained (no feature fit); train one or load a router file");
  return router::training_features(impl_->fit, outcomes);
}

namespace {

// Fills `o` for x; the model, sampling and confidence heads from x as the model view shows it.
void infer_heads(const Layout& L, const Router::Impl& impl, bool quantized, const FeatureVector& x, HeadOutputs& o) {
  infer(L, impl, quantized, x, o);
  if (impl.model_view.empty()) return;
  FeatureVector xm = x;
  bool differs = false;
  for (std::size_t k = 0; k < kFeatures; ++k) {
    if (std::isnan(impl.model_view[k]) || xm[k] == impl.model_view[k]) continue;
    xm[k] = impl.model_view[k];
    differs = true;
  }
  if (!differs) return;
  HeadOutputs m;
  infer(L, impl, quantized, xm, m);
  std::copy(m.pm, m.pm + L.N, o.pm);
  o.temp = m.temp;
  o.top_p = m.top_p;
  o.conf = m.conf;
}

}  // namespace

void Router::model_probabilities(const FeatureVector& features, float* out) const {
  const Layout L(shape_, ladder_.models.size(), ladder_.context_bins.size());
  HeadOutputs o;
  infer_heads(L, *impl_, quantized_, features, o);
  std::copy(o.pm, o.pm + L.N, out);
}

RouteDecision Router::decide(const FeatureVector& x, const SystemSignals& system) const {
  for (float v : x) {
    if (!std::isfinite(v)) throw Error("router: a feature is not a finite number");
  }
  const Layout L(shape_, ladder_.models.size(), ladder_.context_bins.size());
  HeadOutputs o;
  infer_heads(L, *impl_, quantized_, x, o);
  // Privacy: only the models allowed to serve this level take part.
  bool allowed[kMaxTiers];
  float mass = 0;
  std::size_t smallest = L.N, largest = L.N;
  for (std::size_t m = 0; m < L.N; ++m) {
    allowed[m] = ladder_.max_privacy[m] >= system.privacy;
    if (!allowed[m]) continue;
    mass += o.pm[m];
    if (smallest == L.N) smallest = m;
    largest = m;
  }
  if (smallest == L.N) {
    throw Error("router: no model in the ladder may serve privacy level " + std::to_string(system.privacy));
  }
  RouteDecision d;
  d.model = tier_for(o.pm, L.N, threshold, allowed);
  d.escalation = mass > 0 ? 1 - o.pm[smallest] / mass : 0;
  d.confidence = o.conf;
  if (system.high_risk || d.confidence < confidence_floor) {
    d.escalated = d.model != largest;
    d.model = largest;
  }
  // Context: the smallest bin that holds the evidence with probability ≥ coverage (bins are ordered:
  // the larger bins hold less than 1 − coverage of the mass). Retrieval: none only when the head is
  // that sure there is no evidence to find (dropping the context is the costly mistake), else the
  // likeliest strategy.
  d.context_bin = impl_->context_trained ? tier_for(o.pc, L.C, 1 - evidence_coverage) : L.C - 1;
  d.context_tokens = ladder_.context_bins[d.context_bin];
  d.retrieval = !impl_->retrieval_trained ? Retrieval::hybrid_graph
                : o.pr[0] >= evidence_coverage
                    ? Retrieval::none
                    : static_cast<Retrieval>(std::max_element(o.pr + 1, o.pr + kRetrievalHeads) - o.pr);
  d.temperature = o.temp;
  d.top_p = o.top_p;
  return d;
}

void Router::quantize(bool on) {
  const Layout L(shape_, ladder_.models.size(), ladder_.context_bins.size());
  auto impl = std::make_shared<Impl>(*impl_);
  compile(L, theta_, on, *impl);
  impl_ = std::move(impl);
  quantized_ = on;
}

std::size_t Router::weight_bytes() const {
  const Layout L(shape_, ladder_.models.size(), ladder_.context_bins.size());
  std::size_t matrix = 0, rows = 0;
  for (const Matrix& m : matrices(L)) matrix += m.rows * m.cols, rows += m.rows;
  const std::size_t vectors = L.total - matrix;  // biases, ζ, ν: float32 either way
  return quantized_ ? matrix + 4 * rows + 4 * vectors : 4 * L.total;
}

std::size_t tier_for(const float* p, std::size_t models, double threshold, const bool* allowed) {
  std::size_t chosen = models;
  const std::size_t largest = walk_masses_above(p, models, allowed, [&](std::size_t m, double above) {
    // threshold <= 0: always the largest, whatever rounding leaves in `above`
    if (threshold > 0 && above < threshold) chosen = m;
    return chosen != models;
  });
  return chosen == models ? largest : chosen;
}

std::string_view to_string(Retrieval retrieval) {
  switch (retrieval) {
    case Retrieval::none: return "none";
    case Retrieval::dense: return "dense";
    case Retrieval::hybrid: return "hybrid";
    case Retrieval::hybrid_graph: return "hybrid_graph";
  }
  return "?";
}

}  // namespace ruvllm::router
