// The FastGRNN cell (Kusupati et al. 2018) and the decision heads in double precision, as training
// sees them: the parameter layout, the initial θ, the forward pass and its analytic backward pass.
//
//   z  = σ(W x_t + U h + b_z)          W = W1·W2, U = U1·U2 (low rank), shared by gate and candidate
//   h̃  = tanh(W x_t + U h + b_h)
//   h' = (σ(ζ)(1 − z) + σ(ν)) ⊙ h̃ + z ⊙ h
// Heads on the last h: model (softmax over the ladder), context bin (softmax), retrieval strategy
// (softmax), temperature (softplus, clipped), top_p (0.7 + 0.3·σ) and confidence (σ).
#include <algorithm>
#include <cmath>
#include <utility>

#include "common/random.h"
#include "internal.h"

namespace ruvllm::router {
namespace {

double smooth_l1_grad(double d) { return std::fabs(d) < 1 ? d : (d > 0 ? 1 : -1); }
double smooth_l1(double d) { return std::fabs(d) < 1 ? 0.5 * d * d : std::fabs(d) - 0.5; }

void check_shape(const RouterShape& s) {
  if (s.hidden < 1 || s.hidden > kMaxHidden) throw Error("router: hidden must be in [1, 128]");
  if (s.rank_w < 1 || s.rank_w > kMaxRank || s.rank_u < 1 || s.rank_u > kMaxRank) {
    throw Error("router: rank_w and rank_u must be in [1, 64]");
  }
  if (s.steps != 1 && s.steps != 2 && s.steps != 4 && s.steps != 8) throw Error("router: steps must be 1, 2, 4 or 8");
}

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

// The confidence head's target: will the model the head prefers do as well as the best one did?
// It follows the current prediction and is held constant for the gradient. NaN: unknown.
double confidence_target(const Layout& L, const Trace& tr, const Labels& y, const TrainParams& p) {
  const double q_pred = y.model >= 0 ? y.quality[argmax(tr.pm, L.N)] : std::numeric_limits<double>::quiet_NaN();
  if (!std::isfinite(q_pred)) return std::numeric_limits<double>::quiet_NaN();
  return q_pred >= y.best_quality - p.epsilon ? 1 : 0;
}

double heads_loss(const Layout& L, const Trace& tr, const Labels& y, const TrainParams& p, double conf_target) {
  double loss = 0;  // y.model < 0: an evidence row, no model head term
  if (y.model >= 0)
    for (std::size_t k = 0; k < L.N; ++k)
      if (y.target[k] > 0) loss -= y.target[k] * std::log(std::max(tr.pm[k], 1e-300));
  if (y.context >= 0) loss -= std::log(std::max(tr.pc[y.context], 1e-300));
  if (y.retrieval >= 0) loss -= std::log(std::max(tr.pr[y.retrieval], 1e-300));
  if (std::isfinite(y.temperature)) loss += p.alpha * smooth_l1(tr.temp - y.temperature);
  if (std::isfinite(y.top_p)) loss += p.beta * smooth_l1(tr.top_p - y.top_p);
  if (std::isfinite(conf_target)) {
    loss -= p.gamma * (conf_target * std::log(std::max(tr.conf, 1e-300)) +
                       (1 - conf_target) * std::log(std::max(1 - tr.conf, 1e-300)));
  }
  return loss;
}

// Back through the heads: their gradient (times `scale`) into g, ∂loss/∂h of the last step into dh.
void heads_backward(const Layout& L, const double* th, const Trace& tr, const Labels& y, const TrainParams& p,
                    double conf_target, double scale, double* g, double* dh) {
  const double* h = tr.h[L.T];
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
  if (std::isfinite(conf_target)) affine_back(L.wc, L.bc, scale * p.gamma * (tr.conf - conf_target));
}

// Back through time from dh (∂loss/∂h of the last step; used as scratch), the cell's gradient into g.
void cell_backward(const Layout& L, const double* th, const FeatureVector& x, const Trace& tr, double* dh, double* g) {
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

double example_loss(const Layout& L, const double* th, const FeatureVector& x, const Labels& y, const TrainParams& p,
                    Trace& tr, double* g, double scale) {
  forward(L, th, x, tr);
  const double conf_target = confidence_target(L, tr, y, p);
  const double loss = heads_loss(L, tr, y, p, conf_target);
  if (!g) return loss;
  double dh[kMaxHidden] = {};
  heads_backward(L, th, tr, y, p, conf_target, scale, g, dh);
  cell_backward(L, th, x, tr, dh, g);
  return loss;
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

}  // namespace ruvllm::router
