// RouteLLM's evaluation (PGR, APGR, CPT) and the baselines the router must beat on the same
// features: multinomial logistic regression, kNN, random and fixed choices.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/adam.h"
#include "common/hash.h"
#include "internal.h"

namespace ruvllm::router {
namespace {

struct Table {  // per test row and model: quality, cost and utility (of the model's best trial)
  std::vector<const Outcome*> rows;
  std::vector<double> quality, cost, utility;
};

Table tabulate(const std::vector<Outcome>& test, const Ladder& ladder, double lambda, double mu) {
  const std::size_t n = ladder.models.size();
  Table t;
  for (const Outcome& o : test) {
    std::vector<double> q(n, -1), c(n, 0), u(n, -1e300);
    for (const Trial& tr : o.trials) {
      if (tr.model == kAnyModel) continue;  // evidence settings: no model's answer
      if (tr.model >= n) throw Error("router: outcome " + o.id + " names a model outside the ladder");
      if (tr.quality > q[tr.model]) q[tr.model] = tr.quality, c[tr.model] = std::isfinite(tr.cost) ? tr.cost : 0;
      u[tr.model] = std::max(u[tr.model], utility(tr, lambda, mu));
    }
    if (std::any_of(q.begin(), q.end(), [](double x) { return x < 0; })) continue;
    t.rows.push_back(&o);
    t.quality.insert(t.quality.end(), q.begin(), q.end());
    t.cost.insert(t.cost.end(), c.begin(), c.end());
    t.utility.insert(t.utility.end(), u.begin(), u.end());
  }
  if (t.rows.empty()) throw Error("router: no test outcome has a trial of every ladder model");
  return t;
}

// The model head's targets of the model-labelled training rows (TrainParams::share_ties), so that the
// baselines learn what the router learns; `used` gets their indices in `train`.
std::vector<std::array<double, kMaxTiers>> targets_of(const std::vector<Outcome>& train, const Ladder& ladder,
                                                      const TrainParams& p, std::vector<std::size_t>& used) {
  std::vector<std::array<double, kMaxTiers>> y;
  for (std::size_t i = 0; i < train.size(); ++i) {
    const Labels labels = make_labels(train[i], ladder, p);
    if (labels.model < 0) continue;
    y.push_back(labels.target);
    used.push_back(i);
  }
  if (y.empty()) throw Error("router: no training outcome has a trial of a ladder model");
  return y;
}

}  // namespace

Evaluation evaluate(const Policy& policy, const std::vector<Outcome>& test, const Ladder& ladder,
                    double default_threshold, double lambda_latency, double mu_cost) {
  const std::size_t n = ladder.models.size(), largest = n - 1;
  const Table t = tabulate(test, ladder, lambda_latency, mu_cost);
  const std::size_t rows = t.rows.size();
  std::vector<float> p(rows * n);
  for (std::size_t i = 0; i < rows; ++i) {
    const std::vector<float> pi = policy.probabilities(*t.rows[i]);
    if (pi.size() != n) throw Error("router: policy " + policy.name + " gave the wrong number of probabilities");
    std::copy(pi.begin(), pi.end(), p.begin() + static_cast<std::ptrdiff_t>(i * n));
  }
  Evaluation e;
  e.router = policy.name;
  e.rows = rows;
  auto point = [&](double threshold) {
    OperatingPoint op{threshold, 0, 0, 0};
    for (std::size_t i = 0; i < rows; ++i) {
      const std::size_t m = tier_for(&p[i * n], n, threshold);
      op.largest_share += m == largest;
      op.quality += t.quality[i * n + m];
      op.cost += t.cost[i * n + m];
    }
    op.largest_share /= static_cast<double>(rows);
    op.quality /= static_cast<double>(rows);
    op.cost /= static_cast<double>(rows);
    return op;
  };
  const OperatingPoint at = point(default_threshold);
  e.quality = at.quality;
  e.cost = at.cost;
  e.largest_share = at.largest_share;
  double q_largest = 0, q_smallest = 0, correct = 0;
  for (std::size_t i = 0; i < rows; ++i) {
    q_largest += t.quality[i * n + largest];
    q_smallest += t.quality[i * n];
    const double* u = &t.utility[i * n];
    correct += u[tier_for(&p[i * n], n, default_threshold)] >= *std::max_element(u, u + n) - 1e-12;
  }
  q_largest /= static_cast<double>(rows);
  q_smallest /= static_cast<double>(rows);
  e.accuracy = correct / static_cast<double>(rows);
  e.regret = q_largest - e.quality;
  // The operating curve, swept exactly: a row takes the first model m whose normalised mass above
  // it is below the threshold (tier_for), so its choice moves down to m where the threshold passes
  // that value and nowhere else. The values of every row, sorted, are the curve's breakpoints; one
  // pass applies each row's switches and records the point after each breakpoint, at the next one
  // (tier_for's test is strict), in O(E log E) for E = rows × (models − 1). Close breakpoints are
  // not merged: rows with equal ratios of float32 probabilities round a few ulps apart, and a round
  // threshold (0.5, the default) falls between them, so those points are reached in practice. A
  // grid (0.001, 0.02 before) missed such points.
  struct Switch {
    double at;
    std::size_t row, model;
  };
  std::vector<Switch> switches;
  switches.reserve(rows * largest);
  for (std::size_t i = 0; i < rows; ++i)
    walk_masses_above(&p[i * n], n, nullptr, [&](std::size_t m, double above) {
      switches.push_back({above, i, m});
      return false;
    });
  std::sort(switches.begin(), switches.end(), [](const Switch& a, const Switch& b) { return a.at < b.at; });
  std::vector<std::size_t> chosen(rows, largest);
  long double quality_sum = 0, cost_sum = 0;  // long double: the running sums drift less than a point's spacing
  std::size_t on_largest = rows;
  for (std::size_t i = 0; i < rows; ++i) {
    quality_sum += t.quality[i * n + largest];
    cost_sum += t.cost[i * n + largest];
  }
  auto record = [&](double threshold) {
    const auto r = static_cast<long double>(rows);
    const OperatingPoint op{threshold, static_cast<double>(on_largest) / static_cast<double>(rows),
                            static_cast<double>(quality_sum / r), static_cast<double>(cost_sum / r)};
    const auto differs = [](double a, double b) { return std::abs(a - b) > 1e-12 * std::max(1.0, std::abs(b)); };
    if (e.curve.empty() || differs(op.largest_share, e.curve.back().largest_share) ||
        differs(op.quality, e.curve.back().quality) || differs(op.cost, e.curve.back().cost)) {
      e.curve.push_back(op);
    }
  };
  record(0.0);  // always the largest
  for (std::size_t k = 0; k < switches.size();) {
    const double first = switches[k].at;
    for (; k < switches.size() && switches[k].at == first; ++k) {
      const Switch& w = switches[k];
      const std::size_t from = chosen[w.row];
      if (w.model >= from) continue;  // a lower value of the same row already moved it further down
      quality_sum += t.quality[w.row * n + w.model] - t.quality[w.row * n + from];
      cost_sum += t.cost[w.row * n + w.model] - t.cost[w.row * n + from];
      on_largest -= from == largest;
      chosen[w.row] = w.model;
    }
    const double next = k < switches.size() ? switches[k].at : 1.0 + 1e-9;  // past the last: never escalate
    if (next > 0) record(next);  // thresholds <= 0 mean "always the largest": nothing to record below
  }

  if (n == 2 && q_largest != q_smallest) {
    // Calls go to the strong model in descending P(strong); equal scores form one group whose
    // quality moves linearly across it (the expectation over the order inside the group).
    std::vector<std::size_t> order(rows);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return p[a * n + 1] > p[b * n + 1]; });
    std::vector<double> share{0}, pgr{0};
    double quality = q_smallest * static_cast<double>(rows);
    for (std::size_t k = 0; k < rows;) {
      std::size_t end = k;
      while (end < rows && p[order[end] * n + 1] == p[order[k] * n + 1]) {
        quality += t.quality[order[end] * n + 1] - t.quality[order[end] * n];
        ++end;
      }
      k = end;
      share.push_back(static_cast<double>(k) / static_cast<double>(rows));
      pgr.push_back((quality / static_cast<double>(rows) - q_smallest) / (q_largest - q_smallest));
    }
    e.apgr = 0;
    for (std::size_t k = 1; k < share.size(); ++k) e.apgr += (share[k] - share[k - 1]) * (pgr[k] + pgr[k - 1]) / 2;
    auto cpt = [&](double target) {
      for (std::size_t k = 1; k < share.size(); ++k) {
        if (pgr[k] >= target) {
          const double f = pgr[k] == pgr[k - 1] ? 1 : (target - pgr[k - 1]) / (pgr[k] - pgr[k - 1]);
          return share[k - 1] + std::clamp(f, 0.0, 1.0) * (share[k] - share[k - 1]);
        }
      }
      return 1.0;
    };
    e.cpt50 = cpt(0.5);
    e.cpt80 = cpt(0.8);
  }
  return e;
}

Policy router_policy(std::shared_ptr<const Router> router) {
  return {"fastgrnn" + std::string(router->quantized() ? " int8" : ""), [router](const Outcome& o) {
            std::vector<float> p(router->ladder().models.size());
            router->model_probabilities(router->features(o.signals), p.data());
            return p;
          }};
}

Policy logistic_policy(std::shared_ptr<const Router> features_from, const std::vector<Outcome>& train,
                       const TrainParams& params) {
  const std::size_t n = features_from->ladder().models.size(), F = kFeatures + 1;
  std::vector<std::size_t> used;
  const auto y = targets_of(train, features_from->ladder(), params, used);
  const std::vector<FeatureVector> all = features_from->training_features(train);
  std::vector<double> w(n * F, 0.0), g(n * F);
  common::Adam adam(w.size());
  // The prior's precision spread over the rows it learns from, as the router's.
  const double l2 = params.l2 / static_cast<double>(std::max<std::size_t>(used.size(), 1));
  std::vector<std::size_t> order(used.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(params.seed);
  double logits[kMaxTiers], prob[kMaxTiers];
  for (int epoch = 0; epoch < params.epochs; ++epoch) {
    common::shuffle(order, rng);
    for (std::size_t start = 0; start < order.size(); start += params.batch) {
      const std::size_t count = std::min(params.batch, order.size() - start);
      for (std::size_t k = 0; k < n * F; ++k) g[k] = l2 * w[k];
      for (std::size_t b = 0; b < count; ++b) {
        const std::size_t r = order[start + b];
        const FeatureVector& x = all[used[r]];
        for (std::size_t m = 0; m < n; ++m) {
          double s = w[m * F + kFeatures];
          for (std::size_t f = 0; f < kFeatures; ++f) s += w[m * F + f] * x[f];
          logits[m] = s;
        }
        const double hi = *std::max_element(logits, logits + n);
        double sum = 0;
        for (std::size_t m = 0; m < n; ++m) sum += prob[m] = std::exp(logits[m] - hi);
        for (std::size_t m = 0; m < n; ++m) {
          const double d = (prob[m] / sum - y[r][m]) / static_cast<double>(count);
          for (std::size_t f = 0; f < kFeatures; ++f) g[m * F + f] += d * x[f];
          g[m * F + kFeatures] += d;
        }
      }
      adam.step(w, g, params.learning_rate);
    }
  }
  return {"logistic regression", [features_from, w, n, F](const Outcome& o) {
            const FeatureVector x = features_from->features(o.signals);
            std::vector<float> p(n);
            double logits[kMaxTiers], hi = -1e300, sum = 0;
            for (std::size_t m = 0; m < n; ++m) {
              double s = w[m * F + kFeatures];
              for (std::size_t f = 0; f < kFeatures; ++f) s += w[m * F + f] * x[f];
              hi = std::max(hi, logits[m] = s);
            }
            for (std::size_t m = 0; m < n; ++m) sum += logits[m] = std::exp(logits[m] - hi);
            for (std::size_t m = 0; m < n; ++m) p[m] = static_cast<float>(logits[m] / sum);
            return p;
          }};
}

Policy knn_policy(std::shared_ptr<const Router> features_from, const std::vector<Outcome>& train,
                  const TrainParams& params, std::size_t k) {
  const std::size_t n = features_from->ladder().models.size();
  std::vector<std::size_t> used;
  const auto y = targets_of(train, features_from->ladder(), params, used);
  const std::vector<FeatureVector> all = features_from->training_features(train);
  std::vector<FeatureVector> X;
  for (std::size_t i : used) X.push_back(all[i]);
  k = std::clamp<std::size_t>(k, 1, X.size());
  return {"kNN (k=" + std::to_string(k) + ")", [features_from, X, y, n, k](const Outcome& o) {
            const FeatureVector q = features_from->features(o.signals);
            double qn = 0;
            for (float v : q) qn += static_cast<double>(v) * v;
            std::vector<std::pair<double, std::size_t>> sim(X.size());
            for (std::size_t i = 0; i < X.size(); ++i) {
              double d = 0, xn = 0;
              for (std::size_t f = 0; f < kFeatures; ++f)
                d += static_cast<double>(q[f]) * X[i][f], xn += static_cast<double>(X[i][f]) * X[i][f];
              sim[i] = {qn > 0 && xn > 0 ? d / std::sqrt(qn * xn) : 0, i};
            }
            std::partial_sort(sim.begin(), sim.begin() + static_cast<std::ptrdiff_t>(k), sim.end(),
                              [](const auto& a, const auto& b) {
                                return a.first > b.first || (a.first == b.first && a.second < b.second);
                              });
            std::vector<float> p(n, 0.5f);  // add-½ smoothing
            for (std::size_t j = 0; j < k; ++j)
              for (std::size_t m = 0; m < n; ++m) p[m] += static_cast<float>(y[sim[j].second][m]);
            const float total = static_cast<float>(k) + 0.5f * static_cast<float>(n);
            for (float& v : p) v /= total;
            return p;
          }};
}

Policy random_policy(const Ladder& ladder, uint64_t seed) {
  const std::size_t n = ladder.models.size();
  return {"random", [n, seed](const Outcome& o) {
            // A uniform point of the simplex, fixed per outcome id: the same row gets the same draw.
            std::mt19937_64 rng(common::fnv1a(o.id + "\n" + o.signals.query.text, common::kFnvOffset ^ seed));
            std::vector<float> p(n);
            double sum = 0;
            std::vector<double> e(n);
            for (std::size_t m = 0; m < n; ++m) {
              sum += e[m] = -std::log((static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53);
            }
            for (std::size_t m = 0; m < n; ++m) p[m] = static_cast<float>(e[m] / sum);
            return p;
          }};
}

Policy fixed_policy(std::size_t model, const Ladder& ladder) {
  const std::size_t n = ladder.models.size();
  if (model >= n) throw Error("router: fixed policy model outside the ladder");
  return {"always " + ladder.models[model], [n, model](const Outcome&) {
            std::vector<float> p(n, 0.0f);
            p[model] = 1;
            return p;
          }};
}

double calibrate(const Router& router, const std::vector<Outcome>& reference, double largest_share) {
  if (reference.empty()) throw Error("router: calibration needs reference queries");
  if (!(largest_share >= 0 && largest_share <= 1)) throw Error("router: the target share must be in [0, 1]");
  const std::size_t n = router.ladder().models.size();
  std::vector<float> p(reference.size() * n);
  for (std::size_t i = 0; i < reference.size(); ++i) {
    router.model_probabilities(router.features(reference[i].signals), &p[i * n]);
  }
  auto share = [&](double threshold) {
    std::size_t count = 0;
    for (std::size_t i = 0; i < reference.size(); ++i) count += tier_for(&p[i * n], n, threshold) == n - 1;
    return static_cast<double>(count) / static_cast<double>(reference.size());
  };
  // share() falls as the threshold rises: the largest threshold that still reaches the target.
  double lo = 0, hi = 1 + 1e-9;
  for (int it = 0; it < 60; ++it) {
    const double mid = (lo + hi) / 2;
    (share(mid) >= largest_share ? lo : hi) = mid;
  }
  return lo;
}

SingleModel best_single_model(const std::vector<Outcome>& test, const Ladder& ladder) {
  SingleModel best;
  for (std::size_t m = 0; m < ladder.models.size(); ++m) {
    const auto e = evaluate(fixed_policy(m, ladder), test, ladder);
    if (e.quality > best.quality + 1e-12) best = {m, e.quality, e.cost};
  }
  return best;
}

double cost_to_reach(const Evaluation& evaluation, double quality) {
  double cost = std::numeric_limits<double>::quiet_NaN();
  for (const OperatingPoint& pt : evaluation.curve) {
    if (pt.quality >= quality - 1e-12 && !(pt.cost >= cost)) cost = pt.cost;
  }
  return cost;
}

double quality_within(const Evaluation& evaluation, double cost) {
  double quality = std::numeric_limits<double>::quiet_NaN();
  for (const OperatingPoint& pt : evaluation.curve) {
    if (pt.cost <= cost && !(pt.quality <= quality)) quality = pt.quality;
  }
  return quality;
}

}  // namespace ruvllm::router
