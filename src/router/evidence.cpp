// The context and retrieval heads on evidence rows (`ruvllm router evidence`): how much of each
// question's gold evidence the router's contexts hold against fixed settings, the label and the
// naive flow, and the coverage that matches the naive flow.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <utility>

#include "internal.h"

namespace ruvllm::router {
namespace {

bool has_evidence(const Outcome& o) {
  return std::any_of(o.trials.begin(), o.trials.end(), [](const Trial& t) { return t.model == kAnyModel; });
}

// The model-free trial of a setting (the last, should a row repeat one).
const Trial* setting_trial(const Outcome& o, int bin, int retrieval) {
  const Trial* hit = nullptr;
  for (const Trial& t : o.trials)
    if (t.model == kAnyModel && t.context_bin == bin && t.retrieval == retrieval) hit = &t;
  return hit;
}

// A fixed rule or the router: the (context bin, retrieval) it picks for an evidence row.
struct Picker {
  std::string name;
  std::function<std::pair<int, int>(const Outcome&)> pick;
};

std::vector<Picker> evidence_pickers(const Router& r) {
  const auto& bins = r.ladder().context_bins;
  const int largest = static_cast<int>(bins.size()) - 1, naive = naive_bin(bins);
  const int dense = static_cast<int>(Retrieval::dense), graph = static_cast<int>(Retrieval::hybrid_graph);
  return {{"router (context and retrieval heads)",
           [&r](const Outcome& o) {
             const auto d = r.decide(r.features(o.signals));
             return std::pair(static_cast<int>(d.context_bin), static_cast<int>(d.retrieval));
           }},
          {"untrained default: hybrid + graph, largest bin", [=](const Outcome&) { return std::pair(largest, graph); }},
          {"naive: dense, " + std::to_string(bins[naive]) + " tokens",
           [=](const Outcome&) { return std::pair(naive, dense); }},
          {"smallest: no context", [](const Outcome&) { return std::pair(0, 0); }},
          {"label (cheapest within ε of the best)", [](const Outcome& o) {
             const EvidenceSetting s = evidence_label(o);
             return std::pair(s.context_bin, s.retrieval);
           }}};
}

}  // namespace

int naive_bin(const std::vector<int>& bins) {
  const auto at = std::find(bins.begin(), bins.end(), 1024);
  return static_cast<int>((at != bins.end() ? at : bins.end() - 1) - bins.begin());
}

EvidenceRecall evidence_recall(const Router& r, const std::vector<Outcome>& rows) {
  const int naive_at = naive_bin(r.ladder().context_bins), dense = static_cast<int>(Retrieval::dense);
  double mine = 0, naive = 0, n = 0;
  for (const Outcome& o : rows) {
    const auto d = r.decide(r.features(o.signals));
    const int bin = d.retrieval == Retrieval::none ? 0 : static_cast<int>(d.context_bin);
    bool any = false, got_mine = false, got_naive = false;
    for (const Trial& t : o.trials) {
      if (t.model != kAnyModel) continue;
      any = true;
      if (t.context_bin == bin && t.retrieval == static_cast<int>(d.retrieval)) mine += t.quality, got_mine = true;
      if (t.context_bin == naive_at && t.retrieval == dense) naive += t.quality, got_naive = true;
    }
    if (any && !(got_mine && got_naive)) {
      throw Error("evidence row " + o.id + " lacks a setting the router or the naive flow would use");
    }
    n += any;
  }
  if (n == 0) return {};
  return {mine / n, naive / n, static_cast<std::size_t>(n)};
}

CoverageCalibration calibrate_coverage(const Router& router, const std::vector<Outcome>& rows,
                                       const std::function<void(const CoverageCalibration::Step&)>& progress) {
  Router r = router;
  CoverageCalibration out;
  for (int step = 6; step <= 19; ++step) {
    r.evidence_coverage = step / 20.0;  // the double nearest the printed value
    const EvidenceRecall recall = evidence_recall(r, rows);
    if (recall.rows == 0) return {};
    out.steps.push_back({r.evidence_coverage, recall});
    if (progress) progress(out.steps.back());
    if (recall.router >= recall.naive) {
      out.coverage = r.evidence_coverage;
      out.reached = true;
      break;
    }
  }
  return out;
}

EvidenceEvaluation evaluate_evidence(const Router& router, const std::vector<Outcome>& rows) {
  const std::vector<Picker> pickers = evidence_pickers(router);
  EvidenceEvaluation out;
  for (const Picker& p : pickers) out.policies.push_back({p.name});
  struct TaskSums {
    double rows = 0, recall = 0, label_recall = 0, none = 0, label_none = 0;
  };
  std::map<std::string, TaskSums> by_task;  // the router against the label, per task
  std::size_t n = 0;
  for (const Outcome& o : rows) {
    if (!has_evidence(o)) continue;
    ++n;
    const EvidenceSetting label = evidence_label(o);
    for (std::size_t k = 0; k < pickers.size(); ++k) {
      auto [bin, ret] = pickers[k].pick(o);
      if (ret == 0) bin = 0;  // no context: every bin's setting holds the same
      const Trial* hit = setting_trial(o, bin, ret);
      if (!hit) throw Error("evidence row " + o.id + " has no setting for bin " + std::to_string(bin));
      EvidenceEvaluation::Policy& p = out.policies[k];
      p.recall += hit->quality;
      p.tokens += std::isfinite(hit->context_tokens) ? hit->context_tokens : 0;
      p.none += ret == 0;
      p.exact += EvidenceSetting{bin, ret} == label;
      TaskSums& ts = by_task[o.task];
      if (k == 0) ts.rows += 1, ts.recall += hit->quality, ts.none += ret == 0;
      if (k + 1 == pickers.size()) ts.label_recall += hit->quality, ts.label_none += ret == 0;
    }
  }
  if (n == 0) return {};
  out.rows = n;
  const double count = static_cast<double>(n);
  for (EvidenceEvaluation::Policy& p : out.policies) {
    p.recall /= count;
    p.tokens /= count;
    p.none /= count;
    p.exact /= count;
  }
  for (const auto& [task, ts] : by_task) {
    out.tasks.push_back({task, static_cast<std::size_t>(ts.rows), ts.recall / ts.rows, ts.label_recall / ts.rows,
                         ts.none / ts.rows, ts.label_none / ts.rows});
  }
  return out;
}

}  // namespace ruvllm::router
