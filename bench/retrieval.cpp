// `ruvllm bench retrieval`: dense, BM25 and hybrid retrieval through the memory store on real
// data — HotpotQA-100 (recall of the gold supporting paragraphs) and Cranfield (nDCG@10, R@10).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

#include "bench/bench.h"
#include "bench/report.h"
#include "ruvllm/attention.h"
#include "ruvllm/embed.h"
#include "ruvllm/memory.h"

namespace ruvllm::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Query {
  std::string id, text;
  std::map<std::string, double> relevant;  // source id → gain
};

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot read (is ../shared/data present?)");
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  }
  return rows;
}

struct Method {
  std::string name;
  memory::SearchMode mode;
  memory::Fusion fusion = memory::Fusion::rrf;
  double dense_weight = 0.5;
  // Graph stage: seeds from the search above, expanded `hops`, then ranked by this scorer.
  std::shared_ptr<const attention::Scorer> graph;
  std::size_t seeds = 10;
};

const std::vector<Method> kMethods = {
    {"dense (GloVe SIF)", memory::SearchMode::dense},
    {"BM25 (FTS5)", memory::SearchMode::lexical},
    {"hybrid RRF", memory::SearchMode::hybrid, memory::Fusion::rrf},
    {"hybrid weighted 0.5", memory::SearchMode::hybrid, memory::Fusion::weighted, 0.5},
    {"hybrid weighted 0.25", memory::SearchMode::hybrid, memory::Fusion::weighted, 0.25},
    {"BM25 + PPR", memory::SearchMode::lexical, memory::Fusion::rrf, 0.5, attention::personalized_pagerank()},
    {"hybrid weighted 0.25 + PPR", memory::SearchMode::hybrid, memory::Fusion::weighted, 0.25,
     attention::personalized_pagerank()}};

// The subgraph around the seeds, as the attention room's plain input.
attention::GraphInput graph_input(const memory::Subgraph& g, const std::vector<memory::Hit>& seeds,
                                  std::vector<std::string>& node_ids) {
  attention::GraphInput in;
  std::unordered_map<std::string, std::size_t> index;
  node_ids.clear();
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    attention::GraphNode n;
    n.depth = g.depth[i];
    n.confidence = g.nodes[i].confidence;
    in.nodes.push_back(std::move(n));
    index[g.nodes[i].id] = i;
    node_ids.push_back(g.nodes[i].id);
  }
  for (std::size_t r = 0; r < seeds.size(); ++r) {
    auto it = index.find(seeds[r].id);
    if (it == index.end()) continue;
    in.nodes[it->second].retrieval_rank = static_cast<int>(r);
    // Rank-based restart weights: BM25 and fused scores live on different scales.
    in.nodes[it->second].retrieval_score = 1.0 / (1.0 + static_cast<double>(r));
  }
  for (const auto& e : g.edges)
    in.edges.push_back({index.at(e.src), index.at(e.dst), e.rel, e.weight, e.confidence, 0});
  return in;
}

struct Scores {
  std::map<std::string, double> metric;  // averaged over queries
  Summary latency_us;
};

// Runs every query through one method; hits map to distinct source ids (chunks of one document count
// once, at their best rank).
Scores evaluate(memory::Memory& m, const std::vector<Query>& queries, const Method& method,
                std::unordered_map<std::string, std::string>& source_of, bool graded) {
  Scores s;
  std::vector<double> lat;
  for (const Query& q : queries) {
    memory::SearchQuery sq;
    sq.text = q.text;
    sq.k = 40;
    sq.mode = method.mode;
    sq.fusion = method.fusion;
    sq.dense_weight = method.dense_weight;
    const auto t0 = Clock::now();
    auto r = m.search(sq);
    std::vector<std::string> hit_ids;
    for (const auto& h : r.hits) hit_ids.push_back(h.id);
    if (method.graph) {
      r.hits.resize(std::min(r.hits.size(), method.seeds));
      std::vector<std::string> seed_ids;
      for (const auto& h : r.hits) seed_ids.push_back(h.id);
      const memory::Subgraph g = m.expand(seed_ids, {.hops = 2});
      std::vector<std::string> node_ids;
      const auto scores = method.graph->score(graph_input(g, r.hits, node_ids));
      std::vector<std::size_t> order(node_ids.size());
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(),
                       [&](std::size_t a, std::size_t b) { return scores.score[a] > scores.score[b]; });
      hit_ids.clear();
      for (std::size_t i : order) hit_ids.push_back(node_ids[i]);
    }
    lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    std::vector<std::string> ranked;
    for (const auto& id : hit_ids) {
      const memory::Hit h{id};
      auto it = source_of.find(h.id);
      if (it == source_of.end()) {
        const auto node = m.get(h.id);
        const auto meta = nlohmann::json::parse(node->metadata);
        it = source_of.emplace(h.id, meta.value("source_id", std::string())).first;
      }
      if (!it->second.empty() && std::find(ranked.begin(), ranked.end(), it->second) == ranked.end()) {
        ranked.push_back(it->second);
      }
    }
    for (std::size_t k : {2, 5, 10}) {
      std::size_t hit = 0;
      for (std::size_t i = 0; i < std::min(k, ranked.size()); ++i) hit += q.relevant.count(ranked[i]);
      s.metric["R@" + std::to_string(k)] += static_cast<double>(hit) / static_cast<double>(q.relevant.size());
    }
    if (graded) {  // nDCG@10 with the graded gains, log2 discount
      double dcg = 0, ideal = 0;
      for (std::size_t i = 0; i < std::min<std::size_t>(10, ranked.size()); ++i) {
        auto it = q.relevant.find(ranked[i]);
        if (it != q.relevant.end()) dcg += it->second / std::log2(static_cast<double>(i) + 2);
      }
      std::vector<double> gains;
      for (const auto& [id, g] : q.relevant) gains.push_back(g);
      std::sort(gains.rbegin(), gains.rend());
      for (std::size_t i = 0; i < std::min<std::size_t>(10, gains.size()); ++i)
        ideal += gains[i] / std::log2(static_cast<double>(i) + 2);
      s.metric["nDCG@10"] += ideal > 0 ? dcg / ideal : 0;
    }
  }
  for (auto& [k, v] : s.metric) v /= static_cast<double>(queries.size());
  s.latency_us = summarize(std::move(lat));
  return s;
}

struct RetrievalOptions {
  std::string data = "../shared/data";
  std::string out = "build/bench/retrieval";
  std::size_t chunk = 128;
};

void run(const RetrievalOptions& o) {
  std::filesystem::create_directories(o.out);
  auto embedder = std::shared_ptr<embed::Embedder>(embed::open_word_vectors());
  nlohmann::json json = {{"machine", machine_info()}, {"embedder", embedder->name()}, {"chunk_tokens", o.chunk}};
  std::ostringstream md;
  md << "### bench retrieval — memory store, " << embedder->name() << ", chunks of " << o.chunk << " words\n\n";

  struct Set {
    std::string name, corpus;
    std::vector<Query> queries;
    bool graded;
  };
  std::vector<Set> sets;
  {
    Set hp{"hotpotqa-100", o.data + "/qa/hotpotqa-100/corpus.jsonl", {}, false};
    for (const auto& j : read_jsonl(o.data + "/qa/hotpotqa-100/questions.jsonl")) {
      Query q{j["id"], j["question"], {}};
      for (const auto& s : j["supporting"]) q.relevant[s.get<std::string>()] = 1;
      hp.queries.push_back(std::move(q));
    }
    sets.push_back(std::move(hp));
    Set cf{"cranfield", o.data + "/ir/cranfield/corpus.jsonl", {}, true};
    for (const auto& j : read_jsonl(o.data + "/ir/cranfield/queries.jsonl")) {
      Query q{j["id"], j["text"], {}};
      for (const auto& [id, g] : j["relevant"].items()) q.relevant[id] = g.get<double>();
      if (!q.relevant.empty()) cf.queries.push_back(std::move(q));
    }
    sets.push_back(std::move(cf));
  }
  for (const Set& set : sets) {
    const std::string db = o.out + "/" + set.name + ".sqlite";
    for (const char* suffix : {"", "-wal", "-shm", ".usearch"}) std::filesystem::remove(db + suffix);
    memory::MemoryParams p;
    p.path = db;
    p.embedder = embedder;
    p.durable = false;
    memory::Memory m(p);
    memory::IngestParams ip;
    ip.chunk_tokens = o.chunk;
    ip.overlap_tokens = o.chunk / 4;
    const auto t0 = Clock::now();
    const auto report = memory::ingest(m, {set.corpus}, ip);
    const double ingest_s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::fprintf(stderr, "bench retrieval: %s: %zu documents, %zu chunks in %.1f s\n", set.name.c_str(),
                 report.documents, report.chunks, ingest_s);
    json["sets"][set.name]["ingest"] = {{"documents", report.documents},
                                        {"chunks", report.chunks},
                                        {"near_duplicates", report.near_duplicates},
                                        {"seconds", ingest_s}};
    json["sets"][set.name]["queries"] = set.queries.size();
    md << "**" << set.name << "** (" << report.documents << " documents, " << set.queries.size() << " queries)\n\n";
    md << (set.graded ? "| method | nDCG@10 | R@10 | R@5 | P50 us | P99 us |\n|---|---|---|---|---|---|\n"
                      : "| method | R@2 | R@5 | R@10 | P50 us | P99 us |\n|---|---|---|---|---|---|\n");
    std::unordered_map<std::string, std::string> source_of;
    for (const Method& method : kMethods) {
      const Scores s = evaluate(m, set.queries, method, source_of, set.graded);
      nlohmann::json mj = s.metric;
      mj["latency_us"] = bench::to_json(s.latency_us);
      json["sets"][set.name]["methods"][method.name] = mj;
      char line[256];
      if (set.graded) {
        std::snprintf(line, sizeof line, "| %s | %.3f | %.3f | %.3f | %.0f | %.0f |\n", method.name.c_str(),
                      s.metric.at("nDCG@10"), s.metric.at("R@10"), s.metric.at("R@5"), s.latency_us.p50,
                      s.latency_us.p99);
      } else {
        std::snprintf(line, sizeof line, "| %s | %.3f | %.3f | %.3f | %.0f | %.0f |\n", method.name.c_str(),
                      s.metric.at("R@2"), s.metric.at("R@5"), s.metric.at("R@10"), s.latency_us.p50, s.latency_us.p99);
      }
      md << line;
    }
    md << "\n";
  }
  md << "R@k: share of a question's gold (HotpotQA: its 2 supporting paragraphs; Cranfield: every judged "
        "document) among the first k distinct documents (chunks of one document count once). nDCG@10 with "
        "the data's graded gains. + PPR: the top 10 of the search as seeds (restart weight 1/(1+rank)), their "
        "2-hop neighbourhood (<= 256 nodes, 64 edges per node), ranked by Personalized PageRank (damping 0.5). "
        "Latency: the whole query, embedding, search and graph stage included, one thread.\n";
  write_report(o.out, "retrieval", json, md.str());
}

}  // namespace

void add_bench_retrieval(CLI::App& bench) {
  auto o = std::make_shared<RetrievalOptions>();
  auto* cmd =
      bench.add_subcommand("retrieval", "Dense / BM25 / hybrid retrieval quality on HotpotQA-100 and Cranfield");
  cmd->add_option("--data", o->data, "The shared data folder")->capture_default_str();
  cmd->add_option("--chunk", o->chunk, "Words per chunk at ingest")->capture_default_str();
  cmd->add_option("--out", o->out, "Output folder")->capture_default_str();
  cmd->callback([o] { run(*o); });
}

}  // namespace ruvllm::bench
