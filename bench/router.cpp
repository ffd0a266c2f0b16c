// `ruvllm bench router`: how long one routing decision takes on one core (Google Benchmark), for
// the float and the int8 network, feature extraction, and the whole path from query text; the
// logistic baseline's linear decision on the same features is the floor measured beside them.
#include <benchmark/benchmark.h>
#include <sched.h>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "bench/bench.h"
#include "common/report.h"
#include "ruvllm/embed.h"
#include "ruvllm/pipeline.h"
#include "ruvllm/router.h"

namespace ruvllm::bench {
namespace {

struct RouterBenchOptions {
  std::string model, data, split = "test", out = "build/bench/router", words, evidence;
  std::size_t queries = 256;
  double min_time = 0.5;
};

class Collector : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.run_type == Run::RT_Iteration)
        rows.push_back({r.benchmark_name(), r.GetAdjustedRealTime(), r.GetAdjustedCPUTime(), r.iterations});
    }
  }
  struct Row {
    std::string name;
    double real_ns, cpu_ns;
    int64_t iterations;
  };
  std::vector<Row> rows;
};

void run(const RouterBenchOptions& o) {
  cpu_set_t one;  // one core, as the target says
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  const bool pinned = sched_setaffinity(0, sizeof one, &one) == 0;
  embed::WordVectorParams wp;
  wp.path = o.words;
  const auto embedder = embed::open_word_vectors(wp);
  auto as_float = std::make_shared<router::Router>(router::Router::load(o.model));
  as_float->quantize(false);
  auto as_int8 = std::make_shared<router::Router>(*as_float);
  as_int8->quantize(true);
  auto outcomes = router::load_outcomes(o.data + "/" + o.split + ".jsonl", as_float->ladder());
  if (outcomes.size() > o.queries) outcomes.resize(o.queries);
  std::vector<router::Signals> signals;
  std::vector<router::FeatureVector> features;
  for (auto& out : outcomes) {
    auto s = out.signals;
    s.query = pipeline::query_signals(*embedder, s.query.text);
    features.push_back(as_float->features(s));
    signals.push_back(std::move(s));
  }
  const std::size_t n = features.size();
  // Requests with retrieval signals (evidence rows): the context heads read them, and a router
  // with a model view runs the cell a second time for the model head.
  std::vector<router::FeatureVector> with_retrieval;
  if (!o.evidence.empty()) {
    for (auto& out : router::load_outcomes(o.evidence, as_float->ladder())) {
      auto s = out.signals;
      s.query = pipeline::query_signals(*embedder, s.query.text);
      with_retrieval.push_back(as_float->features(s));
      if (with_retrieval.size() == o.queries) break;
    }
    const std::size_t m = with_retrieval.size();
    benchmark::RegisterBenchmark("decide with retrieval signals, float32", [&, m](benchmark::State& st) {
      std::size_t i = 0;
      for (auto _ : st) benchmark::DoNotOptimize(as_float->decide(with_retrieval[i++ % m]));
    });
    benchmark::RegisterBenchmark("decide with retrieval signals, int8 (fused)", [&, m](benchmark::State& st) {
      std::size_t i = 0;
      for (auto _ : st) benchmark::DoNotOptimize(as_int8->decide(with_retrieval[i++ % m]));
    });
  }
  benchmark::RegisterBenchmark("decide, float32", [&](benchmark::State& st) {
    std::size_t i = 0;
    for (auto _ : st) benchmark::DoNotOptimize(as_float->decide(features[i++ % n]));
  });
  benchmark::RegisterBenchmark("decide, int8 (fused)", [&](benchmark::State& st) {
    std::size_t i = 0;
    for (auto _ : st) benchmark::DoNotOptimize(as_int8->decide(features[i++ % n]));
  });
  benchmark::RegisterBenchmark("features: signals -> 128 floats", [&](benchmark::State& st) {
    std::size_t i = 0;
    for (auto _ : st) benchmark::DoNotOptimize(as_int8->features(signals[i++ % n]));
  });
  benchmark::RegisterBenchmark("query text -> embed -> features -> decide", [&](benchmark::State& st) {
    std::size_t i = 0;
    for (auto _ : st) {
      router::Signals s;
      s.query = pipeline::query_signals(*embedder, signals[i++ % n].query.text);
      benchmark::DoNotOptimize(as_int8->decide(s));
    }
  });
  // The floor: a linear decision (the logistic baseline's shape) on the same features.
  std::vector<float> w(2 * (router::kFeatures + 1), 0.01f);
  benchmark::RegisterBenchmark("reference: linear decision (logistic baseline)", [&](benchmark::State& st) {
    std::size_t i = 0;
    for (auto _ : st) {
      const auto& x = features[i++ % n];
      float a = w[router::kFeatures], b = w[2 * router::kFeatures + 1];
      for (std::size_t f = 0; f < router::kFeatures; ++f) a += w[f] * x[f], b += w[router::kFeatures + 1 + f] * x[f];
      benchmark::DoNotOptimize(a > b);
    }
  });
  std::string min_time = "--benchmark_min_time=" + std::to_string(o.min_time);
  std::vector<char*> argv = {const_cast<char*>("ruvllm-bench-router"), min_time.data()};
  int argc = static_cast<int>(argv.size());
  benchmark::Initialize(&argc, argv.data());
  Collector collector;
  benchmark::RunSpecifiedBenchmarks(&collector);
  benchmark::ClearRegisteredBenchmarks();

  nlohmann::json json;
  json["machine"] = machine_info();
  json["model_file"] = o.model;
  json["data"] = o.data;
  json["queries"] = n;
  json["pinned_to_one_core"] = pinned;
  json["weight_bytes"] = {{"int8", as_int8->weight_bytes()}, {"float32", as_float->weight_bytes()}};
  std::string md = "Router decision latency, one core" + std::string(pinned ? "" : " (pinning failed)") + ", " +
                   std::to_string(n) + " queries of " + o.data + " cycled (Google Benchmark " +
                   std::to_string(o.min_time) + " s per row)\n\n| step | ns / call | µs |\n|---|---|---|\n";
  for (const auto& r : collector.rows) {
    json["rows"].push_back(
        {{"name", r.name}, {"real_ns", r.real_ns}, {"cpu_ns", r.cpu_ns}, {"iterations", r.iterations}});
    char line[256];
    std::snprintf(line, sizeof line, "| %s | %.0f | %.2f |\n", r.name.c_str(), r.real_ns, r.real_ns / 1000);
    md += line;
  }
  md += "\nNetwork weights: " + std::to_string(as_int8->weight_bytes()) + " bytes int8, " +
        std::to_string(as_float->weight_bytes()) + " bytes float32.\n";
  write_report(o.out, "router-latency", json, md);
}

}  // namespace

void add_bench_router(CLI::App& bench) {
  auto o = std::make_shared<RouterBenchOptions>();
  auto* cmd = bench.add_subcommand("router", "Routing decision latency on one core (Google Benchmark)");
  cmd->add_option("--model", o->model, "Router file (ruvllm router train)")->required();
  cmd->add_option("--data", o->data, "Outcome set whose queries are routed")->required();
  cmd->add_option("--split", o->split, "Outcome file")->capture_default_str();
  cmd->add_option("--queries", o->queries, "Queries cycled through")->capture_default_str();
  cmd->add_option("--min-time", o->min_time, "Seconds per benchmark row")->capture_default_str();
  cmd->add_option("--words", o->words, "Word-vector table (default: the GloVe table)");
  cmd->add_option("--evidence", o->evidence,
                  "Evidence rows (router evidence): also time decisions with retrieval signals");
  cmd->add_option("--out", o->out, "Folder for the JSON and markdown report")->capture_default_str();
  cmd->callback([o] { run(*o); });
}

}  // namespace ruvllm::bench
