// `ruvllm bench models`: our engine against llama.cpp driven directly, on the same files, threads
// and machine, in the same run.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include "bench.h"
#include "reference.h"
#include "common/report.h"
#include "ruvllm/llm.h"

namespace ruvllm::bench {
namespace {

struct ModelsOptions {
  std::vector<std::string> models;
  int threads = 0, reps = 5, prompt = 512, generate = 64, prefix = 2048;
  std::string load = "read";  // read | mmap
  std::string llama_bench;    // path to llama.cpp's llama-bench binary (optional)
  std::string out = "build/bench";
  bool no_reference = false;
};

std::vector<int32_t> random_tokens(std::size_t n, int32_t n_vocab, std::mt19937& rng) {
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(n_vocab));
  return t;
}

double seconds(int64_t micros) { return static_cast<double>(micros) / 1e6; }

nlohmann::json bench_one(const std::string& path, const ModelsOptions& o, int threads) {
  const auto info = llm::inspect_model(path);
  const std::string name = std::filesystem::path(path).stem().string();
  const bool mmap = o.load == "mmap";
  std::fprintf(stderr, "== %s (%s, %llu params%s)\n", name.c_str(), info.file_type.c_str(),
               static_cast<unsigned long long>(info.n_params), info.generated_weights ? ", generated weights" : "");
  nlohmann::json row = {{"file", path},
                        {"name", name},
                        {"type", info.file_type},
                        {"parameters", info.n_params},
                        {"file_bytes", info.file_bytes},
                        {"generated_weights", info.generated_weights},
                        {"load", o.load}};

  // Phase A: our engine alone, for peak RSS and the request-level figures.
  const bool rss_reset = reset_peak_rss();
  llm::EngineParams params;
  params.ladder = {{name, path, "", 1.0, 0}};
  params.load_mode = mmap ? llm::LoadMode::mmap : llm::LoadMode::read;
  params.threads = threads;
  params.parallel = 1;
  params.context = std::max(4096, o.prefix + 128);
  params.batch = 512;
  llm::Engine engine(params);
  const auto load_start = std::chrono::steady_clock::now();
  engine.load(name);
  row["load_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  std::mt19937 rng(1234);
  const int32_t n_vocab = info.n_vocab;

  const auto run = [&](std::vector<int32_t> prompt, int max_tokens, std::size_t cache_prefix = 0) {
    llm::GenerateRequest r;
    r.prompt_tokens = std::move(prompt);
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    r.sampling.temperature = 0;
    r.cache_prefix = cache_prefix;
    return engine.generate(name, std::move(r));
  };
  run(random_tokens(64, n_vocab, rng), 8);  // warm-up

  std::vector<double> ttft, e2e, prefix_cold, prefix_hit;
  for (int i = 0; i < o.reps; ++i) {
    ttft.push_back(run(random_tokens(300, n_vocab, rng), 1).timings.first_token / 1000.0);
    e2e.push_back(run(random_tokens(300, n_vocab, rng), 32).timings.total / 1000.0);
  }
  // Peak RSS of the loaded model, its context and a few requests, before the prefix-cache test
  // adds saved states (their size is reported on its own below).
  row["peak_rss_bytes"] = rss_reset ? peak_rss_bytes() : 0;
  const bool prefix_fits = info.n_ctx_train == 0 || o.prefix + 64 <= info.n_ctx_train;
  if (prefix_fits) {
    for (int i = 0; i < o.reps; ++i) {
      auto prefix = random_tokens(static_cast<std::size_t>(o.prefix), n_vocab, rng);
      auto with_suffix = [&](const std::vector<int32_t>& p) {
        auto t = p;
        const auto s = random_tokens(16, n_vocab, rng);
        t.insert(t.end(), s.begin(), s.end());
        return t;
      };
      const auto cold = run(with_suffix(prefix), 1, prefix.size());
      const auto hit = run(with_suffix(prefix), 1, prefix.size());
      if (hit.cached_tokens != o.prefix) {
        throw std::runtime_error("prefix cache did not hit: restored " + std::to_string(hit.cached_tokens) + " of " +
                                 std::to_string(o.prefix) + " tokens");
      }
      prefix_cold.push_back(cold.timings.first_token / 1000.0);
      prefix_hit.push_back(hit.timings.first_token / 1000.0);
    }
  }
  row["ttft_300_ms"] = to_json(summarize(ttft));
  row["e2e_300_32_ms"] = to_json(summarize(e2e));
  if (prefix_fits) {
    const auto cold = summarize(prefix_cold), hit = summarize(prefix_hit);
    row["prefix_tokens"] = o.prefix;
    row["prefix_cold_ttft_ms"] = to_json(cold);
    row["prefix_hit_ttft_ms"] = to_json(hit);
    row["prefix_speedup"] = cold.mean / hit.mean;
  }
  const auto cache = engine.cache_stats(name);
  row["prefix_cache_entries"] = cache.entries;
  row["prefix_cache_bytes"] = cache.bytes;
  row["peak_rss_with_prefix_cache_bytes"] = rss_reset ? peak_rss_bytes() : 0;

  // Phase B: prefill and decode throughput, ours and the reference interleaved rep by rep so that
  // drift of a noisy machine hits both alike. The reference drives the same loaded weights through
  // a context of its own: on this VM two copies of one model in memory differ by up to ~9 % in
  // decode speed depending on where they sit, which would swamp a comparison of the loops.
  std::unique_ptr<RawLlama> reference;
  if (!o.no_reference) reference = std::make_unique<RawLlama>(engine.native_model(name), threads, 4096, 512);
  std::vector<double> pp_ours, tg_ours, pp_ref, tg_ref;
  // Warm-up: this machine's first passes run ~20 % slow (clocks, caches); measure steady state.
  for (int i = 0; i < 2; ++i) {
    run(random_tokens(static_cast<std::size_t>(o.prompt), n_vocab, rng), 0);
    run(random_tokens(1, n_vocab, rng), o.generate + 1);
    if (reference) {
      reference->prompt_seconds(o.prompt, 99);
      reference->generate_seconds(o.generate, 99);
    }
  }
  // Each repetition measures ours and the reference back to back, in alternating order; the
  // ratio is the median of the per-pair ratios, which cancels the machine's slow drift.
  std::vector<double> pp_pair, tg_pair;
  for (int i = 0; i < o.reps; ++i) {
    const auto ours = [&] {
      const auto pp = run(random_tokens(static_cast<std::size_t>(o.prompt), n_vocab, rng), 0);
      pp_ours.push_back(o.prompt / seconds(pp.timings.prefill));
      // One start token, then `generate` decode steps: the interval after the first sampled token.
      const auto tg = run(random_tokens(1, n_vocab, rng), o.generate + 1);
      tg_ours.push_back(o.generate / seconds(tg.timings.decode));
    };
    const auto theirs = [&] {
      if (!reference) return;
      pp_ref.push_back(o.prompt / reference->prompt_seconds(o.prompt, 100 + static_cast<uint32_t>(i)));
      tg_ref.push_back(o.generate / reference->generate_seconds(o.generate, 200 + static_cast<uint32_t>(i)));
    };
    if (i % 2 == 0) {
      ours();
      theirs();
    } else {
      theirs();
      ours();
    }
    if (reference) {
      pp_pair.push_back(pp_ours.back() / pp_ref.back());
      tg_pair.push_back(tg_ours.back() / tg_ref.back());
    }
  }
  const auto ppo = summarize(pp_ours), tgo = summarize(tg_ours);
  row["prefill_tps"] = to_json(ppo);
  row["decode_tps"] = to_json(tgo);
  if (reference) {
    row["reference_prefill_tps"] = to_json(summarize(pp_ref));
    row["reference_decode_tps"] = to_json(summarize(tg_ref));
    row["prefill_ratio"] = summarize(pp_pair).p50;
    row["decode_ratio"] = summarize(tg_pair).p50;
  }
  reference.reset();
  engine.unload(name);
  if (!o.llama_bench.empty()) {
    const auto lb = run_llama_bench(o.llama_bench, path, threads, o.reps, mmap);
    row["llama_bench_prefill_tps"] = lb.prompt_tps;
    row["llama_bench_decode_tps"] = lb.generate_tps;
  }
  return row;
}

std::string fmt(double v, int precision = 1) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", precision, v);
  return buf;
}

std::string markdown(const nlohmann::json& report) {
  std::ostringstream md;
  const auto& m = report["machine"];
  md << "### bench models — " << m["cpu"].get<std::string>() << ", " << report["threads"].get<int>()
     << " threads, load " << report["load"].get<std::string>() << "\n\n";
  md << "| model | type | prefill tok/s (ref) | ratio | decode tok/s (ref) | ratio | TTFT 300 ms | "
        "300+32 e2e ms | prefix "
     << report["prefix_tokens"].get<int>() << " cold / hit ms (speed-up) | peak RSS MiB |";
  if (report["llama_bench"].get<bool>()) md << " llama-bench pp / tg |";
  md << "\n|---|---|---|---|---|---|---|---|---|---|" << (report["llama_bench"].get<bool>() ? "---|" : "") << "\n";
  for (const auto& r : report["models"]) {
    const auto mean = [&](const char* k) { return r.contains(k) ? r[k]["mean"].get<double>() : 0.0; };
    const auto median = [&](const char* k) { return r.contains(k) ? r[k]["p50"].get<double>() : 0.0; };
    md << "| " << r["name"].get<std::string>() << (r["generated_weights"].get<bool>() ? " (gen.)" : "") << " | "
       << r["type"].get<std::string>() << " | " << fmt(median("prefill_tps")) << " ("
       << fmt(median("reference_prefill_tps")) << ") | "
       << (r.contains("prefill_ratio") ? fmt(r["prefill_ratio"].get<double>(), 3) : "-") << " | "
       << fmt(median("decode_tps")) << " (" << fmt(median("reference_decode_tps")) << ") | "
       << (r.contains("decode_ratio") ? fmt(r["decode_ratio"].get<double>(), 3) : "-") << " | "
       << fmt(mean("ttft_300_ms")) << " | " << fmt(mean("e2e_300_32_ms")) << " | ";
    if (r.contains("prefix_speedup")) {
      md << fmt(mean("prefix_cold_ttft_ms")) << " / " << fmt(mean("prefix_hit_ttft_ms")) << " ("
         << fmt(r["prefix_speedup"].get<double>()) << "x)";
    } else {
      md << "- (context too small)";
    }
    md << " | " << fmt(r["peak_rss_bytes"].get<double>() / (1024.0 * 1024.0), 0) << " |";
    if (report["llama_bench"].get<bool>()) {
      md << " " << fmt(r["llama_bench_prefill_tps"].get<double>()) << " / "
         << fmt(r["llama_bench_decode_tps"].get<double>()) << " |";
    }
    md << "\n";
  }
  md << "\ntok/s: medians of " << report["reps"].get<int>()
     << " repetitions after 2 warm-ups. ratio = ours / reference, the median over repetitions of the ratio "
        "of a back-to-back pair (order alternating); reference = llama.cpp's C API driven directly the way "
        "llama-bench does it, on the same loaded weights (same threads, context and thread pool). Times: means. "
        "llama-bench: "
        "llama.cpp's own binary from the same source, run afterwards in its own process. Peak RSS: the "
        "loaded model, a 4k-token context and the first requests, before the prefix test stores states.\n";
  return md.str();
}

}  // namespace

void add_bench_models(CLI::App& bench) {
  auto* cmd = bench.add_subcommand("models", "Prefill/decode tok/s, TTFT, e2e, prefix cache, RSS vs llama.cpp");
  auto o = std::make_shared<ModelsOptions>();
  cmd->add_option("models", o->models, "GGUF files")->required()->check(CLI::ExistingFile);
  cmd->add_option("--threads", o->threads, "Threads for ours and the reference (0 = all)");
  cmd->add_option("--reps", o->reps, "Repetitions of each measurement")->check(CLI::PositiveNumber);
  cmd->add_option("--prompt", o->prompt, "Prefill length (tokens)")->check(CLI::PositiveNumber);
  cmd->add_option("--generate", o->generate, "Decode length (tokens)")->check(CLI::PositiveNumber);
  cmd->add_option("--prefix", o->prefix, "Prefix length for the prefix-cache test")->check(CLI::PositiveNumber);
  cmd->add_option("--load", o->load, "mmap or read")->check(CLI::IsMember({"mmap", "read"}));
  cmd->add_option("--llama-bench", o->llama_bench,
                  "Also run llama.cpp's llama-bench binary (scripts/build-llama-bench.sh)");
  cmd->add_flag("--no-reference", o->no_reference, "Skip the direct llama.cpp reference loop");
  cmd->add_option("--out", o->out, "Folder for models.json and models.md");
  cmd->callback([o] {
    const int threads = o->threads > 0 ? o->threads : static_cast<int>(std::thread::hardware_concurrency());
    nlohmann::json report = {{"benchmark", "models"},
                             {"machine", machine_info()},
                             {"threads", threads},
                             {"reps", o->reps},
                             {"prompt_tokens", o->prompt},
                             {"generate_tokens", o->generate},
                             {"prefix_tokens", o->prefix},
                             {"load", o->load},
                             {"llama_bench", !o->llama_bench.empty()},
                             {"models", nlohmann::json::array()}};
    for (const auto& path : o->models) report["models"].push_back(bench_one(path, *o, threads));
    write_report(o->out, "models", report, markdown(report));
  });
}

}  // namespace ruvllm::bench
