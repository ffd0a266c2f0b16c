// Adam (Kingma & Ba 2015) over a flat parameter vector, β1 = 0.9, β2 = 0.999, ε = 1e-8, with bias
// correction: the one optimiser of the graph attention, the router and the router's logistic
// baseline.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace ruvllm::common {

class Adam {
 public:
  explicit Adam(std::size_t parameters) : m1_(parameters, 0.0), m2_(parameters, 0.0) {}

  // Fresh moments and step count (a new phase of training).
  void reset() {
    std::fill(m1_.begin(), m1_.end(), 0.0);
    std::fill(m2_.begin(), m2_.end(), 0.0);
    steps_ = 0;
  }

  // One step: theta[k] -= rate · m̂[k] / (√v̂[k] + ε) for every k that `frozen(k)` does not hold
  // (a frozen parameter keeps its value and its moments).
  template <typename Frozen>
  void step(std::vector<double>& theta, const std::vector<double>& gradient, double rate, Frozen&& frozen) {
    ++steps_;
    const double c1 = 1 - std::pow(0.9, steps_), c2 = 1 - std::pow(0.999, steps_);
    for (std::size_t k = 0; k < theta.size(); ++k) {
      if (frozen(k)) continue;
      const double g = gradient[k];
      m1_[k] = 0.9 * m1_[k] + 0.1 * g;
      m2_[k] = 0.999 * m2_[k] + 0.001 * g * g;
      theta[k] -= rate * (m1_[k] / c1) / (std::sqrt(m2_[k] / c2) + 1e-8);
    }
  }
  void step(std::vector<double>& theta, const std::vector<double>& gradient, double rate) {
    step(theta, gradient, rate, [](std::size_t) { return false; });
  }

 private:
  std::vector<double> m1_, m2_;
  long steps_ = 0;
};

}  // namespace ruvllm::common
