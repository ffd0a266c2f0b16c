// ruvllm/router.h — the control circuit: per request, which model, how much context, which
// sampling and which retrieval strategy.
//
// Plain signals (query text and vector, retrieval statistics, system constraints) become a
// documented 128-float feature vector (docs/router.md lists every slot). A FastGRNN cell (Kusupati
// et al. 2018) reads it as one step or as a short sequence, and small heads decide. The router is
// trained on outcome records (how well each model did on a query, at what cost), thresholded as
// RouteLLM does, quantised to int8 and stored in one versioned JSON file with its feature fit.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "ruvllm/error.h"

namespace ruvllm::router {

using ruvllm::Error;  // ruvllm/error.h: one type for every room, with a code
using ruvllm::ErrorCode;

constexpr std::size_t kFeatures = 128;
using FeatureVector = std::array<float, kFeatures>;
const std::array<std::string_view, kFeatures>& feature_names();  // slot → name, e.g. "query.lang_cyrillic"

// ---- signals: what the pipeline knows about a request (plain structs, no other room's types) ---

struct QuerySignals {
  std::string text;
  std::vector<float> embedding;              // the embedder's unit vector; empty = none
  std::size_t tokens = 0, known_tokens = 0;  // word tokens, and those the embedder knew
  double user_requests_24h = 0;              // this user's recent requests (0 = unknown)
};

struct RetrievalSignals {                      // all zero when nothing was retrieved
  std::vector<float> scores;                   // similarity of each result to the query, best first
  std::vector<std::vector<float>> embeddings;  // unit vectors of the first results (≤ 8 are read)
  double attention_entropy = 0;                // attention::Scores::entropy
  int graph_depth = 0;                         // attention::Scores::depth_touched
  double search_agreement = 0;                 // share of top results found by both searches
};

struct SystemSignals {
  double latency_budget_ms = 0;  // 0 = none
  int device_class = 0;          // 0 cpu, 1 cpu-small (battery), 2 gpu, 3 other
  int privacy = 0;               // 0 public, 1 internal, 2 confidential, 3 restricted
  double memory_available_gib = 0, battery = 1;
  std::size_t concurrent_requests = 0;
  bool high_risk = false;  // a guardrail input, not a feature: escalates to the largest allowed model
};

struct Signals {
  QuerySignals query;
  RetrievalSignals retrieval;
  SystemSignals system;
};

// ---- outcomes: what training learns from -------------------------------------------------------

// Trial::model for a setting measured without a model: how much of a question's evidence a
// context of some size and retrieval strategy holds (`ruvllm router evidence`). Such trials train
// the context and retrieval heads only; the model head and the evaluation skip them.
constexpr std::size_t kAnyModel = std::numeric_limits<std::size_t>::max();

struct Trial {            // one model's answer to one query
  std::size_t model = 0;  // ladder index, or kAnyModel
  double quality = 0;     // [0, 1]
  double cost = std::numeric_limits<double>::quiet_NaN(), latency_ms = std::numeric_limits<double>::quiet_NaN();
  int context_bin = -1, retrieval = -1;                              // -1 = not recorded
  double context_tokens = std::numeric_limits<double>::quiet_NaN();  // what the context held (evidence rows)
  double temperature = std::numeric_limits<double>::quiet_NaN(), top_p = std::numeric_limits<double>::quiet_NaN();
};

struct Outcome {
  std::string id, task;
  Signals signals;
  std::vector<Trial> trials;  // a ladder model without a trial has no record for this query
};

struct Ladder {
  std::vector<std::string> models;                        // cheapest first: the decision escalates upwards
  std::vector<double> cost;                               // mean cost per call, NaN = unknown
  std::vector<int> max_privacy;                           // the highest privacy level each model may serve (3 = local)
  std::vector<int> context_bins = {128, 256, 512, 1024};  // tokens of retrieved context (context.max_tokens caps)
  std::vector<std::string> dropped;                       // models.json entries left off (load_ladder's frontier)
};

// `dir`/models.json + `dir`/<split>.jsonl in the schema of ../shared/data/router. Rows may also
// carry "settings" (model-free trials: {"retrieval": "none"|"dense"|"hybrid"|"hybrid_graph",
// "context_tokens": one of the ladder's bins, "quality"}) and "retrieval_signals" (RetrievalSignals
// as JSON); a row needs "outcomes", "settings" or both. The ladder is
// ordered by mean training cost when costs are known, else as models.json lists it. `frontier`
// keeps only the models better on mean training quality than every cheaper model (escalating to a
// dearer model that is no better never pays; a model without quality records stays). Throws Error with file:line for
// malformed rows, models outside models.json or qualities outside [0, 1]; trials of models left off the ladder are
// dropped.
Ladder load_ladder(const std::string& dir, bool frontier = false);
std::vector<Outcome> load_outcomes(const std::string& path, const Ladder& ladder);

// ---- the router ---------------------------------------------------------------------------------

enum class Retrieval { none = 0, dense = 1, hybrid = 2, hybrid_graph = 3 };
std::string_view to_string(Retrieval retrieval);  // "none", "dense", "hybrid", "hybrid_graph"

struct RouteDecision {
  std::size_t model = 0;  // ladder index
  std::size_t context_bin = 0;
  int context_tokens = 0;
  Retrieval retrieval = Retrieval::hybrid_graph;
  float temperature = 0.7f, top_p = 0.9f, confidence = 0;
  float escalation = 0;    // P(a model above the cheapest is needed): RouteLLM's win rate
  bool escalated = false;  // a guardrail raised the model (low confidence or high risk)
};

struct RouterShape {
  std::size_t hidden = 32;  // 32–64 in the paper's range
  std::size_t rank_w = 16;  // W = W1·W2, W1 hidden × rank_w
  std::size_t rank_u = 8;   // U = U1·U2
  std::size_t steps = 1;    // the 128 features as 1, 2, 4 or 8 steps of 128/steps
};

struct TrainParams {
  int epochs = 60;  // split 50 % dense, 25 % hard thresholding, 25 % retraining on the support
  std::size_t batch = 64;
  double learning_rate = 3e-3;
  // Prior precision on the matrices: the mean loss adds l2/rows · ½‖W‖² (rows: labelled training
  // rows), a MAP estimate's weight decay. 5 by 5-fold cross-validation on the training splits of the
  // three outcome sets (docs/router.md): 5.6e-3 per row on RouterBench's ~890, 4e-4 on RouteLLM's 12,288.
  double l2 = 5;
  double sparsity = 0.5;                   // share of W1, W2, U1, U2 entries set to zero
  double lambda_latency = 0, mu_cost = 0;  // U = quality − λ·latency_ms − μ·cost
  double epsilon = 0.02;                   // context bin: the smallest within ε of the best U
  // Models tied at the best U share the model head's target (it then learns the expected gain of a
  // larger model); false: the tie goes to the cheaper model, as the utility label does.
  bool share_ties = true;
  double evidence_share = 0.3;                  // of the loss, carried by model-free (evidence) rows
  double alpha = 0.1, beta = 0.1, gamma = 0.2;  // temperature, top_p and confidence loss weights
  bool curriculum = true;                       // clear examples (large utility margin) first
  uint64_t seed = 42;
  std::function<void(int epoch, const char* phase, double loss)> progress;
};

struct TrainReport {
  double initial_loss = 0, final_loss = 0;
  std::size_t examples = 0;
  double sparsity = 0;  // measured share of zeros in W1, W2, U1, U2
  bool context_trained = false, retrieval_trained = false, sampling_trained = false;
};

// Labels of one outcome under a utility: y_model = argmax U (ties → cheaper), or -1 with no trial.
int utility_label(const Outcome& outcome, const Ladder& ladder, double lambda_latency, double mu_cost);

class Router {
 public:
  Router(Ladder ladder, const RouterShape& shape = {}, uint64_t seed = 42);  // untrained
  static Router load(const std::string& path);  // throws Error with the reason (version, shapes, NaN)
  void save(const std::string& path) const;

  const Ladder& ladder() const { return ladder_; }
  const RouterShape& shape() const { return shape_; }

  // Fits the feature normalisation, PCA and domain clusters on the outcomes' signals, then the
  // network. Throws Error for an empty set or an outcome whose trials name no ladder model.
  TrainReport train(const std::vector<Outcome>& outcomes, const TrainParams& params = {});

  FeatureVector features(const Signals& signals) const;  // normalised; throws Error for NaN input
  // The training rows' features as train() saw them (each row's own outcome left out of the
  // per-domain accuracy slots): what the baselines are fitted on.
  std::vector<FeatureVector> training_features(const std::vector<Outcome>& outcomes) const;
  // Thread-safe, allocation-free. Uses the int8 weights after quantize(), else float.
  RouteDecision decide(const FeatureVector& features, const SystemSignals& system = {}) const;
  RouteDecision decide(const Signals& signals) const { return decide(features(signals), signals.system); }
  // The model head's probabilities (its target: the models tied at the best utility share it), into
  // `out` (ladder size).
  void model_probabilities(const FeatureVector& features, float* out) const;

  // Operating point: the smallest model whose higher models hold less than `threshold` of the
  // probability mass. 0.5 = the median; RouteLLM's calibration picks it for a target share.
  double threshold = 0.5;
  // Below it, escalate to the largest allowed model (0 = off). Confidence: the head's estimate that
  // the model of highest probability reaches the best quality (with shared ties and μ = 0 that is
  // often the larger model: a floor then guards the larger model's answers more than the smaller's).
  double confidence_floor = 0;
  // Context and retrieval heads: the context bin is the smallest that holds the evidence with this
  // probability, and retrieval is dropped only at this confidence that there is nothing to find.
  double evidence_coverage = 0.8;

  // What train() optimised, saved in the file: `router eval` scores its oracle and fits its baselines
  // with it. A file written before it was recorded reads recorded = false and the defaults of then
  // (λ = μ = 0, l2 10, ties to the cheaper model).
  struct Objective {
    double lambda_latency = 0, mu_cost = 0, l2 = TrainParams{}.l2;
    bool share_ties = TrainParams{}.share_ties, recorded = false;
  };
  const Objective& objective() const { return objective_; }

  // int8 per-row weights (decide() then runs the fused int8 path); false returns to float32. The
  // float parameters stay, so the file holds both and reloads either bit for bit.
  void quantize(bool on = true);
  bool quantized() const { return quantized_; }
  std::size_t weight_bytes() const;  // of the network as decide() uses it (int8 or float32)

  // Flat parameters and the training loss with its gradient (for tests and diagnostics). decide()
  // reads weights compiled from them: after editing parameters(), call quantize(quantized()).
  std::vector<double>& parameters() { return theta_; }
  const std::vector<double>& parameters() const { return theta_; }
  double loss(const std::vector<Outcome>& outcomes, const TrainParams& params, std::vector<double>* gradient) const;

  struct Impl;  // the feature fit and compiled weights (src/router)

 private:
  Ladder ladder_;
  RouterShape shape_;
  std::vector<double> theta_;
  bool quantized_ = false;
  Objective objective_;
  std::shared_ptr<Impl> impl_;
};

// The router file behind a path, reloaded when the file changes; a bad new file keeps the old one.
class RouterHandle {
 public:
  explicit RouterHandle(std::string path);  // throws Error when the first load fails
  std::shared_ptr<const Router> get() const;
  bool reload_if_changed(std::string* error = nullptr);  // true when a new router was loaded

 private:
  std::string path_;
  mutable std::mutex mutex_;
  std::shared_ptr<const Router> router_;
  int64_t stamp_ = 0;
};

// ---- evaluation (RouteLLM's metrics) -------------------------------------------------------------

struct OperatingPoint {
  double threshold = 0, largest_share = 0, quality = 0, cost = 0;
};

struct Evaluation {
  std::string router;
  double accuracy = 0;  // share of decisions at the default threshold whose model has the best U (ties count)
  double apgr = std::numeric_limits<double>::quiet_NaN();   // 2-model ladders: area under PGR over
  double cpt50 = std::numeric_limits<double>::quiet_NaN();  // the share of largest-model calls, and
  double cpt80 = std::numeric_limits<double>::quiet_NaN();  // the share needed for 50 % / 80 % PGR
  double quality = 0, cost = 0, regret = 0;                 // at the default threshold; regret vs always-largest
  double largest_share = 0;                                 // at the default threshold
  std::size_t rows = 0;
  // The operating points the threshold reaches, from 0 (always the largest) to just above 1 (never
  // escalate), consecutive repeats collapsed, each with a threshold that gives it: evaluate() sweeps
  // the exact breakpoints.
  std::vector<OperatingPoint> curve;
};

// A router for evaluation: a probability per ladder model per outcome (the router's: its model head); evaluate()
// applies the same threshold rule as Router::decide to it at every operating point.
struct Policy {
  std::string name;
  std::function<std::vector<float>(const Outcome&)> probabilities;
};

// Over the test outcomes that have a trial of every ladder model (`rows` says how many).
Evaluation evaluate(const Policy& policy, const std::vector<Outcome>& test, const Ladder& ladder,
                    double default_threshold = 0.5, double lambda_latency = 0, double mu_cost = 0);
Policy router_policy(std::shared_ptr<const Router> router);
// Baselines on the router's features: multinomial logistic regression and kNN (cosine), both
// fitted on `train` with the router's model-head targets (params.share_ties); random; always one model.
Policy logistic_policy(std::shared_ptr<const Router> features_from, const std::vector<Outcome>& train,
                       const TrainParams& params);
Policy knn_policy(std::shared_ptr<const Router> features_from, const std::vector<Outcome>& train,
                  const TrainParams& params, std::size_t k = 25);
Policy random_policy(const Ladder& ladder, uint64_t seed = 7);
Policy fixed_policy(std::size_t model, const Ladder& ladder);
// The smallest model whose higher models hold less than `threshold` of p (over the allowed ones).
std::size_t tier_for(const float* p, std::size_t models, double threshold, const bool* allowed = nullptr);
// The threshold at which `router` sends `largest_share` of `reference` to the largest model.
double calibrate(const Router& router, const std::vector<Outcome>& reference, double largest_share);

// The best single model on the test rows: fixed_policy's quality (λ = μ = 0), ties to the cheaper.
struct SingleModel {
  std::size_t model = 0;
  double quality = -1, cost = 0;
};
SingleModel best_single_model(const std::vector<Outcome>& test, const Ladder& ladder);
// Along an evaluation's curve: the least cost of an operating point whose quality reaches `quality`
// (within 1e-12), and the best quality of one that costs at most `cost`. NaN: no point does.
double cost_to_reach(const Evaluation& evaluation, double quality);
double quality_within(const Evaluation& evaluation, double cost);

// ---- the context and retrieval heads on evidence rows (outcomes with model-free trials) ---------

// An evidence row's label: the cheapest model-free setting (context bin, then retrieval strategy)
// within `epsilon` of the best evidence recall, the rule train() labels these heads by; bin 0 when
// the setting drops retrieval. {-1, -1}: the outcome has no model-free trial.
struct EvidenceSetting {
  int context_bin = -1, retrieval = -1;
  bool operator==(const EvidenceSetting&) const = default;
};
EvidenceSetting evidence_label(const Outcome& outcome, double epsilon = TrainParams{}.epsilon);

// The naive flow's context bin: 1,024 tokens (context.max_tokens' default, the budget it fills),
// else the largest bin.
int naive_bin(const std::vector<int>& context_bins);

// Mean evidence recall of the router's contexts (at its evidence_coverage) and of the naive flow's
// (dense search at naive_bin) over the evidence rows; rows = 0 when there are none. Throws Error
// for an evidence row without the setting either uses.
struct EvidenceRecall {
  double router = 0, naive = 0;
  std::size_t rows = 0;
};
EvidenceRecall evidence_recall(const Router& router, const std::vector<Outcome>& rows);

// The context heads' operating point, RouteLLM's calibration with "the naive flow's evidence" as the
// target instead of a share of calls: coverage 0.30, 0.35, … 0.95 in turn until the router's
// contexts hold at least that evidence. `steps` lists what was tried (empty: no evidence rows), each
// also passed to `progress` as it is measured; reached = false: no coverage did, and coverage is
// 0.95. Throws as evidence_recall.
struct CoverageCalibration {
  struct Step {
    double coverage;
    EvidenceRecall recall;
  };
  std::vector<Step> steps;
  double coverage = 0.95;
  bool reached = false;
};
CoverageCalibration calibrate_coverage(const Router& router, const std::vector<Outcome>& rows,
                                       const std::function<void(const CoverageCalibration::Step&)>& progress = {});

// The heads against fixed settings and the label: per policy (the router first, then the untrained
// default, the naive flow, no context and the label) the mean evidence recall, context tokens, share
// without context and share equal to the label; per task the router's recall and no-context share
// against the label's. rows = 0: no evidence rows. Throws Error for a row without a policy's setting.
struct EvidenceEvaluation {
  struct Policy {
    std::string name;
    double recall = 0, tokens = 0, none = 0, exact = 0;
  };
  struct Task {
    std::string task;
    std::size_t rows = 0;
    double recall = 0, label_recall = 0, none = 0, label_none = 0;
  };
  std::size_t rows = 0;
  std::vector<Policy> policies;
  std::vector<Task> tasks;  // in name order
};
EvidenceEvaluation evaluate_evidence(const Router& router, const std::vector<Outcome>& rows);

}  // namespace ruvllm::router
