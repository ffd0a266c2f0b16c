// `ruvllm bench retrieval`: dense, BM25 and hybrid retrieval through the memory store on real
// data — HotpotQA-100 (recall of the gold supporting paragraphs) and Cranfield (nDCG@10, R@10).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

#include "bench/bench.h"
#include "common/report.h"
#include "ruvllm/attention.h"
#include "ruvllm/embed.h"
#include "ruvllm/memory.h"
#include "ruvllm/pipeline.h"

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
};

const std::vector<Method> kFlat = {
    {"dense (GloVe SIF)", memory::SearchMode::dense},
    {"BM25 (FTS5 bm25, postings in RAM)", memory::SearchMode::lexical},
    {"hybrid RRF", memory::SearchMode::hybrid, memory::Fusion::rrf},
    {"hybrid weighted 0.5", memory::SearchMode::hybrid, memory::Fusion::weighted, 0.5},
    {"hybrid weighted 0.25", memory::SearchMode::hybrid, memory::Fusion::weighted, 0.25}};

// Bases for the graph stage: their search gives the seeds and the candidates' ranks.
const std::vector<Method> kGraphBases = {
    {"BM25", memory::SearchMode::lexical},
    {"hybrid weighted 0.25", memory::SearchMode::hybrid, memory::Fusion::weighted, 0.25}};

struct Row {
  std::map<std::string, double> metric;  // averaged over queries
  Summary latency_us;
};

// Source ids in ranked order: chunks of one document count once, at their best rank.
class Sources {
 public:
  explicit Sources(const memory::Memory& m) : m_(m) {}
  const std::string& of(const std::string& node_id) {
    auto it = cache_.find(node_id);
    if (it != cache_.end()) return it->second;
    const auto node = m_.get(node_id);
    if (!node) throw std::runtime_error("bench retrieval: a hit names an unknown node " + node_id);
    return cache_.emplace(node_id, nlohmann::json::parse(node->metadata).value("source_id", std::string()))
        .first->second;
  }
  std::vector<std::string> ranked(const std::vector<std::string>& node_ids) {
    std::vector<std::string> out;
    for (const auto& id : node_ids) {
      const std::string& s = of(id);
      if (!s.empty() && std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
    }
    return out;
  }

 private:
  const memory::Memory& m_;
  std::unordered_map<std::string, std::string> cache_;
};

void add_metrics(const Query& q, const std::vector<std::string>& ranked, bool graded,
                 std::map<std::string, double>& m) {
  for (std::size_t k : {2, 5, 10}) {
    std::size_t hit = 0;
    for (std::size_t i = 0; i < std::min(k, ranked.size()); ++i) hit += q.relevant.count(ranked[i]);
    m["R@" + std::to_string(k)] += static_cast<double>(hit) / static_cast<double>(q.relevant.size());
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
    m["nDCG@10"] += ideal > 0 ? dcg / ideal : 0;
  }
}

Row flat(memory::Memory& m, const std::vector<Query>& queries, const Method& method, Sources& sources, bool graded) {
  Row row;
  std::vector<double> lat;
  for (const Query& q : queries) {
    memory::SearchQuery sq;
    sq.text = q.text;
    sq.k = 40;
    sq.mode = method.mode;
    sq.fusion = method.fusion;
    sq.dense_weight = method.dense_weight;
    const auto t0 = Clock::now();
    const auto r = m.search(sq);
    lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    std::vector<std::string> ids;
    for (const auto& h : r.hits) ids.push_back(h.id);
    add_metrics(q, sources.ranked(ids), graded, row.metric);
  }
  for (auto& [k, v] : row.metric) v /= static_cast<double>(queries.size());
  row.latency_us = summarize(std::move(lat));
  return row;
}

// A question's retrieved subgraph, kept so that every scorer (and every fold) ranks the same input.
struct Retrieval {
  pipeline::LabelledRetrieval l;  // the subgraph, its nodes' sources and the gold nodes
  double retrieve_us = 0;
};

// Distinct sources in descending score order (the ranking R@k and nDCG read).
std::vector<std::string> ranked_sources(const std::vector<double>& score, const pipeline::LabelledRetrieval& l) {
  std::vector<std::size_t> order(score.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return score[a] > score[b]; });
  std::vector<std::string> out;
  for (std::size_t i : order) {
    const std::string& s = l.node_sources[i];
    if (!s.empty() && std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

Row graph_row(const std::vector<Query>& queries, const std::vector<Retrieval>& data, bool graded,
              const std::function<const attention::Scorer&(std::size_t query)>& scorer) {
  Row row;
  std::vector<double> lat;
  for (std::size_t i = 0; i < queries.size(); ++i) {
    const auto t0 = Clock::now();
    const auto s = scorer(i).score(data[i].l.retrieved.graph);
    lat.push_back(data[i].retrieve_us + std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    add_metrics(queries[i], ranked_sources(s.score, data[i].l), graded, row.metric);
  }
  for (auto& [k, v] : row.metric) v /= static_cast<double>(queries.size());
  row.latency_us = summarize(std::move(lat));
  return row;
}

std::vector<Retrieval> retrieve_all(memory::Memory& m, const std::vector<Query>& queries,
                                    const pipeline::RetrieveParams& params) {
  std::vector<Retrieval> out;
  for (const Query& q : queries) {
    pipeline::LabelledQuestion lq{q.text, {}};
    for (const auto& [id, gain] : q.relevant) lq.gold_sources.push_back(id);
    Retrieval x;
    const auto t0 = Clock::now();
    x.l = pipeline::retrieve_labelled(m, lq, params);
    x.retrieve_us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    out.push_back(std::move(x));
  }
  return out;
}

constexpr std::size_t kFolds = 5;

// Attention trained on the other folds' questions, scoring each question of the held-out fold.
std::vector<std::shared_ptr<const attention::Scorer>> cross_validated(const std::vector<Retrieval>& data,
                                                                      std::size_t dimension,
                                                                      const attention::AttentionShape& shape,
                                                                      const attention::TrainParams& tp,
                                                                      nlohmann::json& log) {
  std::vector<std::shared_ptr<const attention::Scorer>> per_fold;
  for (std::size_t fold = 0; fold < kFolds; ++fold) {
    std::vector<attention::Example> train;
    for (std::size_t i = 0; i < data.size(); ++i) {
      if (i % kFolds != fold) train.push_back({data[i].l.retrieved.graph, data[i].l.gold_nodes});
    }
    auto model = std::make_shared<attention::AttentionModel>(dimension, shape);
    const auto t0 = Clock::now();
    const auto report = model->train(train, tp);
    log.push_back({{"fold", fold},
                   {"examples", report.examples},
                   {"skipped", report.skipped},
                   {"initial_loss", report.initial_loss},
                   {"final_loss", report.final_loss},
                   {"seconds", std::chrono::duration<double>(Clock::now() - t0).count()}});
    per_fold.push_back(attention::graph_attention(model));
  }
  return per_fold;
}

struct RetrievalOptions {
  std::string data = "../shared/data";
  std::string out = "build/bench/retrieval";
  std::size_t chunk = 128;
  std::size_t seeds = 10;
  int epochs = attention::TrainParams{}.epochs;
  bool query_interaction = false;
  std::vector<std::string> sets = {"hotpotqa-100", "cranfield"};
};

std::string row_line(const std::string& name, const Row& r, bool graded) {
  char line[320];
  if (graded) {
    std::snprintf(line, sizeof line, "| %s | %.3f | %.3f | %.3f | %.0f | %.0f |\n", name.c_str(),
                  r.metric.at("nDCG@10"), r.metric.at("R@10"), r.metric.at("R@5"), r.latency_us.p50, r.latency_us.p99);
  } else {
    std::snprintf(line, sizeof line, "| %s | %.3f | %.3f | %.3f | %.0f | %.0f |\n", name.c_str(), r.metric.at("R@2"),
                  r.metric.at("R@5"), r.metric.at("R@10"), r.latency_us.p50, r.latency_us.p99);
  }
  return line;
}

void run(const RetrievalOptions& o) {
  std::filesystem::create_directories(o.out);
  auto embedder = std::shared_ptr<embed::Embedder>(embed::open_word_vectors());
  nlohmann::json json = {{"machine", machine_info()}, {"embedder", embedder->name()}, {"chunk_tokens", o.chunk},
                         {"seeds", o.seeds},          {"epochs", o.epochs},           {"folds", kFolds}};
  std::ostringstream md;
  md << "### bench retrieval — memory store, " << embedder->name() << ", chunks of " << o.chunk << " words\n\n";

  struct Set {
    std::string name, corpus;
    std::vector<Query> queries;
    bool graded;
  };
  std::vector<Set> sets;
  auto wanted = [&](const std::string& name) { return std::find(o.sets.begin(), o.sets.end(), name) != o.sets.end(); };
  if (wanted("hotpotqa-100")) {
    Set hp{"hotpotqa-100", o.data + "/qa/hotpotqa-100/corpus.jsonl", {}, false};
    for (const auto& j : read_jsonl(o.data + "/qa/hotpotqa-100/questions.jsonl")) {
      Query q{j["id"], j["question"], {}};
      for (const auto& s : j["supporting"]) q.relevant[s.get<std::string>()] = 1;
      if (!q.relevant.empty()) hp.queries.push_back(std::move(q));
    }
    sets.push_back(std::move(hp));
  }
  if (wanted("cranfield")) {
    Set cf{"cranfield", o.data + "/ir/cranfield/corpus.jsonl", {}, true};
    for (const auto& j : read_jsonl(o.data + "/ir/cranfield/queries.jsonl")) {
      Query q{j["id"], j["text"], {}};
      for (const auto& [id, g] : j["relevant"].items()) q.relevant[id] = g.get<double>();
      if (!q.relevant.empty()) cf.queries.push_back(std::move(q));
    }
    sets.push_back(std::move(cf));
  }
  if (sets.empty()) throw std::runtime_error("bench retrieval: --sets names none of hotpotqa-100, cranfield");
  attention::TrainParams tp;
  tp.epochs = o.epochs;
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
    nlohmann::json& sj = json["sets"][set.name];
    sj["ingest"] = {{"documents", report.documents},
                    {"chunks", report.chunks},
                    {"near_duplicates", report.near_duplicates},
                    {"seconds", ingest_s}};
    sj["queries"] = set.queries.size();
    md << "**" << set.name << "** (" << report.documents << " documents, " << set.queries.size() << " queries)\n\n";
    md << (set.graded ? "| method | nDCG@10 | R@10 | R@5 | P50 us | P99 us |\n|---|---|---|---|---|---|\n"
                      : "| method | R@2 | R@5 | R@10 | P50 us | P99 us |\n|---|---|---|---|---|---|\n");
    Sources sources(m);
    auto record = [&](const std::string& name, const Row& row) {
      nlohmann::json mj = row.metric;
      mj["latency_us"] = bench::to_json(row.latency_us);
      sj["methods"][name] = mj;
      md << row_line(name, row, set.graded);
      std::fprintf(stderr, "%s", row_line(name, row, set.graded).c_str());
    };
    for (const Method& method : kFlat) record(method.name, flat(m, set.queries, method, sources, set.graded));

    const auto order = attention::retrieval_order();
    const auto ppr = attention::personalized_pagerank();
    for (const Method& base : kGraphBases) {
      pipeline::RetrieveParams rp;
      rp.mode = base.mode;
      rp.fusion = base.fusion;
      rp.dense_weight = base.dense_weight;
      rp.seeds = o.seeds;
      const auto data = retrieve_all(m, set.queries, rp);
      double with_gold = 0;
      for (const auto& d : data) with_gold += d.l.gold_nodes.empty() ? 0 : 1;
      sj["graph"][base.name]["questions_with_gold_in_subgraph"] = with_gold;
      record(base.name + " + neighbours in retrieval order",
             graph_row(set.queries, data, set.graded, [&](std::size_t) -> const attention::Scorer& { return *order; }));
      record(base.name + " + PPR",
             graph_row(set.queries, data, set.graded, [&](std::size_t) -> const attention::Scorer& { return *ppr; }));
      nlohmann::json folds = nlohmann::json::array(), ablation = nlohmann::json::array();
      const auto models =
          cross_validated(data, embedder->dimension(), {.query_interaction = o.query_interaction}, tp, folds);
      sj["graph"][base.name]["attention_folds"] = folds;
      record(base.name + " + attention (5-fold CV)",
             graph_row(set.queries, data, set.graded,
                       [&](std::size_t q) -> const attention::Scorer& { return *models[q % kFolds]; }));
      // The same features and training without messages between nodes: what the graph adds.
      const auto flat_models = cross_validated(data, embedder->dimension(),
                                               {.heads = 0, .query_interaction = o.query_interaction}, tp, ablation);
      sj["graph"][base.name]["no_message_folds"] = ablation;
      record(base.name + " + learned node scores, no messages (ablation, CV)",
             graph_row(set.queries, data, set.graded,
                       [&](std::size_t q) -> const attention::Scorer& { return *flat_models[q % kFolds]; }));
    }
    md << "\n";
  }

  // The scoring step alone at the issue's size: 64 seeds, their 2-hop neighbourhood capped at 256.
  if (!sets.empty()) {
    const Set& set = sets.front();
    memory::MemoryParams p;
    p.path = o.out + "/" + set.name + ".sqlite";
    p.embedder = embedder;
    p.durable = false;
    memory::Memory m(p);
    pipeline::RetrieveParams rp;
    rp.seeds = 64;
    const auto data = retrieve_all(m, set.queries, rp);
    nlohmann::json folds = nlohmann::json::array();
    tp.epochs = std::min(tp.epochs, 20);  // the weights do not change the cost
    std::vector<attention::Example> train;
    for (const auto& d : data) train.push_back({d.l.retrieved.graph, d.l.gold_nodes});
    auto model = std::make_shared<attention::AttentionModel>(embedder->dimension());
    model->train(train, tp);
    const auto gat = attention::graph_attention(model);
    const auto ppr = attention::personalized_pagerank();
    std::vector<double> nodes, edges, expand, t_ppr, t_gat;
    for (const auto& d : data) {
      nodes.push_back(static_cast<double>(d.l.retrieved.graph.nodes.size()));
      edges.push_back(static_cast<double>(d.l.retrieved.graph.edges.size()));
      expand.push_back(static_cast<double>(d.l.retrieved.expand_us));
      for (int rep = 0; rep < 5; ++rep) {
        auto t0 = Clock::now();
        (void)ppr->score(d.l.retrieved.graph);
        t_ppr.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        t0 = Clock::now();
        (void)gat->score(d.l.retrieved.graph);
        t_gat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
    }
    const auto sn = summarize(nodes), se = summarize(edges), sx = summarize(expand), sp = summarize(t_ppr),
               sg = summarize(t_gat);
    json["scoring_step"] = {{"set", set.name},
                            {"seeds", 64},
                            {"nodes", to_json(sn)},
                            {"edges", to_json(se)},
                            {"expand_us", to_json(sx)},
                            {"pagerank_us", to_json(sp)},
                            {"attention_us", to_json(sg)},
                            {"attention_parameters", model->parameter_count()}};
    char line[512];
    std::snprintf(line, sizeof line,
                  "**Scoring step** (%s, 64 seeds from hybrid weighted 0.25, 2 hops, <= 256 nodes: P50 %.0f nodes, "
                  "%.0f edges; one thread, 5 repetitions per question)\n\n| step | P50 us | P99 us |\n|---|---|---|\n"
                  "| expand (memory) | %.0f | %.0f |\n| Personalized PageRank | %.0f | %.0f |\n"
                  "| graph attention (%zu parameters) | %.0f | %.0f |\n\n",
                  set.name.c_str(), sn.p50, se.p50, sx.p50, sx.p99, sp.p50, sp.p99, model->parameter_count(), sg.p50,
                  sg.p99);
    md << line;
    std::fprintf(stderr, "%s", line);
  }
  md << "R@k: share of a question's gold (HotpotQA: its 2 supporting paragraphs; Cranfield: every judged "
        "document) among the first k distinct documents (chunks of one document count once). nDCG@10 with "
        "the data's graded gains. Graph rows: the base search's top "
     << o.seeds
     << " as seeds (64 candidates "
        "ranked), their 2-hop neighbourhood (<= 256 nodes, 64 edges per node), ranked by the scorer. PPR: "
        "damping 0.5, restart 1/(1+rank). Attention: trained on 4/5 of the questions and scored on the other "
        "fifth, for each fifth ("
     << o.epochs
     << " epochs). Latency: the whole query, embedding, search and graph "
        "stage included, one thread.\n";
  write_report(o.out, "retrieval", json, md.str());
}

}  // namespace

void add_bench_retrieval(CLI::App& bench) {
  auto o = std::make_shared<RetrievalOptions>();
  auto* cmd = bench.add_subcommand("retrieval",
                                   "Dense / BM25 / hybrid retrieval and the graph stage on HotpotQA-100 and Cranfield");
  cmd->add_option("--data", o->data, "The shared data folder")->capture_default_str();
  cmd->add_option("--chunk", o->chunk, "Words per chunk at ingest")->capture_default_str();
  cmd->add_option("--seeds", o->seeds, "Search results that seed the graph stage")->capture_default_str();
  cmd->add_option("--epochs", o->epochs, "Attention training epochs per fold")->capture_default_str();
  cmd->add_flag("--query-interaction", o->query_interaction,
                "Attention also reads the query x embedding products (D more inputs)");
  cmd->add_option("--sets", o->sets, "Which sets: hotpotqa-100, cranfield")->capture_default_str();
  cmd->add_option("--out", o->out, "Output folder")->capture_default_str();
  cmd->callback([o] { run(*o); });
}

}  // namespace ruvllm::bench
