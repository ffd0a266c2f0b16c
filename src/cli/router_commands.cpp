// `ruvllm router train|eval|calibrate|inspect`: the FastGRNN router on outcome records in the
// schema of ../shared/data/router (models.json + {train,test}.jsonl). Query text becomes features
// through the same GloVe embedder the memory uses.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.h"
#include "common/report.h"
#include "progress.h"
#include "questions.h"
#include "router_data.h"
#include "ruvllm/config.h"
#include "ruvllm/embed.h"
#include "ruvllm/pipeline.h"
#include "ruvllm/router.h"

namespace ruvllm::cli {
namespace {

struct TrainOptions {
  DataOptions data;
  std::vector<std::string> evidence;
  std::string context_bins = default_bins();
  std::string split = "train", out = "ruvllm-router.json";
  router::RouterShape shape;
  router::TrainParams train;
  bool float_only = false, all_models = false;
};

void train(const TrainOptions& o) {
  const auto embedder = open_embedder(o.data);
  auto ladder = router::load_ladder(o.data.data, !o.all_models);
  ladder.context_bins = parse_bins(o.context_bins);
  for (const auto& m : ladder.dropped)
    std::fprintf(stderr, "ladder: %s left off (a cheaper model is better)\n", m.c_str());
  auto outcomes = load_split(o.data, ladder, o.split, *embedder);
  auto evidence = load_evidence(o.evidence, ladder, *embedder);
  outcomes.insert(outcomes.end(), std::make_move_iterator(evidence.begin()), std::make_move_iterator(evidence.end()));
  router::Router r(ladder, o.shape, o.train.seed);
  auto params = o.train;
  params.progress = [](int epoch, const char* phase, double loss) {
    if (epoch % 10 == 0) std::fprintf(stderr, "epoch %d (%s): loss %.4f\n", epoch, phase, loss);
  };
  const auto t0 = std::chrono::steady_clock::now();
  const auto report = r.train(outcomes, params);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!o.float_only) r.quantize();
  r.save(o.out);
  std::printf(
      "trained on %zu outcomes in %.1f s: loss %.4f -> %.4f, cell sparsity %.2f, %zu parameters, %zu bytes %s\n",
      report.examples, seconds, report.initial_loss, report.final_loss, report.sparsity, r.parameters().size(),
      r.weight_bytes(), r.quantized() ? "int8" : "float32");
  std::printf(
      "heads trained: model yes, context %s, retrieval %s, sampling %s (the others need outcome records "
      "that vary them: --evidence for context and retrieval)\nwrote %s\n",
      report.context_trained ? "yes" : "no", report.retrieval_trained ? "yes" : "no",
      report.sampling_trained ? "yes" : "no", o.out.c_str());
}

struct EvalOptions {
  DataOptions data;
  std::vector<std::string> evidence;
  std::string model, split = "test", train_split = "train", out = "build/bench/router";
  std::size_t k = 25;
  double coverage = NAN;
  bool baselines = true;
};

std::string fmt(double v, const char* f = "%.3f") {
  if (!std::isfinite(v)) return "–";
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// The context and retrieval heads on held-out evidence rows (router::evaluate_evidence): markdown,
// and json["evidence"].
std::string evidence_table(const router::Router& r, const std::vector<router::Outcome>& rows, nlohmann::json& json) {
  const router::EvidenceEvaluation ev = router::evaluate_evidence(r, rows);
  if (ev.rows == 0) throw std::runtime_error("no evidence rows in the --evidence files");
  const std::size_t n = ev.rows;
  std::string md = "\nContext and retrieval heads on " + std::to_string(n) +
                   " evidence rows (the share of each question's gold sources the context holds):\n\n"
                   "| policy | evidence recall | context tokens | no context | = label |\n|---|---|---|---|---|\n";
  for (const auto& p : ev.policies) {
    json["evidence"].push_back({{"policy", p.name},
                                {"recall", p.recall},
                                {"tokens", p.tokens},
                                {"none", p.none},
                                {"exact", p.exact},
                                {"rows", n}});
    md += "| " + p.name + " | " + fmt(p.recall) + " | " + fmt(p.tokens, "%.0f") + " | " + fmt(p.none) + " | " +
          fmt(p.exact) + " |\n";
  }
  md +=
      "\n| task | rows | router recall | label recall | router: no context | label: no context |\n"
      "|---|---|---|---|---|---|\n";
  for (const auto& t : ev.tasks) {
    md += "| " + t.task + " | " + fmt(static_cast<double>(t.rows), "%.0f") + " | " + fmt(t.recall) + " | " +
          fmt(t.label_recall) + " | " + fmt(t.none) + " | " + fmt(t.label_none) + " |\n";
  }
  return md;
}

// The routers `router eval` scores: the file's as float32 and int8, the baselines fitted with its
// objective (unless --no-baselines), random and the cheapest and the largest model alone.
std::vector<router::Policy> eval_policies(const EvalOptions& o, std::shared_ptr<const router::Router> as_float,
                                          std::shared_ptr<const router::Router> as_int8,
                                          const embed::Embedder& embedder) {
  const router::Ladder& ladder = as_float->ladder();
  std::vector<router::Policy> policies = {router::router_policy(as_float), router::router_policy(as_int8)};
  if (o.baselines) {
    const auto train = load_split(o.data, ladder, o.train_split, embedder);
    const router::Router::Objective& objective = as_float->objective();
    router::TrainParams tp;
    tp.lambda_latency = objective.lambda_latency;
    tp.mu_cost = objective.mu_cost;
    tp.l2 = objective.l2;
    tp.share_ties = objective.share_ties;
    std::fprintf(stderr, "fitting the baselines on %s\n", o.train_split.c_str());
    policies.push_back(router::logistic_policy(as_float, train, tp));
    policies.push_back(router::knn_policy(as_float, train, tp, o.k));
  }
  policies.push_back(router::random_policy(ladder));
  policies.push_back(router::fixed_policy(0, ladder));
  policies.push_back(router::fixed_policy(ladder.models.size() - 1, ladder));
  return policies;
}

// The routers' table (markdown) and json["routers"]; with costs, what each needs to match the best
// single model.
std::string routers_table(const std::vector<router::Evaluation>& evals, const router::SingleModel& best, bool costs,
                          nlohmann::json& json) {
  std::string md = "| router | oracle accuracy | APGR | CPT(50%) | CPT(80%) | quality | " +
                   std::string(costs ? "cost $/query | " : "") + "largest share | regret vs largest |" +
                   (costs ? " cost to match best single | best quality at ≤ 50 % of its cost |" : "") +
                   "\n|---|---|---|---|---|---|" + (costs ? "---|" : "") + "---|---|" + (costs ? "---|---|" : "") +
                   "\n";
  for (const auto& e : evals) {
    const double match_cost = router::cost_to_reach(e, best.quality),
                 half_quality = router::quality_within(e, 0.5 * best.cost);
    nlohmann::json curve = nlohmann::json::array();
    for (const auto& pt : e.curve) {
      curve.push_back({{"threshold", pt.threshold},
                       {"largest_share", pt.largest_share},
                       {"quality", pt.quality},
                       {"cost", pt.cost}});
    }
    auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
    json["routers"].push_back({{"name", e.router},
                               {"accuracy", e.accuracy},
                               {"apgr", num(e.apgr)},
                               {"cpt50", num(e.cpt50)},
                               {"cpt80", num(e.cpt80)},
                               {"quality", e.quality},
                               {"cost", e.cost},
                               {"largest_share", e.largest_share},
                               {"regret", e.regret},
                               {"cost_to_match_best", num(match_cost)},
                               {"quality_at_half_cost", num(half_quality)},
                               {"rows", e.rows},
                               {"curve", curve}});
    md += "| " + e.router + " | " + fmt(e.accuracy) + " | " + fmt(e.apgr) + " | " + fmt(e.cpt50) + " | " +
          fmt(e.cpt80) + " | " + fmt(e.quality) + " | " + (costs ? fmt(e.cost, "%.2e") + " | " : "") +
          fmt(e.largest_share) + " | " + fmt(e.regret) + " |" +
          (costs ? " " +
                       (std::isfinite(match_cost) ? fmt(match_cost / best.cost * 100, "%.0f") + " %"
                                                  : std::string("not reached")) +
                       " | " + fmt(half_quality) + " |"
                 : "") +
          "\n";
  }
  return md;
}

void eval(const EvalOptions& o) {
  const auto embedder = open_embedder(o.data);
  auto loaded = std::make_shared<router::Router>(router::Router::load(o.model));
  const router::Ladder& ladder = loaded->ladder();
  const auto test = load_split(o.data, ladder, o.split, *embedder);
  // The router's own objective: the oracle's utility and the baselines' targets and prior.
  const router::Router::Objective& objective = loaded->objective();
  if (!objective.recorded) {
    std::fprintf(stderr,
                 "%s does not record its training objective (an older file): scoring with U = quality, "
                 "baselines with one-hot targets and l2 10\n",
                 o.model.c_str());
  }
  auto as_float = std::make_shared<router::Router>(*loaded);
  as_float->quantize(false);
  auto as_int8 = std::make_shared<router::Router>(*loaded);
  as_int8->quantize(true);
  const bool costs = std::isfinite(ladder.cost[0]);
  std::vector<router::Evaluation> evals;
  for (const auto& p : eval_policies(o, as_float, as_int8, *embedder)) {
    std::fprintf(stderr, "evaluating %s\n", p.name.c_str());
    evals.push_back(router::evaluate(p, test, ladder, loaded->threshold, objective.lambda_latency, objective.mu_cost));
  }
  const router::SingleModel best = router::best_single_model(test, ladder);
  nlohmann::json json;
  json["data"] = o.data.data;
  json["split"] = o.split;
  json["model_file"] = o.model;
  json["threshold"] = loaded->threshold;
  json["objective"] = {{"lambda_latency", objective.lambda_latency},
                       {"mu_cost", objective.mu_cost},
                       {"l2", objective.l2},
                       {"share_ties", objective.share_ties},
                       {"recorded", objective.recorded}};
  json["weight_bytes_int8"] = as_int8->weight_bytes();
  json["weight_bytes_float32"] = as_float->weight_bytes();
  json["file_bytes"] = std::filesystem::file_size(o.model);
  json["best_single"] = {{"model", ladder.models[best.model]}, {"quality", best.quality}, {"cost", best.cost}};
  std::string md = "Router evaluation: " + o.data.data + " (" + o.split + ", " + std::to_string(evals[0].rows) +
                   " rows with every model), threshold " + fmt(loaded->threshold) + "\n\n";
  md += routers_table(evals, best, costs, json);
  md += "\nBest single model: " + ladder.models[best.model] + ", quality " + fmt(best.quality) +
        (costs ? ", " + fmt(best.cost, "%.2e") + " $/query" : "") +
        ". Network: " + std::to_string(as_int8->weight_bytes()) + " bytes int8 (" +
        std::to_string(as_float->weight_bytes()) + " float32); file " +
        std::to_string(json["file_bytes"].get<uint64_t>()) + " bytes with the feature fit.\n";
  if (!o.evidence.empty()) {
    if (std::isfinite(o.coverage)) {
      if (!(o.coverage > 0 && o.coverage <= 1)) throw std::runtime_error("--evidence-coverage must be in (0, 1]");
      as_int8->evidence_coverage = o.coverage;
    }
    md += evidence_table(*as_int8, load_evidence(o.evidence, ladder, *embedder), json);
  }
  std::string name = std::filesystem::path(o.data.data).filename().string();
  if (name.empty()) name = std::filesystem::path(o.data.data).parent_path().filename().string();
  common::write_report(o.out, "router-" + name, json, md);
}

struct EvidenceOptions {
  std::string config, questions, out, task, context_bins = default_bins();
  std::size_t limit = 0;
};

void evidence(const EvidenceOptions& o) {
  const std::vector<int> bins = parse_bins(o.context_bins);
  auto questions = read_labelled_questions(o.questions);
  if (o.limit > 0 && questions.size() > o.limit) questions.resize(o.limit);
  pipeline::Config config = config::load(o.config);
  config.parallel = 1;  // tokenizing only
  config.request_log = "off";
  pipeline::Pipeline p(config);
  std::ofstream out(o.out);
  if (!out) throw std::runtime_error("cannot write " + o.out);
  const std::string task = o.task.empty() ? std::filesystem::path(o.questions).stem().string() : o.task;
  ProgressBar bar;
  double best_sum = 0;
  for (std::size_t i = 0; i < questions.size(); ++i) {
    const auto& [id, q] = questions[i];
    const auto ev = p.evidence(q, bins);
    const auto& rs = ev.signals.retrieval;
    nlohmann::json row = {{"id", id}, {"query", q.text}, {"task", task}};
    row["retrieval_signals"] = {{"scores", rs.scores},
                                {"embeddings", rs.embeddings},
                                {"attention_entropy", rs.attention_entropy},
                                {"graph_depth", rs.graph_depth},
                                {"search_agreement", rs.search_agreement}};
    double best = 0;
    for (const auto& t : ev.trials) {
      row["settings"].push_back({{"retrieval", router::to_string(t.retrieval)},
                                 {"context_tokens", t.context_tokens},
                                 {"quality", t.recall},
                                 {"tokens", t.tokens},
                                 {"blocks", t.blocks}});
      best = std::max(best, t.recall);
    }
    best_sum += best;
    out << row.dump() << '\n';
    bar(static_cast<double>(i + 1) / static_cast<double>(questions.size()));
  }
  out.close();
  if (!out) throw std::runtime_error("writing " + o.out + " failed");
  std::printf("%zu evidence rows (4 strategies x %zu bins each) -> %s; mean best evidence recall %.3f\n",
              questions.size(), bins.size(), o.out.c_str(), best_sum / static_cast<double>(questions.size()));
}

struct CalibrateOptions {
  DataOptions data;
  std::string model, split = "train";
  double share = 0.5;
  std::vector<std::string> evidence;
};

void calibrate(const CalibrateOptions& o) {
  const auto embedder = open_embedder(o.data);
  auto r = router::Router::load(o.model);
  const auto reference = load_split(o.data, r.ladder(), o.split, *embedder);
  const double before = r.threshold;
  r.threshold = router::calibrate(r, reference, o.share);
  std::printf("threshold %.6f -> %.6f: %.1f %% of %s queries go to %s\n", before, r.threshold, 100 * o.share,
              o.split.c_str(), r.ladder().models.back().c_str());
  if (!o.evidence.empty()) {
    // The context heads' operating point: the smallest coverage whose contexts hold at least the
    // evidence the naive flow's do (RouteLLM's calibration, with "the same quality as the baseline"
    // as the target instead of a share of calls).
    const auto cal = router::calibrate_coverage(r, load_evidence(o.evidence, r.ladder(), *embedder),
                                                [](const router::CoverageCalibration::Step& step) {
                                                  std::printf("  coverage %.2f: evidence %.3f (naive %.3f)\n",
                                                              step.coverage, step.recall.router, step.recall.naive);
                                                });
    if (cal.steps.empty()) throw std::runtime_error("no evidence rows in the --evidence files");
    if (cal.reached) {
      std::printf("evidence coverage %.2f: the smallest whose contexts hold the naive flow's evidence\n", cal.coverage);
    } else {
      std::printf("evidence coverage 0.95: no coverage up to 0.95 holds the naive flow's evidence on these rows\n");
    }
    r.evidence_coverage = cal.coverage;
  }
  r.save(o.model);
  std::printf("wrote %s\n", o.model.c_str());
}

struct InspectOptions {
  DataOptions data;
  std::string model, query;
};

void inspect(const InspectOptions& o) {
  const auto r = router::Router::load(o.model);
  std::printf("router %s\n  ladder (cheapest first):\n", o.model.c_str());
  for (std::size_t m = 0; m < r.ladder().models.size(); ++m) {
    std::printf("    %zu  %-40s cost %s, privacy ≤ %d\n", m, r.ladder().models[m].c_str(),
                fmt(r.ladder().cost[m], "%.3e").c_str(), r.ladder().max_privacy[m]);
  }
  const auto& s = r.shape();
  std::printf("  FastGRNN: hidden %zu, rank W %zu, rank U %zu, %zu step(s) of %zu features; %zu parameters\n", s.hidden,
              s.rank_w, s.rank_u, s.steps, router::kFeatures / s.steps, r.parameters().size());
  std::printf("  weights: %zu bytes %s; threshold %.4f; confidence floor %.3f\n", r.weight_bytes(),
              r.quantized() ? "int8" : "float32", r.threshold, r.confidence_floor);
  if (o.query.empty()) return;
  const auto embedder = open_embedder(o.data);
  router::Signals sig;
  sig.query = pipeline::query_signals(*embedder, o.query);
  const auto x = r.features(sig);
  const auto d = r.decide(x, sig.system);
  std::vector<float> p(r.ladder().models.size());
  r.model_probabilities(x, p.data());
  std::printf("  query: %s\n  decision: %s (P =", o.query.c_str(), r.ladder().models[d.model].c_str());
  for (float v : p) std::printf(" %.3f", v);
  std::printf("), context %d tokens, retrieval %d, temperature %.2f, top_p %.2f, confidence %.3f%s\n", d.context_tokens,
              static_cast<int>(d.retrieval), d.temperature, d.top_p, d.confidence, d.escalated ? ", escalated" : "");
  std::printf("  non-zero features:");
  for (std::size_t i = 0; i < router::kFeatures; ++i) {
    if (x[i] != 0) std::printf(" %s=%.2f", std::string(router::feature_names()[i]).c_str(), x[i]);
  }
  std::printf("\n");
}

void add_train_command(CLI::App* router) {
  auto t = std::make_shared<TrainOptions>();
  auto* train_cmd = router->add_subcommand("train", "Train on outcome records (models.json + <split>.jsonl)");
  add_data_options(train_cmd, t->data);
  train_cmd->add_option("--split", t->split, "Outcome file to learn from")->capture_default_str();
  train_cmd->add_option("--evidence", t->evidence,
                        "Evidence rows (`router evidence`) for the context and retrieval heads; repeatable");
  train_cmd->add_option("--context-bins", t->context_bins, "Context-size bins in tokens, comma-separated")
      ->capture_default_str();
  train_cmd->add_option("--out", t->out, "Router file to write")->capture_default_str();
  train_cmd->add_option("--hidden", t->shape.hidden, "FastGRNN hidden width")->capture_default_str();
  train_cmd->add_option("--rank-w", t->shape.rank_w, "Rank of W = W1·W2")->capture_default_str();
  train_cmd->add_option("--rank-u", t->shape.rank_u, "Rank of U = U1·U2")->capture_default_str();
  train_cmd->add_option("--steps", t->shape.steps, "Input as 1, 2, 4 or 8 steps")->capture_default_str();
  train_cmd->add_option("--epochs", t->train.epochs, "Epochs over the three phases")->capture_default_str();
  train_cmd->add_option("--batch", t->train.batch, "Minibatch size")->capture_default_str();
  train_cmd->add_option("--learning-rate", t->train.learning_rate, "Adam step size")->capture_default_str();
  train_cmd->add_option("--l2", t->train.l2, "Prior precision on the matrices (weight decay l2 / training rows)")
      ->capture_default_str();
  train_cmd->add_option("--sparsity", t->train.sparsity, "Share of cell weights thresholded to zero")
      ->capture_default_str();
  train_cmd->add_option("--lambda", t->train.lambda_latency, "Utility: penalty per ms of latency")
      ->capture_default_str();
  train_cmd->add_option("--mu", t->train.mu_cost, "Utility: penalty per dollar of cost")->capture_default_str();
  train_cmd->add_option("--seed", t->train.seed, "Initial weights and shuffles")->capture_default_str();
  train_cmd->add_flag("!--no-curriculum", t->train.curriculum, "Train on all examples from the first epoch");
  train_cmd->add_flag("!--ties-to-cheaper", t->train.share_ties,
                      "Model head target: a tie at the best utility goes to the cheaper model (default: shared)");
  train_cmd->add_flag("--all-models", t->all_models,
                      "Keep models that a cheaper model beats on mean training quality (default: the frontier only)");
  train_cmd->add_flag("--float", t->float_only, "Keep float32 weights (default: int8 after training)");
  train_cmd->callback([t] { train(*t); });
}

void add_eval_command(CLI::App* router) {
  auto e = std::make_shared<EvalOptions>();
  auto* eval_cmd = router->add_subcommand("eval", "APGR, CPT, quality and cost against baselines on a test split");
  add_data_options(eval_cmd, e->data);
  eval_cmd->add_option("--model", e->model, "Router file")->required();
  eval_cmd->add_option("--split", e->split, "Outcome file to evaluate on")->capture_default_str();
  eval_cmd->add_option("--train-split", e->train_split, "Outcome file the baselines learn from")->capture_default_str();
  eval_cmd->add_option("--evidence", e->evidence, "Held-out evidence rows: evaluates the context and retrieval heads");
  eval_cmd->add_option("--evidence-coverage", e->coverage, "Override the file's evidence coverage (context heads)");
  eval_cmd->add_option("--k", e->k, "Neighbours of the kNN baseline")->capture_default_str();
  eval_cmd->add_option("--out", e->out, "Folder for the JSON and markdown report")->capture_default_str();
  eval_cmd->add_flag("!--no-baselines", e->baselines, "Skip the logistic and kNN baselines");
  eval_cmd->callback([e] { eval(*e); });
}

void add_evidence_command(CLI::App* router) {
  auto v = std::make_shared<EvidenceOptions>();
  auto* ev_cmd = router->add_subcommand(
      "evidence",
      "Evidence rows for the context and retrieval heads: for labelled questions, how much of their gold "
      "evidence the pipeline's context holds under every retrieval strategy and context bin");
  ev_cmd->add_option("-c,--config", v->config, "Pipeline configuration (its memory holds the questions' corpus)")
      ->required();
  ev_cmd->add_option("--questions", v->questions, "Labelled questions (qa or ir schema of ../shared/data)")->required();
  ev_cmd->add_option("--out", v->out, "Evidence JSONL to write")->required();
  ev_cmd->add_option("--task", v->task, "Task name for the rows (default: the questions file's name)");
  ev_cmd->add_option("--context-bins", v->context_bins, "Context-size bins in tokens, comma-separated")
      ->capture_default_str();
  ev_cmd->add_option("--limit", v->limit, "Only the first N questions (0 = all)")->capture_default_str();
  ev_cmd->callback([v] { evidence(*v); });
}

void add_calibrate_command(CLI::App* router) {
  auto c = std::make_shared<CalibrateOptions>();
  auto* cal_cmd = router->add_subcommand("calibrate", "Set the threshold for a target share of largest-model calls");
  add_data_options(cal_cmd, c->data);
  cal_cmd->add_option("--model", c->model, "Router file (rewritten with the new threshold)")->required();
  cal_cmd->add_option("--split", c->split, "Reference outcome file")->capture_default_str();
  cal_cmd->add_option("--largest-share", c->share, "Target share of calls to the largest model")->capture_default_str();
  cal_cmd->add_option("--evidence", c->evidence,
                      "Evidence rows: also set the evidence coverage to the smallest whose contexts hold the naive "
                      "flow's evidence");
  cal_cmd->callback([c] { calibrate(*c); });
}

void add_inspect_command(CLI::App* router) {
  auto i = std::make_shared<InspectOptions>();
  auto* inspect_cmd = router->add_subcommand("inspect", "Show a router file, and its decision for a query");
  inspect_cmd->add_option("--model", i->model, "Router file")->required();
  inspect_cmd->add_option("--query", i->query, "A query to route");
  inspect_cmd->add_option("--words", i->data.words, "Word-vector table (default: the GloVe table)");
  inspect_cmd->callback([i] { inspect(*i); });
}

}  // namespace

void add_router_commands(CLI::App& app) {
  auto* router = app.add_subcommand("router", "The FastGRNN router: train, evaluate, calibrate, inspect");
  router->require_subcommand(1);
  add_train_command(router);
  add_eval_command(router);
  add_evidence_command(router);
  add_calibrate_command(router);
  add_inspect_command(router);
}

}  // namespace ruvllm::cli
