// `ruvllm attention train`: learns the graph-attention scorer from questions with gold passages.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>

#include "commands.h"
#include "progress.h"
#include "questions.h"
#include "ruvllm/attention.h"
#include "ruvllm/pipeline.h"
#include "store.h"

#include "common/random.h"

namespace ruvllm::cli {
namespace {

struct TrainOptions {
  StoreOptions store;
  std::string questions, corpus, out = "ruvllm-attention.json";
  std::string mode = "bm25";
  std::size_t seeds = 10;
  double holdout = 0;
  attention::TrainParams train;
  attention::AttentionShape shape;
};

std::vector<pipeline::LabelledQuestion> read_questions(const std::string& path) {
  std::vector<pipeline::LabelledQuestion> out;
  for (auto& [id, q] : read_labelled_questions(path)) out.push_back(std::move(q));
  return out;
}

void train(const TrainOptions& o) {
  if (!(o.holdout >= 0 && o.holdout < 1)) throw std::runtime_error("--holdout must be in [0, 1)");
  auto memory = open_memory(o.store, o.corpus.empty() ? Access::read : Access::create);
  if (!o.corpus.empty()) {
    memory::IngestParams ip;
    ProgressBar bar;
    ip.progress = [&bar](std::size_t done, std::size_t total) {
      if (total > 0) bar(static_cast<double>(done) / static_cast<double>(total));
    };
    const auto report = memory::ingest(*memory, {o.corpus}, ip);
    std::printf("ingest: %zu documents (%zu already there), %zu chunks\n", report.documents, report.skipped,
                report.chunks);
  }
  const auto questions = read_questions(o.questions);
  pipeline::RetrieveParams rp;
  rp.seeds = o.seeds;
  if (o.mode == "bm25") {
    rp.mode = memory::SearchMode::lexical;
  } else if (o.mode != "hybrid") {
    throw std::runtime_error("--mode must be bm25 or hybrid");
  }
  std::vector<pipeline::LabelledRetrieval> data;
  {
    ProgressBar bar;
    for (const auto& q : questions) {
      data.push_back(pipeline::retrieve_labelled(*memory, q, rp));
      bar(static_cast<double>(data.size()) / static_cast<double>(questions.size()));
    }
  }
  // A fixed shuffle splits off the held-out share, so that a rerun scores the same questions.
  std::vector<std::size_t> order(questions.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(o.train.seed);
  common::shuffle(order, rng);  // std::shuffle differs between standard libraries
  const auto held = static_cast<std::size_t>(o.holdout * static_cast<double>(questions.size()));
  std::vector<attention::Example> examples;
  for (std::size_t i = held; i < order.size(); ++i)
    examples.push_back({data[order[i]].retrieved.graph, data[order[i]].gold_nodes});
  const std::size_t dimension = memory->embedder() ? memory->embedder()->dimension() : 0;
  auto model = std::make_shared<attention::AttentionModel>(dimension, o.shape, o.train.seed);
  const auto t0 = std::chrono::steady_clock::now();
  auto params = o.train;
  params.progress = [&](int epoch, double loss) {
    if (epoch % 25 == 0) std::fprintf(stderr, "epoch %d: loss %.4f\n", epoch, loss);
  };
  const auto report = model->train(examples, params);
  std::printf(
      "trained on %zu questions (%zu without a gold node in their subgraph, skipped) in %.1f s, %zu "
      "parameters: loss %.4f -> %.4f\n",
      report.examples, report.skipped, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
      model->parameter_count(), report.initial_loss, report.final_loss);
  model->save(o.out);
  std::printf("wrote %s\n", o.out.c_str());
  if (held == 0) return;
  const auto scorers = {std::shared_ptr<const attention::Scorer>(attention::retrieval_order()),
                        std::shared_ptr<const attention::Scorer>(attention::personalized_pagerank()),
                        std::shared_ptr<const attention::Scorer>(attention::graph_attention(model))};
  std::printf("held out: %zu questions\n| scorer | R@2 | R@5 | R@10 |\n|---|---|---|---|\n", held);
  for (const auto& scorer : scorers) {
    double r2 = 0, r5 = 0, r10 = 0;
    for (std::size_t i = 0; i < held; ++i) {
      const auto& d = data[order[i]];
      const auto s = scorer->score(d.retrieved.graph).score;
      const auto& gold = questions[order[i]].gold_sources;
      r2 += pipeline::source_recall(d, gold, s, 2);
      r5 += pipeline::source_recall(d, gold, s, 5);
      r10 += pipeline::source_recall(d, gold, s, 10);
    }
    const double n = static_cast<double>(held);
    std::printf("| %s | %.3f | %.3f | %.3f |\n", scorer->name().c_str(), r2 / n, r5 / n, r10 / n);
  }
}

}  // namespace

void add_attention_commands(CLI::App& app) {
  auto* attention = app.add_subcommand("attention", "The graph-attention scorer of the retrieval stage");
  attention->require_subcommand(1);
  auto o = std::make_shared<TrainOptions>();
  auto* cmd = attention->add_subcommand(
      "train", "Learn attention from questions with gold passages (JSONL: question, supporting ids)");
  add_store_options(cmd, o->store);
  cmd->add_option("--questions", o->questions, "Questions JSONL ({\"question\", \"supporting\": [ids]})")->required();
  cmd->add_option("--corpus", o->corpus, "Corpus to ingest first (.jsonl/.md/.txt; idempotent)");
  cmd->add_option("--out", o->out, "Model file to write")->capture_default_str();
  cmd->add_option("--mode", o->mode, "Seed search: bm25 or hybrid")->capture_default_str();
  cmd->add_option("--seeds", o->seeds, "Search results that seed the 2-hop expansion")->capture_default_str();
  cmd->add_option("--holdout", o->holdout, "Share of questions held out and scored, not trained on")
      ->capture_default_str();
  cmd->add_option("--epochs", o->train.epochs, "Adam epochs (full batch)")->capture_default_str();
  cmd->add_option("--learning-rate", o->train.learning_rate, "Adam step size")->capture_default_str();
  cmd->add_option("--l2", o->train.l2, "Pull towards the untrained (retrieval-order) model")->capture_default_str();
  cmd->add_option("--seed", o->train.seed, "Initial weights and the hold-out split")->capture_default_str();
  cmd->add_option("--hidden", o->shape.hidden, "Hidden width")->capture_default_str();
  cmd->add_option("--heads", o->shape.heads, "Attention heads (0 = no messages, the ablation)")->capture_default_str();
  cmd->callback([o] { train(*o); });
}

}  // namespace ruvllm::cli
