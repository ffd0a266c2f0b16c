// `ruvllm bench ann`: our HNSW wrapper vs raw USearch vs brute force on GloVe-100-angular (100k
// base vectors, 1,000 queries, exact top-100), and a generated large-scale insert/search run.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <usearch/index_dense.hpp>

#include "bench/bench.h"
#include "common/report.h"
#include "memory/ann.h"

namespace ruvllm::bench {
namespace {

using memory::detail::AnnIndex;
using memory::detail::AnnMatch;
using Clock = std::chrono::steady_clock;
namespace us = unum::usearch;

template <typename T>
std::vector<std::vector<T>> read_vecs(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot read (is ../shared/data present?)");
  std::vector<std::vector<T>> rows;
  int32_t dim = 0;
  while (f.read(reinterpret_cast<char*>(&dim), 4)) {
    if (dim <= 0 || dim > 65536) throw std::runtime_error(path + ": bad dimension");
    std::vector<T> row(static_cast<std::size_t>(dim));
    if (!f.read(reinterpret_cast<char*>(row.data()), dim * static_cast<std::streamsize>(sizeof(T)))) {
      throw std::runtime_error(path + ": truncated");
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

void normalise(std::vector<float>& v) {
  double n = 0;
  for (float x : v) n += static_cast<double>(x) * x;
  n = std::sqrt(n);
  if (n > 0) {
    for (float& x : v) x = static_cast<float>(x / n);
  }
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Point {  // one (storage, k, ef) measurement of one implementation
  double recall1 = 0, recall10 = 0, qps = 0;
  Summary latency_us;
};

// recall@1: the true nearest is the first result; recall@10: share of the true top-10 in the first 10.
template <typename Search>
Point measure(const std::vector<std::vector<float>>& queries, const std::vector<std::vector<int32_t>>& truth,
              std::size_t k, Search&& search) {
  std::vector<uint64_t> keys;
  std::vector<double> lat;
  lat.reserve(queries.size());
  double r1 = 0, r10 = 0;
  const auto t_all = Clock::now();
  for (std::size_t q = 0; q < queries.size(); ++q) {
    const auto t0 = Clock::now();
    search(queries[q], k, keys);
    lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (!keys.empty() && keys[0] == static_cast<uint64_t>(truth[q][0])) r1 += 1;
    const std::set<int64_t> top10(truth[q].begin(), truth[q].begin() + 10);
    std::size_t hit = 0;
    for (std::size_t i = 0; i < std::min<std::size_t>(10, keys.size()); ++i)
      hit += top10.count(static_cast<int64_t>(keys[i]));
    r10 += static_cast<double>(hit) / 10.0;
  }
  const double total = seconds_since(t_all);
  Point p;
  p.recall1 = r1 / static_cast<double>(queries.size());
  p.recall10 = r10 / static_cast<double>(queries.size());
  p.qps = static_cast<double>(queries.size()) / total;
  p.latency_us = summarize(std::move(lat));
  return p;
}

nlohmann::json to_json(const Point& p) {
  return {
      {"recall@1", p.recall1}, {"recall@10", p.recall10}, {"qps", p.qps}, {"latency_us", bench::to_json(p.latency_us)}};
}

us::scalar_kind_t scalar_of(memory::Storage s) {
  return s == memory::Storage::f32 ? us::scalar_kind_t::f32_k
                                   : (s == memory::Storage::f16 ? us::scalar_kind_t::f16_k : us::scalar_kind_t::i8_k);
}

struct AnnOptions {
  std::string data = "../shared/data/ann/glove-100-angular";
  std::vector<std::string> storages = {"f32", "f16", "i8"};
  std::vector<std::size_t> ks = {10, 64};
  std::vector<std::size_t> efs = {16, 32, 64, 128, 256};
  std::size_t connectivity = 32, expansion_add = 200;
  std::size_t build_threads = 0;  // 0 = all cores
  std::size_t generated = 0;      // vectors of the generated large run (0 = skip)
  std::size_t generated_dim = 100;
  bool no_raw = false;
  std::string out = "build/bench/ann";
};

// Builds `n` vectors into `add(i)` on `threads` threads; returns seconds.
template <typename Add>
double parallel_build(std::size_t n, std::size_t threads, Add&& add) {
  const auto t0 = Clock::now();
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (std::size_t i = t; i < n; i += threads) add(i);
    });
  }
  for (auto& th : pool) th.join();
  return seconds_since(t0);
}

void run(const AnnOptions& o) {
  const std::size_t threads = o.build_threads ? o.build_threads : std::max(1u, std::thread::hardware_concurrency());
  auto base = read_vecs<float>(o.data + "/base.fvecs");
  auto queries = read_vecs<float>(o.data + "/query.fvecs");
  const auto truth = read_vecs<int32_t>(o.data + "/groundtruth.ivecs");
  if (base.empty() || queries.size() != truth.size()) throw std::runtime_error("ann data: inconsistent files");
  const std::size_t dim = base[0].size();
  for (auto& v : base) normalise(v);
  for (auto& v : queries) normalise(v);
  std::fprintf(stderr, "bench ann: %zu x %zu-d base, %zu queries, build on %zu threads, search on 1\n", base.size(),
               dim, queries.size(), threads);

  nlohmann::json json = {
      {"machine", machine_info()},        {"data", o.data},          {"base", base.size()},
      {"queries", queries.size()},        {"dimension", dim},        {"connectivity", o.connectivity},
      {"expansion_add", o.expansion_add}, {"build_threads", threads}};
  std::ostringstream md;
  md << "### bench ann — GloVe-100-angular (" << base.size() << " x " << dim << ", " << queries.size()
     << " queries), M=" << o.connectivity << ", efConstruction=" << o.expansion_add << ", 1 search thread\n\n";

  // Brute force: exact cosine over every base vector, the reference for both speed and ground truth.
  {
    std::vector<std::pair<float, uint32_t>> scored(base.size());
    const Point p =
        measure(queries, truth, 10, [&](const std::vector<float>& q, std::size_t k, std::vector<uint64_t>& keys) {
          for (std::size_t i = 0; i < base.size(); ++i) {
            float s = 0;
            const float* b = base[i].data();
            for (std::size_t d = 0; d < dim; ++d) s += q[d] * b[d];
            scored[i] = {-s, static_cast<uint32_t>(i)};
          }
          std::partial_sort(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(k), scored.end());
          keys.clear();
          for (std::size_t i = 0; i < k; ++i) keys.push_back(scored[i].second);
        });
    json["brute_force"] = to_json(p);
    md << "Brute force (exact, f32): recall@1 " << p.recall1 << ", recall@10 " << p.recall10 << ", "
       << static_cast<int>(p.qps) << " QPS, P50 " << p.latency_us.p50 << " us.\n\n";
  }

  md << "| storage | impl | build s | bytes/vector | k | ef | recall@1 | recall@10 | QPS | P50 us | P99 us | ours/raw "
        "P50 |\n";
  md << "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const std::string& sname : o.storages) {
    memory::IndexParams params;
    params.connectivity = o.connectivity;
    params.expansion_add = o.expansion_add;
    if (sname == "f16") {
      params.storage = memory::Storage::f16;
    } else if (sname == "i8") {
      params.storage = memory::Storage::i8;
    } else if (sname != "f32") {
      throw std::runtime_error("--storage: f32, f16 or i8");
    }
    nlohmann::json sj;
    // Ours.
    AnnIndex ours(dim, params);
    ours.reserve(base.size());
    const double ours_build = parallel_build(base.size(), threads, [&](std::size_t i) { ours.add(i, base[i]); });
    const double ours_bytes = static_cast<double>(ours.memory_bytes()) / static_cast<double>(base.size());
    // Raw USearch, the same configuration, outside the wrapper.
    std::unique_ptr<us::index_dense_gt<uint64_t, uint32_t>> raw;
    double raw_build = 0, raw_bytes = 0;
    if (!o.no_raw) {
      us::index_dense_config_t config(o.connectivity, o.expansion_add, 64);
      us::metric_punned_t metric(dim, us::metric_kind_t::cos_k, scalar_of(params.storage));
      auto made = us::index_dense_gt<uint64_t, uint32_t>::make(metric, config);
      if (!made) throw std::runtime_error("usearch make failed");
      raw = std::make_unique<us::index_dense_gt<uint64_t, uint32_t>>(std::move(made.index));
      raw->reserve(us::index_limits_t(base.size(), threads));
      raw_build = parallel_build(base.size(), threads, [&](std::size_t i) { raw->add(i, base[i].data()); });
      raw_bytes = static_cast<double>(raw->memory_usage()) / static_cast<double>(base.size());
    }
    sj["ours"] = {{"build_s", ours_build}, {"bytes_per_vector", ours_bytes}};
    if (raw) sj["raw"] = {{"build_s", raw_build}, {"bytes_per_vector", raw_bytes}};
    std::vector<AnnMatch> matches;
    for (std::size_t k : o.ks) {
      for (std::size_t ef : o.efs) {
        const Point p =
            measure(queries, truth, k, [&](const std::vector<float>& q, std::size_t kk, std::vector<uint64_t>& keys) {
              ours.search(q, kk, ef, matches);
              keys.clear();
              for (const auto& m : matches) keys.push_back(m.key);
            });
        Point r;
        if (raw) {
          raw->change_expansion_search(ef);
          r = measure(queries, truth, k, [&](const std::vector<float>& q, std::size_t kk, std::vector<uint64_t>& keys) {
            auto result = raw->search(q.data(), kk);
            keys.resize(result.size());
            result.dump_to(keys.data());
          });
        }
        const std::string key = "k" + std::to_string(k) + "_ef" + std::to_string(ef);
        sj["points"][key]["ours"] = to_json(p);
        if (raw) sj["points"][key]["raw"] = to_json(r);
        char line[512];
        std::snprintf(
            line, sizeof line, "| %s | ours | %.1f | %.0f | %zu | %zu | %.3f | %.3f | %.0f | %.1f | %.1f | %s |\n",
            sname.c_str(), ours_build, ours_bytes, k, ef, p.recall1, p.recall10, p.qps, p.latency_us.p50,
            p.latency_us.p99, raw ? std::to_string(p.latency_us.p50 / r.latency_us.p50).substr(0, 5).c_str() : "-");
        md << line;
        if (raw) {
          std::snprintf(line, sizeof line,
                        "| %s | raw USearch | %.1f | %.0f | %zu | %zu | %.3f | %.3f | %.0f | %.1f | %.1f | |\n",
                        sname.c_str(), raw_build, raw_bytes, k, ef, r.recall1, r.recall10, r.qps, r.latency_us.p50,
                        r.latency_us.p99);
          md << line;
        }
        std::fprintf(stderr, "  %s k=%zu ef=%zu: recall@10 %.3f, P50 %.1f us (raw %.1f us)\n", sname.c_str(), k, ef,
                     p.recall10, p.latency_us.p50, raw ? r.latency_us.p50 : 0.0);
      }
    }
    json["storages"][sname] = sj;
  }
  md << "\nrecall against the exact top-100 of the data set; latency per query on one thread (P50/P99 over "
     << queries.size() << " queries); build on " << threads
     << " threads; bytes/vector: the index's memory (vectors + graph) / vectors; ours/raw: our wrapper's P50 over raw "
        "USearch's on the same data and settings.\n";

  if (o.generated > 0) {
    // Large generated run: clustered unit vectors, insert rate on all threads, search latency on one.
    std::mt19937_64 rng(42);
    std::normal_distribution<float> g;
    const std::size_t n = o.generated, d = o.generated_dim;
    std::vector<std::vector<float>> centres(1024, std::vector<float>(d));
    for (auto& c : centres)
      for (auto& x : c) x = g(rng);
    std::vector<float> data(n * d);
    for (std::size_t i = 0; i < n; ++i) {
      float* v = data.data() + i * d;
      const auto& c = centres[rng() % centres.size()];
      double norm = 0;
      for (std::size_t j = 0; j < d; ++j) {
        v[j] = c[j] + 0.5f * g(rng);
        norm += static_cast<double>(v[j]) * v[j];
      }
      for (std::size_t j = 0; j < d; ++j) v[j] = static_cast<float>(v[j] / std::sqrt(norm));
    }
    memory::IndexParams params;
    params.connectivity = o.connectivity;
    params.expansion_add = o.expansion_add;
    AnnIndex big(d, params);
    big.reserve(n);
    std::fprintf(stderr, "bench ann: generated %zu x %zu-d, inserting on %zu threads\n", n, d, threads);
    const double build = parallel_build(n, threads, [&](std::size_t i) { big.add(i, {data.data() + i * d, d}); });
    std::vector<double> lat;
    std::vector<AnnMatch> matches;
    double recall = 0;
    const std::size_t nq = 200;
    std::vector<float> q(d);
    for (std::size_t t = 0; t < nq; ++t) {
      const std::size_t src = rng() % n;
      for (std::size_t j = 0; j < d; ++j) q[j] = data[src * d + j] + 0.05f * g(rng);
      normalise(q);
      const auto t0 = Clock::now();
      big.search(q, 10, 64, matches);
      lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      if (t < 20) {  // recall@10 against exact search for a sample (exact is ~n*d flops per query)
        std::vector<AnnMatch> exact;
        big.search_exact(q, 10, exact);
        std::size_t hit = 0;
        for (const auto& e : exact) {
          for (const auto& m : matches) hit += m.key == e.key;
        }
        recall += static_cast<double>(hit) / 10.0;
      }
    }
    const Summary s = summarize(lat);
    json["generated"] = {{"vectors", n},
                         {"dimension", d},
                         {"build_s", build},
                         {"inserts_per_s", static_cast<double>(n) / build},
                         {"bytes_per_vector", static_cast<double>(big.memory_bytes()) / static_cast<double>(n)},
                         {"search_k10_ef64_latency_us", bench::to_json(s)},
                         {"recall@10_sample20", recall / 20.0}};
    char line[512];
    std::snprintf(
        line, sizeof line,
        "\nGenerated %zu x %zu-d (clustered, f32): %.0f inserts/s on %zu threads (%.0f s), %.0f bytes/vector; "
        "search k=10 ef=64 on one thread P50 %.1f us, P99 %.1f us; recall@10 %.3f (20 queries vs exact).\n",
        n, d, static_cast<double>(n) / build, threads, build,
        static_cast<double>(big.memory_bytes()) / static_cast<double>(n), s.p50, s.p99, recall / 20.0);
    md << line;
  }
  write_report(o.out, "ann", json, md.str());
}

}  // namespace

void add_bench_ann(CLI::App& bench) {
  auto o = std::make_shared<AnnOptions>();
  auto* cmd = bench.add_subcommand("ann", "HNSW recall/latency vs raw USearch and brute force (GloVe-100-angular)");
  cmd->add_option("--data", o->data, "Folder with base.fvecs, query.fvecs, groundtruth.ivecs")->capture_default_str();
  cmd->add_option("--storage", o->storages, "f32, f16, i8")->capture_default_str();
  cmd->add_option("-k", o->ks, "Result counts")->capture_default_str();
  cmd->add_option("--ef", o->efs, "efSearch values")->capture_default_str();
  cmd->add_option("--connectivity", o->connectivity, "M")->capture_default_str();
  cmd->add_option("--ef-construction", o->expansion_add, "efConstruction")->capture_default_str();
  cmd->add_option("--build-threads", o->build_threads, "Insert threads (0 = all)");
  cmd->add_option("--generated", o->generated, "Also a generated run of this many vectors (e.g. 1000000)");
  cmd->add_flag("--no-raw", o->no_raw, "Skip raw USearch");
  cmd->add_option("--out", o->out, "Output folder")->capture_default_str();
  cmd->callback([o] { run(*o); });
}

}  // namespace ruvllm::bench
