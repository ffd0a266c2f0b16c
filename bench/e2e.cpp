// `ruvllm bench e2e`: the whole pipeline, routed vs the naive baseline (always models.default,
// plain dense top-k, no router, no graph), on the same queries in the same run: end-to-end and
// per-stage percentiles, the non-LLM share, sequential vs concurrent clients, and batched vs
// one-at-a-time throughput on the smallest model.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "bench/bench.h"
#include "common/report.h"
#include "ruvllm/config.h"
#include "ruvllm/llm.h"
#include "ruvllm/pipeline.h"

namespace ruvllm::bench {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct E2eOptions {
  std::string config, queries, out = "build/bench/e2e";
  std::size_t limit = 40, concurrency = 4, warmup = 2;
  int max_tokens = 32;
  int decode_tokens = 128;
  std::size_t decode_requests = 16;  // the decode-bound batching run: requests submitted together
  bool stages_only = false;          // no generation: the non-LLM stages over many queries, quickly
  // With --stages-only: the smallest model writes this many tokens (a fixed prompt, no retrieval)
  // before each measured request, so the stages run as they do between generations: on caches the
  // model's weights have just swept. 0 = back to back.
  int generate_between = 0;
};

std::vector<std::string> read_queries(const std::string& path, std::size_t limit) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::vector<std::string> out;
  std::string line;
  while (out.size() < limit && std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.front() == '{') {
      const json row = json::parse(line, nullptr, false);
      for (const char* key : {"query", "question", "text"})
        if (row.is_object() && row.contains(key) && row[key].is_string()) {
          out.push_back(row[key].get<std::string>());
          break;
        }
    } else {
      out.push_back(line);
    }
  }
  if (out.empty()) throw std::runtime_error(path + ": no queries (JSON Lines with query/question/text, or lines)");
  return out;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(pos);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

struct Run {
  std::vector<pipeline::Response> responses;
  double wall_s = 0;
};

pipeline::Request request(const std::string& q, pipeline::Flow flow, const std::string& model, int max_tokens,
                          bool generate = true) {
  pipeline::Request r;
  r.generate = generate;
  r.query = q;
  r.flow = flow;
  r.model = model;
  r.max_tokens = max_tokens;
  r.seed = 1;
  r.use_cache = false;  // every query is answered, not replayed
  r.ignore_eos = true;  // both flows write exactly max_tokens: generated weights stop at random
  return r;
}

Run run_concurrent(pipeline::Pipeline& p, const std::vector<std::string>& queries, pipeline::Flow flow,
                   const std::string& model, int max_tokens, std::size_t clients) {
  Run run;
  run.responses.resize(queries.size());
  std::atomic<std::size_t> next{0};
  const auto t0 = Clock::now();
  std::vector<std::jthread> threads;
  for (std::size_t c = 0; c < clients; ++c)
    threads.emplace_back([&] {
      for (std::size_t i; (i = next++) < queries.size();)
        run.responses[i] = p.run(request(queries[i], flow, model, max_tokens));
    });
  threads.clear();
  run.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  return run;
}

json stage_table(const std::vector<pipeline::Response>& rs) {
  std::map<std::string, std::vector<double>> s;
  for (const auto& r : rs) {
    const auto& t = r.times;
    auto add = [&](const char* k, int64_t us) { s[k].push_back(static_cast<double>(us) / 1000.0); };
    add("total", t.total);
    add("non_llm", t.non_llm());
    add("embed", t.embed);
    add("search", t.search);
    add("expand", t.expand);
    add("attend", t.attend);
    add("route", t.route);
    add("context", t.context);
    add("llm", t.llm);
    add("ttft", t.ttft);
  }
  json out;
  for (auto& [k, v] : s) out[k] = {{"p50", quantile(v, 0.5)}, {"p90", quantile(v, 0.9)}, {"p99", quantile(v, 0.99)}};
  return out;
}

// What the router chose: models, retrieval strategies, the context budget and blocks kept.
json route_mix(const std::vector<pipeline::Response>& rs) {
  std::map<std::string, int> models, retrieval;
  double budget = 0, blocks = 0;
  for (const auto& r : rs) {
    ++models[r.model];
    ++retrieval[std::string(router::to_string(r.decision.retrieval))];
    budget += r.decision.retrieval == router::Retrieval::none ? 0 : r.decision.context_tokens;
    blocks += static_cast<double>(r.context.size());
  }
  const double n = std::max<double>(1, static_cast<double>(rs.size()));
  return {{"models", models},
          {"retrieval", retrieval},
          {"mean_context_budget", budget / n},
          {"mean_context_blocks", blocks / n}};
}

std::string describe_mix(const json& mix) {
  std::string out;
  for (const char* key : {"models", "retrieval"})
    for (const auto& [k, v] : mix[key].items())
      out += (out.empty() ? "" : ", ") + k + " " + std::to_string(v.get<int>());
  char buf[128];
  std::snprintf(buf, sizeof buf, "; context budget %.0f tokens, %.1f blocks on average",
                mix["mean_context_budget"].get<double>(), mix["mean_context_blocks"].get<double>());
  return out + buf;
}

json flow_summary(const Run& run) {
  json j;
  j["stages_ms"] = stage_table(run.responses);
  std::map<std::string, int> models;
  double prompt = 0, completion = 0, context_blocks = 0;
  for (const auto& r : run.responses) {
    ++models[r.model];
    prompt += r.prompt_tokens;
    completion += r.completion_tokens;
    context_blocks += static_cast<double>(r.context.size());
  }
  const double n = static_cast<double>(run.responses.size());
  j["models"] = models;
  j["route_mix"] = route_mix(run.responses);
  j["mean_prompt_tokens"] = prompt / n;
  j["mean_completion_tokens"] = completion / n;
  j["mean_context_blocks"] = context_blocks / n;
  j["wall_s"] = run.wall_s;
  j["queries_per_s"] = n / run.wall_s;
  j["completion_tokens_per_s"] = completion / run.wall_s;
  return j;
}

void run_e2e(const E2eOptions& o) {
  pipeline::Config config = config::load(o.config);
  config.request_log = "off";
  if (config.router_file.empty())
    std::fprintf(stderr, "note: router.file is empty: the routed flow sends everything to %s\n",
                 config.default_model.c_str());
  config.parallel = std::max({config.parallel, static_cast<int>(o.concurrency), static_cast<int>(o.decode_requests)});
  pipeline::Pipeline p(config);
  const auto queries = read_queries(o.queries, o.limit);
  const std::string smallest = config.models.front().name;
  if (o.stages_only) {
    for (std::size_t i = 0; i < std::min(o.warmup, queries.size()); ++i) {
      p.run(request(queries[i], pipeline::Flow::naive, "auto", 0, false));
      p.run(request(queries[i], pipeline::Flow::routed, "auto", 0, false));
    }
    json j;
    j["machine"] = machine_info();
    j["inputs"] = {{"config", o.config},
                   {"queries", o.queries},
                   {"n", queries.size()},
                   {"stages_only", true},
                   {"generate_between", o.generate_between},
                   {"generate_between_model", smallest}};
    std::ostringstream md;
    md << "Non-LLM stages only (no generation";
    if (o.generate_between > 0)
      md << " for the measured requests; " << smallest << " writes " << o.generate_between << " tokens before each";
    md << "), " << queries.size() << " queries, P50 / P90 / P99 ms:\n\n"
       << "| stage | naive | routed |\n|---|---|---|\n";
    if (o.generate_between > 0) p.engine().load(smallest);
    auto sweep_caches = [&](std::size_t i) {
      if (o.generate_between <= 0) return;
      llm::GenerateRequest g;
      g.prompt = "Note " + std::to_string(i) + ": a compiler translates a program into machine code.";
      g.max_tokens = o.generate_between;
      g.ignore_eos = true;
      g.sampling.seed = static_cast<uint32_t>(i + 1);
      p.engine().generate(smallest, std::move(g));
    };
    Run runs[2];
    for (int f = 0; f < 2; ++f)
      for (std::size_t i = 0; i < queries.size(); ++i) {
        sweep_caches(i);
        runs[f].responses.push_back(
            p.run(request(queries[i], f ? pipeline::Flow::routed : pipeline::Flow::naive, "auto", 0, false)));
      }
    const json tables[2] = {stage_table(runs[0].responses), stage_table(runs[1].responses)};
    j["naive"] = tables[0];
    j["routed"] = tables[1];
    for (const char* stage : {"embed", "search", "expand", "attend", "route", "context", "total"}) {
      char buf[256];
      auto cell = [&](const json& t) {
        std::snprintf(buf, sizeof buf, "%.3f / %.3f / %.3f", t[stage]["p50"].get<double>(),
                      t[stage]["p90"].get<double>(), t[stage]["p99"].get<double>());
        return std::string(buf);
      };
      md << "| " << stage << " | " << cell(tables[0]) << " | " << cell(tables[1]) << " |\n";
    }
    j["route_mix"] = {{"naive", route_mix(runs[0].responses)}, {"routed", route_mix(runs[1].responses)}};
    md << "\nRoutes: naive " << describe_mix(j["route_mix"]["naive"]) << ".\nRouted "
       << describe_mix(j["route_mix"]["routed"]) << ".\n";
    write_report(o.out, "e2e-stages", j, md.str());
    return;
  }
  std::fprintf(stderr, "bench e2e: %zu queries, %d completion tokens each, %zu concurrent clients\n", queries.size(),
               o.max_tokens, o.concurrency);

  // Warm-up: load every model and touch the store, outside the measurements.
  for (const auto& m : config.models) p.engine().load(m.name);
  for (std::size_t i = 0; i < std::min(o.warmup, queries.size()); ++i) {
    p.run(request(queries[i], pipeline::Flow::naive, "auto", 4));
    p.run(request(queries[i], pipeline::Flow::routed, "auto", 4));
  }

  // Sequential, interleaved (naive, routed / routed, naive alternately) so drift hits both alike.
  Run naive, routed;
  auto t_naive = 0.0, t_routed = 0.0;
  for (std::size_t i = 0; i < queries.size(); ++i) {
    for (int k = 0; k < 2; ++k) {
      const bool do_naive = (i + static_cast<std::size_t>(k)) % 2 == 0;
      const auto t0 = Clock::now();
      auto r =
          p.run(request(queries[i], do_naive ? pipeline::Flow::naive : pipeline::Flow::routed, "auto", o.max_tokens));
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      (do_naive ? naive : routed).responses.push_back(std::move(r));
      (do_naive ? t_naive : t_routed) += s;
    }
    std::fprintf(stderr, "\r  sequential %zu/%zu", i + 1, queries.size());
  }
  std::fprintf(stderr, "\n");
  naive.wall_s = t_naive;
  routed.wall_s = t_routed;

  std::fprintf(stderr, "  %zu concurrent clients: naive, routed\n", o.concurrency);
  const Run naive_c = run_concurrent(p, queries, pipeline::Flow::naive, "auto", o.max_tokens, o.concurrency);
  const Run routed_c = run_concurrent(p, queries, pipeline::Flow::routed, "auto", o.max_tokens, o.concurrency);
  std::fprintf(stderr, "  batching on %s: one at a time, then %zu at once\n", smallest.c_str(), o.concurrency);
  const Run small_seq = run_concurrent(p, queries, pipeline::Flow::routed, smallest, o.max_tokens, 1);
  const Run small_batch = run_concurrent(p, queries, pipeline::Flow::routed, smallest, o.max_tokens, o.concurrency);

  // The engine's continuous batching where it pays: decode-bound requests (a short prompt, many
  // completion tokens) to the smallest model, one at a time vs all submitted together.
  std::fprintf(stderr, "  decode-bound batching on %s: %zu requests of %d tokens\n", smallest.c_str(),
               o.decode_requests, o.decode_tokens);
  auto decode_request = [&](std::size_t i) {
    llm::GenerateRequest g;
    g.prompt = "Question " + std::to_string(i) + ": explain what a compiler does.";
    g.max_tokens = o.decode_tokens;
    g.ignore_eos = true;
    g.sampling.seed = static_cast<uint32_t>(i + 1);
    return g;
  };
  double decode_seq_s = 0, decode_batch_s = 0;
  int decode_tokens = 0;
  {
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < o.decode_requests; ++i)
      decode_tokens += p.engine().generate(smallest, decode_request(i)).completion_tokens;
    decode_seq_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const auto t1 = Clock::now();
    std::vector<std::future<llm::GenerateResult>> futures;
    for (std::size_t i = 0; i < o.decode_requests; ++i)
      futures.push_back(p.engine().submit(smallest, decode_request(i)));
    for (auto& f : futures) f.get();
    decode_batch_s = std::chrono::duration<double>(Clock::now() - t1).count();
  }

  json j;
  j["decode_batching"] = {{"model", smallest},
                          {"requests", o.decode_requests},
                          {"completion_tokens", decode_tokens},
                          {"one_at_a_time_tokens_per_s", decode_tokens / decode_seq_s},
                          {"batched_tokens_per_s", decode_tokens / decode_batch_s},
                          {"speedup", decode_seq_s / decode_batch_s}};
  j["machine"] = machine_info();
  j["inputs"] = {{"config", o.config},          {"queries", o.queries},         {"n", queries.size()},
                 {"max_tokens", o.max_tokens},  {"concurrency", o.concurrency}, {"default_model", config.default_model},
                 {"router", config.router_file}};
  j["sequential"] = {{"naive", flow_summary(naive)}, {"routed", flow_summary(routed)}};
  j["concurrent"] = {{"naive", flow_summary(naive_c)}, {"routed", flow_summary(routed_c)}};
  j["batching"] = {
      {"model", smallest}, {"one_at_a_time", flow_summary(small_seq)}, {"batched", flow_summary(small_batch)}};
  auto p50 = [&](const json& f, const char* stage) { return f["stages_ms"][stage]["p50"].get<double>(); };
  const json& sn = j["sequential"]["naive"];
  const json& sr = j["sequential"]["routed"];
  j["speedup"] = {{"sequential_p50", p50(sn, "total") / p50(sr, "total")},
                  {"sequential_mean", naive.wall_s / routed.wall_s},
                  {"concurrent_throughput", j["concurrent"]["routed"]["queries_per_s"].get<double>() /
                                                j["concurrent"]["naive"]["queries_per_s"].get<double>()},
                  {"batching_throughput", small_seq.wall_s / small_batch.wall_s}};

  std::ostringstream md;
  char buf[512];
  md << "| flow | clients | P50 ms | P90 ms | P99 ms | non-LLM P50 ms | non-LLM share | TTFT P50 ms | prompt tok | "
        "queries/s | models |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
  auto row = [&](const char* name, std::size_t clients, const json& f) {
    const auto& st = f["stages_ms"];
    std::string models;
    for (const auto& [m, n] : f["models"].items())
      models += (models.empty() ? "" : ", ") + m + " " + std::to_string(n.get<int>());
    std::snprintf(buf, sizeof buf, "| %s | %zu | %.1f | %.1f | %.1f | %.2f | %.1f %% | %.1f | %.0f | %.2f | %s |\n",
                  name, clients, st["total"]["p50"].get<double>(), st["total"]["p90"].get<double>(),
                  st["total"]["p99"].get<double>(), st["non_llm"]["p50"].get<double>(),
                  100.0 * st["non_llm"]["p50"].get<double>() / st["total"]["p50"].get<double>(),
                  st["ttft"]["p50"].get<double>(), f["mean_prompt_tokens"].get<double>(),
                  f["queries_per_s"].get<double>(), models.c_str());
    md << buf;
  };
  row("naive", 1, sn);
  row("routed", 1, sr);
  row("naive", o.concurrency, j["concurrent"]["naive"]);
  row("routed", o.concurrency, j["concurrent"]["routed"]);
  md << "\nRoutes (sequential): naive " << describe_mix(sn["route_mix"]) << ".\nRouted "
     << describe_mix(sr["route_mix"]) << ".\n";
  md << "\nPer stage, sequential, P50 / P90 / P99 ms:\n\n| stage | naive | routed |\n|---|---|---|\n";
  for (const char* stage : {"embed", "search", "expand", "attend", "route", "context", "llm", "non_llm"}) {
    auto cell = [&](const json& f) {
      const auto& s = f["stages_ms"][stage];
      std::snprintf(buf, sizeof buf, "%.3f / %.3f / %.3f", s["p50"].get<double>(), s["p90"].get<double>(),
                    s["p99"].get<double>());
      return std::string(buf);
    };
    md << "| " << stage << " | " << cell(sn) << " | " << cell(sr) << " |\n";
  }
  std::snprintf(buf, sizeof buf,
                "\nSpeed-up routed vs naive: P50 %.2fx, total time %.2fx (sequential); throughput %.2fx with %zu "
                "clients.\nBatching on %s: %.2f queries/s one at a time, %.2f with %zu at once (%.2fx).\n",
                j["speedup"]["sequential_p50"].get<double>(), j["speedup"]["sequential_mean"].get<double>(),
                j["speedup"]["concurrent_throughput"].get<double>(), o.concurrency, smallest.c_str(),
                j["batching"]["one_at_a_time"]["queries_per_s"].get<double>(),
                j["batching"]["batched"]["queries_per_s"].get<double>(), o.concurrency,
                j["speedup"]["batching_throughput"].get<double>());
  md << buf;
  std::snprintf(buf, sizeof buf,
                "Decode-bound batching on %s (%zu requests x %d tokens, short prompt): %.1f tokens/s one at a "
                "time, %.1f batched (%.2fx).\n",
                smallest.c_str(), o.decode_requests, o.decode_tokens,
                j["decode_batching"]["one_at_a_time_tokens_per_s"].get<double>(),
                j["decode_batching"]["batched_tokens_per_s"].get<double>(),
                j["decode_batching"]["speedup"].get<double>());
  md << buf;
  write_report(o.out, "e2e", j, md.str());
}

}  // namespace

void add_bench_e2e(CLI::App& bench) {
  auto o = std::make_shared<E2eOptions>();
  auto* cmd = bench.add_subcommand("e2e", "the pipeline end to end: routed vs naive, per stage, concurrency, batching");
  cmd->add_option("-c,--config", o->config, "pipeline configuration (TOML)")->required();
  cmd->add_option("--queries", o->queries, "JSON Lines (query/question/text) or one query per line")->required();
  cmd->add_option("--limit", o->limit, "queries used");
  cmd->add_option("--max-tokens", o->max_tokens, "completion tokens per query (both flows)");
  cmd->add_option("--concurrency", o->concurrency, "concurrent clients");
  cmd->add_option("--decode-tokens", o->decode_tokens, "completion tokens of the decode-bound batching run");
  cmd->add_option("--decode-requests", o->decode_requests, "requests submitted together in that run");
  cmd->add_option("--warmup", o->warmup, "queries run before measuring");
  cmd->add_option("--out", o->out, "output folder");
  cmd->add_flag("--stages-only", o->stages_only, "no generation: time the non-LLM stages of both flows");
  cmd->add_option("--generate-between", o->generate_between,
                  "with --stages-only: tokens the smallest model writes before each measured request (0 = none)")
      ->check(CLI::NonNegativeNumber);
  cmd->callback([o] { run_e2e(*o); });
}

}  // namespace ruvllm::bench
