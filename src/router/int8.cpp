// What decide() runs on: θ compiled to float32, or to int8 with one scale per matrix row, and the
// fused inference over either (int8 × float products, scaled once per row).
#include <algorithm>
#include <cmath>
#include <utility>

#include "internal.h"

namespace ruvllm::router {
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

}  // namespace ruvllm::router
