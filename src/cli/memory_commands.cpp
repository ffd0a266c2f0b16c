// `ruvllm ingest` and `ruvllm memory ...`: the memory store from the command line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.h"
#include "progress.h"
#include "ruvllm/config.h"
#include "ruvllm/embed.h"
#include "ruvllm/memory.h"
#include "store.h"

namespace ruvllm::cli {

void add_store_options(CLI::App* cmd, StoreOptions& o) {
  cmd->add_option("-c,--config", o.config,
                  "TOML configuration whose memory to use (default: $RUVLLM_CONFIG, else ./ruvllm.toml)");
  cmd->add_option("--db", o.db,
                  "Memory database (SQLite; the index lives beside it). Default: the configuration's, as ask "
                  "and serve use it (without one, ruvllm-data/memory.sqlite)");
  cmd->add_option("--words", o.words,
                  "Word-vector table for the embedder (default: the configuration's, else "
                  "set-up's GloVe-6B 100-d)");
  cmd->add_option("--storage", o.storage, "Index storage: f32, f16, i8")->capture_default_str();
}

StoreOptions resolve(StoreOptions o) {
  if (!o.db.empty() && !o.words.empty()) return o;
  // The same file, defaults and RUVLLM_* overrides as the pipeline's; no [[model]] needed.
  const auto file = find_config(o.config);
  const config::Settings c = config::load(file.value_or(""), config::Scope::memory);
  if (o.db.empty()) o.db = c.memory_path;
  if (o.words.empty()) o.words = c.word_vectors;
  return o;
}

std::unique_ptr<memory::Memory> open_memory(const StoreOptions& given, Access access) {
  const StoreOptions o = resolve(given);
  memory::MemoryParams p;
  p.path = o.db;
  p.create = access == Access::create;
  if (access == Access::read && !std::filesystem::exists(o.db))
    throw memory::Error(ErrorCode::not_found,
                        "memory " + o.db +
                            " does not exist; nothing was created. `ruvllm ingest FILES` creates it (the memory is "
                            "--db, else the configuration's: -c, $RUVLLM_CONFIG or ./ruvllm.toml, else "
                            "ruvllm-data/memory.sqlite)");
  if (access == Access::create) {  // its folder too, as the pipeline creates data_dir
    std::error_code ec;
    if (auto parent = std::filesystem::path(o.db).parent_path(); !parent.empty())
      std::filesystem::create_directories(parent, ec);
    if (ec) throw memory::Error(ErrorCode::io, "cannot create the folder of " + o.db + ": " + ec.message());
  }
  p.embedder = embed::open_word_vectors({.path = o.words});
  if (o.storage == "f16") {
    p.index.storage = memory::Storage::f16;
  } else if (o.storage == "i8") {
    p.index.storage = memory::Storage::i8;
  } else if (o.storage != "f32") {
    throw memory::Error("--storage must be f32, f16 or i8");
  }
  return std::make_unique<memory::Memory>(std::move(p));
}

namespace {

nlohmann::json as_json(const memory::Node& n) { return nlohmann::json::parse(memory::to_json(n, true)); }
nlohmann::json as_json(const memory::Edge& e) { return nlohmann::json::parse(memory::to_json(e)); }

std::string snippet(const std::string& text, std::size_t max_bytes = 100) {
  std::string flat = text;  // one line per hit
  std::replace(flat.begin(), flat.end(), '\n', ' ');
  if (flat.size() <= max_bytes) return flat;
  std::size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(flat[cut]) & 0xC0) == 0x80) --cut;  // whole characters only
  return flat.substr(0, cut) + "…";
}

}  // namespace

void add_memory_commands(CLI::App& app) {
  // ---- ingest ----
  struct IngestOptions {
    StoreOptions store;
    std::vector<std::string> paths;
    memory::IngestParams params;
    bool no_mentions = false;
  };
  auto io = std::make_shared<IngestOptions>();
  auto* ingest = app.add_subcommand("ingest", "Ingest .txt, .md and .jsonl files into memory (idempotent, resumable)");
  add_store_options(ingest, io->store);
  ingest->add_option("paths", io->paths, "Files")->required()->check(CLI::ExistingFile);
  ingest->add_option("--chunk", io->params.chunk_tokens, "Words per chunk")->capture_default_str();
  ingest->add_option("--overlap", io->params.overlap_tokens, "Words shared by consecutive chunks")
      ->capture_default_str();
  ingest->add_option("--source", io->params.source, "Source label of the nodes")->capture_default_str();
  ingest->add_option("--same-topic", io->params.same_topic_threshold, "Cosine threshold of same_topic edges")
      ->capture_default_str();
  ingest->add_flag("--no-mentions", io->no_mentions, "Skip mentions edges (title matching)");
  ingest->callback([io] {
    auto m = open_memory(io->store, Access::create);
    io->params.mentions = !io->no_mentions;
    ProgressBar bar;
    io->params.progress = [&bar](std::size_t done, std::size_t total) {
      bar(total ? static_cast<double>(done) / static_cast<double>(total) : 1.0);
    };
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = memory::ingest(*m, io->paths, io->params);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "ingested %zu files into %s in %.1f s: %zu documents (%zu chunks), %zu already there, %zu duplicates skipped, "
        "%zu "
        "near-duplicates linked, %zu empty records left out; edges: %zu follows, %zu same_topic, %zu mentions\n",
        r.files, resolve(io->store).db.c_str(), s, r.documents, r.chunks, r.skipped, r.duplicates, r.near_duplicates,
        r.empty, r.follows, r.same_topic, r.mentions);
  });

  // ---- memory ----
  auto* mem = app.add_subcommand("memory", "Inspect and edit the memory store");
  mem->require_subcommand(1);
  auto so = std::make_shared<StoreOptions>();

  auto* stats = mem->add_subcommand("stats", "Counts and sizes");
  add_store_options(stats, *so);
  stats->callback([so] {
    auto m = open_memory(*so, Access::read);
    const auto s = m->stats();
    std::printf("%s\n", nlohmann::json({{"path", s.path},
                                        {"nodes", s.nodes},
                                        {"vectors", s.vectors},
                                        {"indexed", s.indexed},
                                        {"edges", s.edges},
                                        {"lexical_rows", s.lexical_rows},
                                        {"embedder", s.embedder},
                                        {"dimension", s.dimension},
                                        {"index_bytes", s.index_bytes},
                                        {"database_bytes", s.database_bytes}})
                            .dump(2)
                            .c_str());
  });

  struct SearchOptions {
    memory::SearchQuery query;
    std::string mode = "hybrid", fusion = "rrf";
    std::vector<std::string> types;
    bool json = false;
  };
  auto sopt = std::make_shared<SearchOptions>();
  auto* search = mem->add_subcommand("search", "Dense, lexical or hybrid search");
  add_store_options(search, *so);
  search->add_option("text", sopt->query.text, "Query")->required();
  search->add_option("-k", sopt->query.k, "Results")->capture_default_str();
  search->add_option("--mode", sopt->mode, "dense, lexical or hybrid")->capture_default_str();
  search->add_option("--fusion", sopt->fusion, "rrf or weighted")->capture_default_str();
  search->add_option("--dense-weight", sopt->query.dense_weight, "Weighted fusion: weight of the dense score");
  search->add_option("--ef", sopt->query.expansion_search, "efSearch (0 = index default)");
  search->add_option("--type", sopt->types, "Only these node types");
  search->add_option("--domain", sopt->query.filter.domain, "Only this domain");
  search->add_option("--tag", sopt->query.filter.tags, "Only nodes with every one of these tags");
  search->add_flag("--json", sopt->json, "Print JSON");
  search->callback([so, sopt] {
    auto& q = sopt->query;
    q.mode = memory::parse_search_mode(sopt->mode);
    q.fusion = memory::parse_fusion(sopt->fusion);
    for (const auto& t : sopt->types) q.filter.types.push_back(memory::parse_node_type(t));
    auto m = open_memory(*so, Access::read);
    const auto r = m->search(q);
    if (sopt->json) {
      nlohmann::json hits = nlohmann::json::array();
      for (const auto& h : r.hits) {
        hits.push_back({{"id", h.id},
                        {"score", h.score},
                        {"dense_rank", h.dense_rank},
                        {"lexical_rank", h.lexical_rank},
                        {"similarity", h.similarity},
                        {"bm25", h.bm25},
                        {"node", as_json(*m->get(h.id))}});
      }
      std::printf(
          "%s\n",
          nlohmann::json(
              {{"hits", hits},
               {"query_has_vector", r.query_has_vector},
               {"timings_us",
                {{"embed", r.embed_us}, {"dense", r.dense_us}, {"lexical", r.lexical_us}, {"fuse", r.fuse_us}}}})
              .dump(2)
              .c_str());
      return;
    }
    if (!r.query_has_vector && q.mode != memory::SearchMode::lexical) {
      std::fprintf(stderr, "note: no word of the query is in the embedder's vocabulary: lexical results only\n");
    }
    for (std::size_t i = 0; i < r.hits.size(); ++i) {
      const auto& h = r.hits[i];
      const auto n = m->get(h.id);
      std::printf("%2zu. %.4f  %s  [%s] %s\n    %s\n", i + 1, h.score, h.id.c_str(),
                  std::string(memory::to_string(n->type)).c_str(), n->title.c_str(), snippet(n->text).c_str());
    }
    std::printf("(embed %lld us, dense %lld us, lexical %lld us, fuse %lld us)\n", static_cast<long long>(r.embed_us),
                static_cast<long long>(r.dense_us), static_cast<long long>(r.lexical_us),
                static_cast<long long>(r.fuse_us));
  });

  struct GetOptions {
    std::string id;
    bool vector = false;
  };
  auto go = std::make_shared<GetOptions>();
  auto* get = mem->add_subcommand("get", "A node as JSON, with its edges");
  add_store_options(get, *so);
  get->add_option("id", go->id, "Node id")->required();
  get->add_flag("--vector", go->vector, "Include the vector");
  get->callback([so, go] {
    auto m = open_memory(*so, Access::read);
    const auto n = m->get(go->id, go->vector);
    if (!n) throw memory::Error("no node " + go->id);
    nlohmann::json j = as_json(*n);
    j["edges"] = nlohmann::json::array();
    for (const auto& e : m->edges(go->id)) j["edges"].push_back(as_json(e));
    std::printf("%s\n", j.dump(2).c_str());
  });

  struct AddOptions {
    memory::Node node;
    std::string type = "memory";
  };
  auto ao = std::make_shared<AddOptions>();
  auto* add = mem->add_subcommand("add", "Add a node (embedded with the memory's embedder); prints its id");
  add_store_options(add, *so);
  add->add_option("text", ao->node.text, "Text")->required();
  add->add_option("--type", ao->type, "Node type")->capture_default_str();
  add->add_option("--source", ao->node.source, "Source")->capture_default_str();
  add->add_option("--title", ao->node.title, "Title");
  add->add_option("--tag", ao->node.tags, "Tags");
  add->add_option("--domain", ao->node.domain, "Domain");
  add->add_option("--metadata", ao->node.metadata, "Metadata (a JSON object)");
  add->callback([so, ao] {
    ao->node.type = memory::parse_node_type(ao->type);
    auto m = open_memory(*so, Access::create);
    std::printf("%s\n", m->add(ao->node).c_str());
  });

  auto eo = std::make_shared<memory::Edge>();
  auto* link = mem->add_subcommand("link", "Add (or update) an edge; prints its id");
  add_store_options(link, *so);
  link->add_option("src", eo->src, "Source node id")->required();
  link->add_option("dst", eo->dst, "Target node id")->required();
  link->add_option("--rel", eo->rel, "Relation (cites, mentions, follows, same_topic, derived, ...)")->required();
  link->add_option("--weight", eo->weight, "Weight > 0")->capture_default_str();
  link->add_option("--confidence", eo->confidence, "Confidence in [0, 1]")->capture_default_str();
  link->callback([so, eo] {
    auto m = open_memory(*so, Access::read);
    std::printf("%s\n", m->link(*eo).c_str());
  });

  auto did = std::make_shared<std::string>();
  auto* del = mem->add_subcommand("delete", "Delete a node, its vector and its edges");
  add_store_options(del, *so);
  del->add_option("id", *did, "Node id")->required();
  del->callback([so, did] {
    auto m = open_memory(*so, Access::read);
    if (!m->remove(*did)) throw memory::Error("no node " + *did);
    std::printf("deleted %s\n", did->c_str());
  });

  auto* vacuum = mem->add_subcommand("vacuum", "Save the index, rebuild FTS and compact the database");
  add_store_options(vacuum, *so);
  vacuum->callback([so] {
    auto m = open_memory(*so, Access::read);
    m->vacuum();
    std::printf("vacuumed %s\n", resolve(*so).db.c_str());
  });
}

}  // namespace ruvllm::cli
