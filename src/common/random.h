// Random numbers that are the same on every standard library (the distributions of <random> are
// not specified bit for bit): what a seed gives in a trained file or a held-out split must not
// depend on the machine that drew it.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace ruvllm::common {

// Uniform in [0, n), n > 0: rejection instead of a plain `% n`, whose low values are more likely.
inline uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t v;
  do v = rng();
  while (v >= limit);
  return v % n;
}

// Fisher–Yates over the whole vector.
template <typename T>
void shuffle(std::vector<T>& v, std::mt19937_64& rng) {
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[uniform_below(rng, i)]);
}

// Standard normal by Box–Muller (u1 in (0, 1), so the log is finite).
inline double normal(std::mt19937_64& rng) {
  const double u1 = (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53;
  const double u2 = static_cast<double>(rng() >> 11) * 0x1.0p-53;
  return std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace ruvllm::common
