// What training learns from an outcome: the utility of each trial, the labels and targets of every
// head, and the weight of evidence rows against model rows.
#include <algorithm>
#include <cmath>
#include <utility>

#include "internal.h"

namespace ruvllm::router {
namespace {

double utility_of(const Trial& t, const TrainParams& p) { return utility(t, p.lambda_latency, p.mu_cost); }

// Each model's best U into best_u, and its best quality and the best over all models into y; true
// when the outcome also has model-free trials.
bool read_model_trials(const Outcome& o, const TrainParams& p, std::vector<double>& best_u, Labels& y) {
  bool model_free = false;
  for (const Trial& t : o.trials) {
    if (t.model == kAnyModel) {
      model_free = true;
      continue;
    }
    if (t.model >= best_u.size()) throw Error("router: outcome " + o.id + " names a model outside the ladder");
    best_u[t.model] = std::max(best_u[t.model], utility_of(t, p));
    y.quality[t.model] = std::isfinite(y.quality[t.model]) ? std::max(y.quality[t.model], t.quality) : t.quality;
    y.best_quality = std::max(y.best_quality, t.quality);
  }
  return model_free;
}

// y.model = the model of the best U, or -1 when none has a trial; returns {best U, second best U}.
std::pair<double, double> pick_model(const std::vector<double>& best_u, Labels& y) {
  double first = -1e300, second = -1e300;
  for (std::size_t m = 0; m < best_u.size(); ++m) {
    if (best_u[m] <= -1e299) continue;
    if (best_u[m] > first + 1e-12) {  // strictly better: ties stay with the cheaper model
      second = first;
      first = best_u[m];
      y.model = static_cast<int>(m);
    } else {
      second = std::max(second, best_u[m]);
    }
  }
  return {first, second};
}

// The cheapest model-free trial (context bin, then retrieval strategy) within ε of the best score,
// chosen jointly so that the bin and the strategy name one trial; null when there is none.
template <typename Score>
const Trial* cheapest_model_free(const Outcome& o, double epsilon, Score&& score) {
  double best = -1e300;
  for (const Trial& t : o.trials)
    if (t.model == kAnyModel) best = std::max(best, score(t));
  const Trial* pick = nullptr;
  auto rank = [](const Trial& t) { return std::pair(t.context_bin, t.retrieval); };
  for (const Trial& t : o.trials)
    if (t.model == kAnyModel && score(t) >= best - epsilon && (!pick || rank(t) < rank(*pick))) pick = &t;
  return pick;
}

// The model head's target. Shared ties: the models tied at the best U share it equally, so that
// P(model) learns P(best) + P(tied for best)/k over k tied models; on two models with right/wrong
// answers, P(strong) = ½ + ½·E[q_s − q_w]: the expected gain of the call, the order APGR rewards. A
// one-hot "strictly better" label learns P(strong strictly better) instead, which cannot tell a
// query the weak model fails on from one it ties on. Without sharing: all of it on y.model (ties to
// the cheaper model).
void model_target(const std::vector<double>& best_u, double first, bool share_ties, Labels& y) {
  const std::size_t n = best_u.size();
  if (share_ties) {
    std::array<bool, kMaxTiers> at_best{};
    std::size_t tied = 0;
    for (std::size_t m = 0; m < n; ++m) tied += at_best[m] = best_u[m] > -1e299 && best_u[m] >= first - 1e-12;
    for (std::size_t m = 0; m < n; ++m) y.target[m] = at_best[m] ? 1 / static_cast<double>(tied) : 0;
  } else {
    y.target[static_cast<std::size_t>(y.model)] = 1;
  }
}

// Context bin and retrieval: the cheapest setting of the chosen model within ε of its best (trials
// of the chosen model that record them take precedence over model-free ones); the sampling of its
// best trial.
void own_settings(const Outcome& o, const TrainParams& p, double first, Labels& y) {
  double best_ctx = -1e300, best_ret = -1e300;
  for (const Trial& t : o.trials) {
    if (static_cast<int>(t.model) != y.model) continue;
    if (t.context_bin >= 0) best_ctx = std::max(best_ctx, utility_of(t, p));
    if (t.retrieval >= 0) best_ret = std::max(best_ret, utility_of(t, p));
  }
  int own_ctx = -1, own_ret = -1;
  for (const Trial& t : o.trials) {
    if (static_cast<int>(t.model) != y.model) continue;
    const double u = utility_of(t, p);
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
}

}  // namespace

double utility(const Trial& t, double lambda_latency, double mu_cost) {
  return t.quality - (std::isfinite(t.latency_ms) ? lambda_latency * t.latency_ms : 0) -
         (std::isfinite(t.cost) ? mu_cost * t.cost : 0);
}

Labels make_labels(const Outcome& o, const Ladder& ladder, const TrainParams& p) {
  Labels y;
  std::vector<double> best_u(ladder.models.size(), -1e300);
  const bool model_free = read_model_trials(o, p, best_u, y);
  const auto [first, second] = pick_model(best_u, y);
  // Model-free settings (evidence a context holds): the cheapest within ε of the best U.
  if (model_free) {
    const Trial* pick = cheapest_model_free(o, p.epsilon, [&](const Trial& t) { return utility_of(t, p); });
    y.retrieval = pick->retrieval;
    // Without retrieval the context size means nothing: its label is masked then.
    y.context = pick->retrieval == static_cast<int>(Retrieval::none) ? -1 : pick->context_bin;
  }
  if (y.model < 0) {
    y.margin = 1;  // evidence rows are labelled exactly: clear from the start of the curriculum
    return y;
  }
  y.margin = second > -1e299 ? first - second : 1;
  model_target(best_u, first, p.share_ties, y);
  own_settings(o, p, first, y);
  return y;
}

EvidenceSetting evidence_label(const Outcome& outcome, double epsilon) {
  const Trial* pick = cheapest_model_free(outcome, epsilon, [](const Trial& t) { return t.quality; });
  if (!pick) return {};
  // Without retrieval every bin holds the same (nothing): the label names bin 0.
  return {pick->retrieval == static_cast<int>(Retrieval::none) ? 0 : pick->context_bin, pick->retrieval};
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

}  // namespace ruvllm::router
