// The decision: features of a request, the heads' outputs and the rules on them (threshold,
// privacy, guardrails, evidence coverage).
#include <algorithm>
#include <cmath>

#include "internal.h"

namespace ruvllm::router {

FeatureVector Router::features(const Signals& signals) const {
  if (!impl_->fitted) throw Error("router: untrained (no feature fit); train one or load a router file");
  return normalise(impl_->fit, raw_features(impl_->fit, signals));
}

std::vector<FeatureVector> Router::training_features(const std::vector<Outcome>& outcomes) const {
  if (!impl_->fitted) throw Error("router: untrained (no feature fit); train one or load a router file");
  return router::training_features(impl_->fit, outcomes);
}

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
