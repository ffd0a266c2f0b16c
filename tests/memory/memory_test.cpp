// Memory against brute force and against its promises: recall, persistence, crash consistency,
// filters, deletes, concurrency, dedup, fusion, graph expansion and bad input.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "fixtures.h"
#include "memory/text_match.h"
#include "ruvllm/memory.h"

namespace ruvllm::memory {
namespace {

std::string fresh_db(const std::string& name) {
  const std::string path = test::tmp_dir() + "/" + name + ".sqlite";
  for (const char* suffix : {"", "-wal", "-shm", ".usearch"}) std::filesystem::remove(path + suffix);
  return path;
}

// Clustered unit vectors: HNSW's realistic case (uniform noise in 32-d is its hardest).
std::vector<std::vector<float>> clustered(std::size_t n, std::size_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  std::vector<std::vector<float>> centres(32, std::vector<float>(dim));
  for (auto& c : centres)
    for (auto& x : c) x = g(rng);
  std::vector<std::vector<float>> out(n, std::vector<float>(dim));
  for (std::size_t i = 0; i < n; ++i) {
    const auto& c = centres[i % centres.size()];
    double norm = 0;
    for (std::size_t d = 0; d < dim; ++d) {
      out[i][d] = c[d] + 0.6f * g(rng);
      norm += out[i][d] * out[i][d];
    }
    for (auto& x : out[i]) x = static_cast<float>(x / std::sqrt(norm));
  }
  return out;
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

MemoryParams vector_params(const std::string& path, std::size_t dim) {
  MemoryParams p;
  p.path = path;
  p.dimension = dim;
  p.durable = false;
  p.warn = [](const std::string&) {};
  return p;
}

std::vector<std::string> add_vectors(Memory& m, const std::vector<std::vector<float>>& vs, std::size_t from = 0) {
  std::vector<Node> nodes;
  for (std::size_t i = from; i < vs.size(); ++i) {
    Node n;
    n.text = "node " + std::to_string(i);
    n.vector = vs[i];
    n.tags = {i % 2 ? "odd" : "even"};
    n.domain = i % 3 == 0 ? "three" : "";
    n.type = i % 5 == 0 ? NodeType::fact : NodeType::chunk;
    nodes.push_back(std::move(n));
  }
  return m.add_batch(std::move(nodes));
}

// A fresh memory with the GloVe embedder, or null when set-up has not converted the table.
std::unique_ptr<Memory> glove_memory(const std::string& name) {
  std::shared_ptr<embed::Embedder> glove;
  try {
    glove = embed::open_word_vectors();
  } catch (const embed::Error&) {
    return nullptr;
  }
  MemoryParams p;
  p.path = fresh_db(name);
  p.embedder = glove;
  p.durable = false;
  return std::make_unique<Memory>(p);
}

TEST(Memory, DenseRecallAgainstBruteForce) {
  const auto vs = clustered(4000, 48, 1);
  Memory m(vector_params(fresh_db("recall"), 48));
  const auto ids = add_vectors(m, vs);
  const auto queries = clustered(100, 48, 2);
  std::size_t found = 0;
  for (const auto& q : queries) {
    std::vector<std::pair<double, std::size_t>> exact;
    for (std::size_t i = 0; i < vs.size(); ++i) exact.emplace_back(-cosine(q, vs[i]), i);
    std::partial_sort(exact.begin(), exact.begin() + 10, exact.end());
    std::set<std::string> truth;
    for (int i = 0; i < 10; ++i) truth.insert(ids[exact[i].second]);
    SearchQuery sq;
    sq.vector = q;
    sq.mode = SearchMode::dense;
    sq.k = 10;
    const auto r = m.search(sq);
    ASSERT_EQ(r.hits.size(), 10u);
    for (const auto& h : r.hits) found += truth.count(h.id);
    // Scores are the true cosines, best first, up to the default f16 storage's rounding (2^-11
    // relative per component).
    EXPECT_NEAR(r.hits[0].similarity, -exact[0].first, 2e-3);
  }
  const double recall = static_cast<double>(found) / (10.0 * queries.size());
  EXPECT_GE(recall, 0.9) << "recall@10 at the default efSearch";
}

TEST(Memory, PersistsAcrossRestartAndRebuildsACorruptIndex) {
  const std::string path = fresh_db("persist");
  const auto vs = clustered(300, 16, 3);
  std::vector<std::string> ids;
  {
    Memory m(vector_params(path, 16));
    ids = add_vectors(m, vs);
  }
  const auto check = [&](Memory& m) {
    ASSERT_EQ(m.stats().indexed, vs.size());
    for (std::size_t i = 0; i < vs.size(); i += 7) {
      SearchQuery q;
      q.vector = vs[i];
      q.mode = SearchMode::dense;
      q.k = 1;
      const auto r = m.search(q);
      ASSERT_FALSE(r.hits.empty());
      EXPECT_EQ(r.hits[0].id, ids[i]);
      EXPECT_EQ(m.get(ids[i])->text, "node " + std::to_string(i));
    }
  };
  std::vector<std::string> warnings;
  auto params = vector_params(path, 16);
  params.warn = [&](const std::string& w) { warnings.push_back(w); };
  {
    Memory m(params);
    EXPECT_TRUE(warnings.empty()) << warnings.front();
    check(m);
  }
  // Damage the index file: the store rebuilds it, with a warning.
  {
    std::fstream f(path + ".usearch", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.write("garbage!", 8);
  }
  {
    Memory m(params);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("checksum"), std::string::npos) << warnings[0];
    check(m);
  }
}

TEST(Memory, CrashBetweenCommitAndIndexSaveLosesNothing) {
  const std::string path = fresh_db("crash");
  const auto vs = clustered(500, 16, 4);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child commits everything but saves the index only halfway, then dies without cleanup.
    int code = 0;
    try {
      auto p = vector_params(path, 16);
      p.durable = true;
      p.autosave_every = 0;
      Memory m(p);
      std::vector<std::vector<float>> first(vs.begin(), vs.begin() + 250);
      add_vectors(m, first);
      m.checkpoint();
      add_vectors(m, vs, 250);
      Node gone;
      gone.text = "removed after the save";
      gone.vector = vs[0];
      m.remove(m.add(gone));
    } catch (...) {
      code = 3;
    }
    std::_Exit(code);  // no destructor: the index file still holds only the first 250
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  std::vector<std::string> warnings;
  auto params = vector_params(path, 16);
  params.warn = [&](const std::string& w) { warnings.push_back(w); };
  Memory m(params);
  EXPECT_TRUE(warnings.empty()) << "caught up by replay, not rebuilt: " << warnings.front();
  EXPECT_EQ(m.stats().nodes, vs.size());
  EXPECT_EQ(m.stats().indexed, vs.size());
  for (std::size_t i = 0; i < vs.size(); ++i) {
    SearchQuery q;
    q.vector = vs[i];
    q.mode = SearchMode::dense;
    q.k = 1;
    const auto r = m.search(q);
    ASSERT_FALSE(r.hits.empty());
    EXPECT_EQ(m.get(r.hits[0].id)->text, "node " + std::to_string(i)) << i;
  }
}

TEST(Memory, FiltersAndDeletesMatchBruteForce) {
  const auto vs = clustered(1000, 24, 5);
  Memory m(vector_params(fresh_db("filter"), 24));
  const auto ids = add_vectors(m, vs);
  std::set<std::size_t> removed;
  for (std::size_t i = 0; i < vs.size(); i += 10) {
    ASSERT_TRUE(m.remove(ids[i]));
    removed.insert(i);
  }
  EXPECT_FALSE(m.remove(ids[0]));
  EXPECT_FALSE(m.get(ids[0]).has_value());
  const auto q = clustered(1, 24, 6)[0];
  SearchQuery sq;
  sq.vector = q;
  sq.mode = SearchMode::dense;
  sq.k = 20;
  sq.expansion_search = 512;
  sq.filter.tags = {"odd"};
  sq.filter.domain = "three";
  std::vector<std::pair<double, std::size_t>> exact;
  for (std::size_t i = 0; i < vs.size(); ++i) {
    if (removed.count(i) || i % 2 == 0 || i % 3 != 0) continue;
    exact.emplace_back(-cosine(q, vs[i]), i);
  }
  std::sort(exact.begin(), exact.end());
  const auto r = m.search(sq);
  ASSERT_EQ(r.hits.size(), 20u);
  std::size_t agree = 0;
  std::set<std::string> truth;
  for (int i = 0; i < 20; ++i) truth.insert(ids[exact[i].second]);
  for (const auto& h : r.hits) {
    const auto n = m.get(h.id);
    ASSERT_TRUE(n);
    EXPECT_EQ(n->tags, std::vector<std::string>{"odd"});
    EXPECT_EQ(n->domain, "three");
    agree += truth.count(h.id);
  }
  EXPECT_GE(agree, 18u);
  // Type filter and lexical search agree on what passes.
  SearchQuery facts;
  facts.text = "node";
  facts.mode = SearchMode::lexical;
  facts.k = 1000;
  facts.filter.types = {NodeType::fact};
  const auto lr = m.search(facts);
  std::size_t expected = 0;
  for (std::size_t i = 0; i < vs.size(); ++i) expected += (i % 5 == 0 && !removed.count(i));
  EXPECT_EQ(lr.hits.size(), expected);
  // An unknown tag matches nothing rather than everything.
  sq.filter = {};
  sq.filter.tags = {"no-such-tag"};
  EXPECT_TRUE(m.search(sq).hits.empty());
}

TEST(Memory, ValidityAndSupersede) {
  Memory m(vector_params(fresh_db("validity"), 4));
  Node old;
  old.text = "the capital is Bonn";
  old.vector = {1, 0, 0, 0};
  old.type = NodeType::fact;
  old.valid_from = 1000;
  const std::string old_id = m.add(old);
  Node fresh;
  fresh.text = "the capital is Berlin";
  fresh.vector = {0.9f, 0.1f, 0, 0};
  fresh.type = NodeType::fact;
  const std::string new_id = m.supersede(old_id, fresh, 5000);
  EXPECT_EQ(*m.get(old_id)->valid_to, 5000);  // closed, not deleted
  SearchQuery q;
  q.text = "capital";
  q.vector = {1, 0, 0, 0};
  q.filter.valid_at = 2000;
  auto r = m.search(q);
  ASSERT_EQ(r.hits.size(), 1u);
  EXPECT_EQ(r.hits[0].id, old_id);
  q.filter.valid_at = 6000;
  r = m.search(q);
  ASSERT_EQ(r.hits.size(), 1u);
  EXPECT_EQ(r.hits[0].id, new_id);
  const auto e = m.edges(new_id, Direction::out, "supersedes");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].dst, old_id);
}

TEST(Memory, HybridFusionIsReciprocalRankFusionOfBothLists) {
  std::unique_ptr<Memory> memory = glove_memory("hybrid");
  if (!memory) GTEST_SKIP() << "skipped: no word-vector table (scripts/setup.sh converts it)";
  Memory& m = *memory;
  const std::vector<std::string> texts = {"The Eiffel Tower is a wrought-iron lattice tower in Paris.",
                                          "Paris is the capital and most populous city of France.",
                                          "The Louvre is the world's most-visited art museum, in Paris.",
                                          "Berlin is the capital of Germany.",
                                          "A lattice is a partially ordered set in mathematics.",
                                          "Wrought iron has a very low carbon content.",
                                          "The Colosseum is an elliptical amphitheatre in Rome.",
                                          "Rome is the capital city of Italy."};
  std::vector<std::string> ids;
  for (const auto& t : texts) ids.push_back(m.add(Node{.text = t}));
  SearchQuery q;
  q.text = "iron tower in the French capital";
  q.k = 8;
  q.mode = SearchMode::dense;
  const auto dense = m.search(q);
  q.mode = SearchMode::lexical;
  const auto lexical = m.search(q);
  q.mode = SearchMode::hybrid;
  const auto hybrid = m.search(q);
  ASSERT_FALSE(lexical.hits.empty());
  ASSERT_TRUE(dense.query_has_vector);
  std::map<std::string, double> rrf;
  for (std::size_t r = 0; r < dense.hits.size(); ++r) rrf[dense.hits[r].id] += 1.0 / (60 + r + 1);
  for (std::size_t r = 0; r < lexical.hits.size(); ++r) rrf[lexical.hits[r].id] += 1.0 / (60 + r + 1);
  ASSERT_FALSE(hybrid.hits.empty());
  for (const auto& h : hybrid.hits) EXPECT_NEAR(h.score, rrf[h.id], 1e-12) << h.id;
  for (std::size_t i = 1; i < hybrid.hits.size(); ++i) EXPECT_GE(hybrid.hits[i - 1].score, hybrid.hits[i].score);
  EXPECT_EQ(hybrid.hits[0].id, ids[0]);  // in both lists near the top
  // A query of unknown words has no vector: dense is skipped, lexical still answers.
  SearchQuery oov;
  oov.text = "qzxv Colosseum";
  EXPECT_TRUE(m.search(oov).query_has_vector);
  oov.text = "qzxvw";
  const auto r = m.search(oov);
  EXPECT_FALSE(r.query_has_vector);
  EXPECT_TRUE(r.hits.empty());
}

// The in-memory lexical index against FTS5's own bm25() over the same table, as rows are added,
// removed and the memory reopened: the same rows, in the same order, with the same scores.
TEST(Memory, LexicalSearchInRamEqualsFts5Bm25) {
  const std::string path = fresh_db("lexical");
  // Zipf-like word draws, with stemming variants, diacritics, hyphens and apostrophes.
  const std::vector<std::string> vocab = {
      "connect", "connected", "connecting", "connection", "network",    "networks", "café",   "cafe",
      "naïve",   "compiler",  "compilers",  "kernel",     "well-known", "queen's",  "memory", "memories",
      "graph",   "graphs",    "search",     "searching",  "index",      "indexes",  "river",  "mountain",
      "valley",  "lake",      "tower",      "iron",       "paris",      "rome",     "token",  "tokens",
      "vector",  "vectors",   "router",     "routing",    "model",      "models"};
  std::mt19937_64 rng(7);
  auto draw = [&] {
    const double u = std::uniform_real_distribution<>(0, 1)(rng);
    return vocab[static_cast<std::size_t>(std::pow(u, 2.0) * static_cast<double>(vocab.size()))];
  };
  auto sentence = [&](std::size_t n) {
    std::string t;
    for (std::size_t i = 0; i < n; ++i) t += (i ? " " : "") + draw();
    return t;
  };
  auto make_nodes = [&](std::size_t n) {
    std::vector<Node> nodes;
    for (std::size_t i = 0; i < n; ++i) {
      Node node;
      node.text = sentence(3 + rng() % 40);
      if (rng() % 3 == 0) node.title = sentence(1 + rng() % 3);
      node.type = rng() % 4 == 0 ? NodeType::fact : NodeType::chunk;
      node.vector = {1, 0, 0, 0};
      nodes.push_back(std::move(node));
    }
    return nodes;
  };
  // The reference: FTS5 itself, with the query the memory builds (words OR-ed, hyphenated and
  // possessive words as their parts).
  auto reference = [&](const std::string& match, bool facts_only) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    const std::string sql = std::string(
                                "SELECT n.id, bm25(fts, 1.0, 1.0) AS s FROM fts JOIN nodes n ON n.key = fts.rowid "
                                "WHERE fts MATCH ?") +
                            (facts_only ? " AND n.type = 'fact'" : "") + " ORDER BY s, n.key LIMIT 20";
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK);
    sqlite3_bind_text(st, 1, match.c_str(), -1, SQLITE_TRANSIENT);
    std::vector<std::pair<std::string, double>> out;
    while (sqlite3_step(st) == SQLITE_ROW)
      out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), -sqlite3_column_double(st, 1));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  };
  auto compare = [&](const Memory& m, const char* when) {
    std::size_t compared = 0;
    for (int q = 0; q < 60; ++q) {
      std::vector<std::string> words;
      for (std::size_t i = 0; i < 1 + rng() % 10; ++i) words.push_back(draw());
      if (q % 7 == 0) words.push_back("qzxvw");  // in no row
      std::string text, match;
      std::set<std::string> seen;
      for (const auto& w : words) {
        text += w + " ";
        std::string part;
        for (char c : w + "-") {
          if (c != '-' && c != '\'') {
            part += c;
          } else if (!part.empty()) {
            if (part != "s" && seen.insert(part).second) match += (match.empty() ? "\"" : " OR \"") + part + "\"";
            part.clear();
          }
        }
      }
      const bool facts_only = q % 5 == 0;
      SearchQuery sq;
      sq.text = text;
      sq.mode = SearchMode::lexical;
      sq.k = 20;
      if (facts_only) sq.filter.types = {NodeType::fact};
      const auto got = m.search(sq).hits;
      const auto want = reference(match, facts_only);
      ASSERT_EQ(got.size(), want.size()) << when << ": " << text;
      for (std::size_t i = 0; i < got.size(); ++i) {
        ASSERT_NEAR(got[i].bm25, want[i].second, 1e-9 * std::max(1.0, std::abs(want[i].second)))
            << when << ": " << text;
        // Equal scores may come in either order; a strictly better row must come first.
        const bool tied = (i > 0 && std::abs(want[i - 1].second - want[i].second) < 1e-9) ||
                          (i + 1 < want.size() && std::abs(want[i + 1].second - want[i].second) < 1e-9);
        if (!tied) {
          EXPECT_EQ(got[i].id, want[i].first) << when << ": " << text << " rank " << i;
        }
        ++compared;
      }
    }
    EXPECT_GT(compared, 300u) << when;
  };
  std::vector<std::string> ids;
  {
    Memory m(vector_params(path, 4));
    ids = m.add_batch(make_nodes(300));
    compare(m, "after adding");
    for (std::size_t i = 0; i < ids.size(); i += 3) ASSERT_TRUE(m.remove(ids[i]));
    m.add_batch(make_nodes(60));
    compare(m, "after removing and adding");
  }
  Memory reopened(vector_params(path, 4));
  compare(reopened, "after reopening");
  MemoryParams fts = vector_params(path, 4);
  fts.lexical_in_memory = false;
  Memory through_fts5(fts);
  compare(through_fts5, "through FTS5");
}

TEST(Memory, ExpandFollowsTheHeaviestEdgesWithinCaps) {
  Memory m(vector_params(fresh_db("graph"), 4));
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i)
    ids.push_back(m.add(Node{.text = "n" + std::to_string(i), .vector = {1, float(i), 0, 0}}));
  // chain 0-1-2-3, star 0-{4,5,6,7} with increasing weights
  m.link({.src = ids[0], .dst = ids[1], .rel = "follows", .weight = 5});
  m.link({.src = ids[1], .dst = ids[2], .rel = "follows"});
  m.link({.src = ids[2], .dst = ids[3], .rel = "follows"});
  for (int i = 4; i < 8; ++i) m.link({.src = ids[0], .dst = ids[i], .rel = "mentions", .weight = float(i)});
  auto g = m.expand({ids[0]}, {.hops = 2});
  EXPECT_EQ(g.nodes.size(), 7u);  // all but node 3 (three hops away)
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    if (g.nodes[i].text == "n2") {
      EXPECT_EQ(g.depth[i], 2);
    }
    EXPECT_EQ(g.nodes[i].vector.size(), 4u);
  }
  EXPECT_EQ(g.edges.size(), 6u);  // induced: every stored edge among the seven
  g = m.expand({ids[0]}, {.hops = 1, .degree_budget = 2});
  ASSERT_EQ(g.nodes.size(), 3u);
  EXPECT_EQ(g.nodes[1].text, "n7");  // heaviest first
  EXPECT_EQ(g.nodes[2].text, "n6");
  g = m.expand({ids[3]}, {.hops = 3, .max_nodes = 3});
  EXPECT_EQ(g.nodes.size(), 3u);
  g = m.expand({ids[0]}, {.hops = 2, .relations = {"follows"}});
  EXPECT_EQ(g.nodes.size(), 3u);
  // Relinking updates instead of duplicating; pruning removes light, old edges.
  m.link({.src = ids[1], .dst = ids[2], .rel = "follows", .weight = 0.1f, .timestamp_ms = 1});
  EXPECT_EQ(m.edges(ids[1], Direction::out).size(), 1u);
  EXPECT_EQ(m.prune_edges(0.5f, 1000), 1u);
  EXPECT_TRUE(m.edges(ids[1], Direction::out).empty());
  EXPECT_TRUE(m.remove(ids[0]));
  EXPECT_TRUE(m.edges(ids[4]).empty());  // its edges went with it
}

// Expansion walks an adjacency kept in RAM: after random links, relinks, reweights, unlinks,
// prunes, node removals and supersessions it must equal a breadth-first walk over what the store
// says (`edges()`, ordered by the database), and a reopened memory (lists rebuilt from the store).
TEST(Memory, ExpandEqualsAWalkOverTheStoreThroughEveryEdgeChange) {
  const std::string path = fresh_db("graph-random");
  std::mt19937_64 rng(11);
  std::vector<std::string> live;
  float next_weight = 1;  // distinct weights: the heaviest-first order has no ties
  auto weight = [&] { return next_weight += 0.37f; };
  auto reference = [&](const Memory& m, const std::vector<std::string>& seeds, const ExpandParams& p) {
    std::vector<std::string> order;
    std::map<std::string, int> depth;
    for (const auto& s : seeds)
      if (!depth.count(s) && order.size() < p.max_nodes) {
        depth[s] = 0;
        order.push_back(s);
      }
    std::size_t begin = 0;
    for (int hop = 1; hop <= p.hops && order.size() < p.max_nodes; ++hop) {
      const std::size_t end = order.size();
      for (std::size_t i = begin; i < end && order.size() < p.max_nodes; ++i) {
        auto es = m.edges(order[i]);
        std::stable_sort(es.begin(), es.end(), [](const Edge& a, const Edge& b) {
          return a.weight != b.weight ? a.weight > b.weight : a.timestamp_ms > b.timestamp_ms;
        });
        std::size_t followed = 0;
        for (const auto& e : es) {
          if (followed >= p.degree_budget || order.size() >= p.max_nodes) break;
          if (e.weight < p.min_weight) continue;
          if (!p.relations.empty() && std::find(p.relations.begin(), p.relations.end(), e.rel) == p.relations.end())
            continue;
          ++followed;
          const std::string& other = e.src == order[i] ? e.dst : e.src;
          if (depth.count(other)) continue;
          depth[other] = hop;
          order.push_back(other);
        }
      }
      begin = end;
    }
    std::map<std::string, Edge> inside;
    for (const auto& id : order)
      for (const auto& e : m.edges(id, Direction::out))
        if (depth.count(e.dst)) inside.emplace(e.id, e);
    return std::make_pair(order, inside);
  };
  auto check = [&](const Memory& m, const char* when) {
    for (int q = 0; q < 20; ++q) {
      std::vector<std::string> seeds;
      for (int i = 0; i < 1 + q % 3; ++i) seeds.push_back(live[rng() % live.size()]);
      ExpandParams p;
      p.hops = 1 + q % 3;
      p.degree_budget = 2 + q % 5;
      p.max_nodes = 4 + q % 20;
      if (q % 4 == 1) p.relations = {"cites", "nowhere"};
      if (q % 5 == 2) p.min_weight = next_weight / 2;
      const Subgraph g = m.expand(seeds, p);
      const auto [order, inside] = reference(m, seeds, p);
      std::vector<std::string> got;
      for (const auto& n : g.nodes) got.push_back(n.id);
      ASSERT_EQ(got, order) << when << ", query " << q;
      // Every edge among the nodes, each column as the store has it (the expansion reads them from RAM).
      ASSERT_EQ(g.edges.size(), inside.size()) << when << ", query " << q;
      for (const auto& e : g.edges) {
        const auto it = inside.find(e.id);
        ASSERT_NE(it, inside.end()) << when << ", query " << q << ": edge " << e.id;
        const Edge& want = it->second;
        EXPECT_EQ(e.src, want.src);
        EXPECT_EQ(e.dst, want.dst);
        EXPECT_EQ(e.rel, want.rel);
        EXPECT_EQ(e.weight, want.weight);
        EXPECT_EQ(e.timestamp_ms, want.timestamp_ms);
        EXPECT_EQ(e.created_by, want.created_by);
        EXPECT_EQ(e.confidence, want.confidence);
      }
      // Each node as the store has it; without rows, the same walk with what graph scoring reads.
      ExpandParams light = p;
      light.full_rows = false;
      const Subgraph l = m.expand(seeds, light);
      ASSERT_EQ(l.nodes.size(), g.nodes.size()) << when << ", query " << q;
      EXPECT_EQ(l.depth, g.depth) << when << ", query " << q;
      ASSERT_EQ(l.edges.size(), g.edges.size()) << when << ", query " << q;
      for (std::size_t i = 0; i < l.edges.size(); ++i) EXPECT_EQ(l.edges[i].id, g.edges[i].id);
      std::vector<std::string> asked = got;
      asked.push_back("no-such-node");
      if (!got.empty()) asked.push_back(got.front());  // asked twice
      const auto rows = m.get_many(asked, true);
      ASSERT_EQ(rows.size(), asked.size());
      EXPECT_FALSE(rows[got.size()].has_value());
      for (std::size_t i = 0; i < g.nodes.size(); ++i) {
        const Node& full = g.nodes[i];
        const auto stored = m.get(full.id, true);
        ASSERT_TRUE(stored.has_value());
        ASSERT_TRUE(rows[i].has_value());
        for (const Node* n : {&full, &*rows[i]}) {
          EXPECT_EQ(n->text, stored->text);
          EXPECT_EQ(n->metadata, stored->metadata);
          EXPECT_EQ(n->vector, stored->vector);
        }
        const Node& thin = l.nodes[i];
        EXPECT_EQ(thin.id, stored->id);
        EXPECT_EQ(thin.type, stored->type);
        EXPECT_EQ(thin.timestamp_ms, stored->timestamp_ms);
        EXPECT_EQ(thin.confidence, stored->confidence);
        EXPECT_EQ(thin.valid_from, stored->valid_from);
        EXPECT_EQ(thin.valid_to, stored->valid_to);
        EXPECT_EQ(thin.vector, stored->vector);
        EXPECT_TRUE(thin.text.empty() && thin.metadata == "{}") << "rows were read";
      }
      if (!got.empty()) {
        EXPECT_EQ(rows.back()->text, rows.front()->text);
      }
    }
  };
  {
    Memory m(vector_params(path, 4));
    // Distinct vectors, times and confidences, and some nodes without a vector.
    for (int i = 0; i < 60; ++i) {
      Node n{.type = i % 3 ? NodeType::chunk : NodeType::fact,
             .text = "n" + std::to_string(i),
             .timestamp_ms = 1'000'000 + 977 * i,
             .confidence = (i % 10) / 10.0,
             .metadata = R"({"i": )" + std::to_string(i) + "}"};
      if (i % 7) n.vector = {1, static_cast<float>(i), static_cast<float>(i % 5), -0.5f};
      live.push_back(m.add(std::move(n)));
    }
    const char* rels[] = {"cites", "mentions", "follows"};
    std::vector<std::string> edge_ids;
    for (int i = 0; i < 300; ++i) {
      const auto a = live[rng() % live.size()], b = live[rng() % live.size()];
      if (a != b)
        edge_ids.push_back(m.link({.src = a,
                                   .dst = b,
                                   .rel = rels[rng() % 3],
                                   .weight = weight(),
                                   .created_by = i % 2 ? "router" : "ingest",
                                   .confidence = static_cast<float>(i % 10) / 10.0f}));
    }
    check(m, "after linking");
    for (int i = 0; i < 40; ++i) m.set_weight(edge_ids[rng() % edge_ids.size()], weight());
    for (int i = 0; i < 30; ++i) m.unlink(edge_ids[rng() % edge_ids.size()]);
    check(m, "after reweighting and unlinking");
    m.prune_edges(next_weight / 3, std::numeric_limits<int64_t>::max());
    for (int i = 0; i < 5; ++i) {
      const std::size_t at = rng() % live.size();
      ASSERT_TRUE(m.remove(live[at]));
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(at));
    }
    live.push_back(m.supersede(live[0], Node{.text = "n0, revised", .vector = {1, 0, 0, 0}}));
    std::vector<Node> batch;
    for (int i = 0; i < 5; ++i)
      batch.push_back(Node{.id = "batch-" + std::to_string(i), .text = "b", .vector = {1, 0, 0, 0}});
    m.add_batch(std::move(batch), {{.src = "batch-0", .dst = live[1], .rel = "cites", .weight = weight()},
                                   {.src = live[2], .dst = "batch-1", .rel = "cites", .weight = weight()}});
    for (int i = 0; i < 5; ++i) live.push_back("batch-" + std::to_string(i));
    check(m, "after pruning, removing, superseding and a batch");
  }
  {
    Memory reopened(vector_params(path, 4));
    check(reopened, "after reopening");
  }
  MemoryParams from_store = vector_params(path, 4);
  from_store.vectors_in_memory = false;
  Memory reopened(from_store);
  check(reopened, "after reopening, vectors read from the store");
}

TEST(Memory, ConcurrentSearchesDuringWrites) {
  const auto vs = clustered(3000, 16, 7);
  Memory m(vector_params(fresh_db("concurrent"), 16));
  std::vector<std::vector<float>> first(vs.begin(), vs.begin() + 1000);
  add_vectors(m, first);
  std::atomic<bool> stop{false};
  std::atomic<int> searches{0}, failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      std::size_t i = static_cast<std::size_t>(t);
      while (!stop) {
        SearchQuery q;
        q.vector = vs[i++ % 1000];
        q.text = "node";
        q.k = 5;
        try {
          if (m.search(q).hits.size() != 5) ++failures;
        } catch (...) {
          ++failures;
        }
        ++searches;
      }
    });
  }
  for (std::size_t b = 1000; b < vs.size(); b += 100) {
    std::vector<Node> batch;
    for (std::size_t i = b; i < b + 100; ++i)
      batch.push_back(Node{.text = "node " + std::to_string(i), .vector = vs[i]});
    m.add_batch(std::move(batch));
  }
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(failures, 0);
  EXPECT_GT(searches, 0);
  EXPECT_EQ(m.stats().indexed, vs.size());
  EXPECT_EQ(m.stats().nodes, vs.size());
}

TEST(Memory, FindsNearDuplicates) {
  Memory m(vector_params(fresh_db("dedup"), 4));
  const std::string text =
      "The quick brown fox jumps over the lazy dog while the farmer watches from the old wooden fence near the barn. "
      "Later that evening the rain came down over the hills, the river rose, and the animals gathered in the shed "
      "where the warm straw kept them dry until the morning sun returned.";
  const std::string id = m.add(Node{.text = text, .vector = {1, 0, 0, 0}});
  std::string near = text;
  near.replace(near.find("old"), 3, "new");
  EXPECT_EQ(m.find_duplicate(near, {}), id);
  EXPECT_EQ(m.find_duplicate(near, {1, 0.01f, 0, 0}), id);
  EXPECT_EQ(m.find_duplicate(near, {0, 1, 0, 0}), std::nullopt);  // same words, other meaning
  EXPECT_EQ(m.find_duplicate("A completely different sentence about ships and the sea at night.", {}), std::nullopt);
}

TEST(Memory, BadInputIsRejectedAndChangesNothing) {
  const std::string path = fresh_db("bad");
  Memory m(vector_params(path, 4));
  const std::string a = m.add(Node{.text = "a", .vector = {1, 0, 0, 0}});
  const auto nodes_before = m.stats().nodes;
  EXPECT_THROW(m.add(Node{.text = "wrong dim", .vector = {1, 0, 0}}), Error);
  EXPECT_THROW(m.add(Node{.text = "nan", .vector = {NAN, 0, 0, 0}}), Error);
  EXPECT_THROW(m.add(Node{.text = "zero", .vector = {0, 0, 0, 0}}), Error);
  EXPECT_THROW(m.add(Node{.text = "", .vector = {1, 0, 0, 0}}), Error);
  EXPECT_THROW(m.add(Node{.text = "bad \xFF utf8", .vector = {1, 0, 0, 0}}), Error);
  EXPECT_THROW(m.add(Node{.text = "meta", .vector = {1, 0, 0, 0}, .metadata = "{not json"}), Error);
  const std::string deep = "{\"a\": " + std::string(80000, '[') + std::string(80000, ']') + "}";
  EXPECT_THROW(m.add(Node{.text = "deep meta", .vector = {1, 0, 0, 0}, .metadata = deep}), Error);
  EXPECT_THROW(m.add(Node{.text = "conf", .vector = {1, 0, 0, 0}, .confidence = 2}), Error);
  EXPECT_THROW(m.add(Node{.id = a, .text = "duplicate id", .vector = {1, 0, 0, 0}}), Error);
  try {  // the code says whose move it is: SQLite's unique-key violation, not a search of its message
    m.add(Node{.id = a, .text = "duplicate id", .vector = {1, 0, 0, 0}});
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::conflict) << e.what();
  }
  try {
    m.add(Node{.text = "wrong dim", .vector = {1, 0, 0}});
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << e.what();
  }
  // A batch with one bad node adds none of them.
  std::vector<Node> batch = {Node{.text = "fine", .vector = {0, 1, 0, 0}}, Node{.text = "bad", .vector = {1}}};
  EXPECT_THROW(m.add_batch(batch), Error);
  // An edge to an unknown node fails the whole batch, nodes included.
  EXPECT_THROW(
      m.add_batch({Node{.text = "fine", .vector = {0, 1, 0, 0}}}, {Edge{.src = a, .dst = "nope", .rel = "cites"}}),
      Error);
  EXPECT_THROW(m.link({.src = a, .dst = "missing", .rel = "cites"}), Error);
  EXPECT_THROW(m.link({.src = a, .dst = a, .rel = "cites"}), Error);
  EXPECT_THROW(m.link({.src = a, .dst = a, .rel = ""}), Error);
  SearchQuery q;
  q.vector = {1, 0};
  EXPECT_THROW(m.search(q), Error);
  q.vector = {1, 0, 0, 0};
  q.k = 0;
  EXPECT_THROW(m.search(q), Error);
  EXPECT_EQ(m.stats().nodes, nodes_before);
  EXPECT_EQ(m.stats().indexed, nodes_before);
  EXPECT_THROW(parse_node_type("thing"), Error);
  EXPECT_THROW(m.expand({"unknown"}), Error);
}

TEST(Memory, RefusesNewerSchemasAndOtherSpaces) {
  const std::string path = fresh_db("schema");
  { Memory m(vector_params(path, 4)); }
  EXPECT_THROW(Memory(vector_params(path, 8)), Error);  // another dimension
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  try {
    Memory m(vector_params(path, 4));
    FAIL() << "opened a newer schema";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
}

const std::string kBabbage =
    "Charles Babbage was an English polymath, a mathematician, philosopher, inventor and mechanical engineer who "
    "originated the concept of a digital programmable computer and designed the Difference Engine and later the "
    "Analytical Engine, whose plans were never completed in his lifetime.";

TEST(Ingest, IdempotentWithChunksAndMentionEdges) {
  std::unique_ptr<Memory> memory = glove_memory("ingest");
  if (!memory) GTEST_SKIP() << "skipped: no word-vector table (scripts/setup.sh converts it)";
  Memory& m = *memory;
  const std::string jsonl = test::write_file(
      "corpus.jsonl",
      R"({"id": "a", "title": "Ada Lovelace", "text": "Ada Lovelace wrote about the Analytical Engine."})"
      "\n"
      R"({"id": "b", "title": "Analytical Engine", "text": "The Analytical Engine was designed by Charles Babbage."})"
      "\n"
      R"({"id": "c", "title": "Charles Babbage", "text": ")" +
          kBabbage +
          R"("})"
          "\n"
          R"({"id": "d", "title": "List of mathematicians", "text": ")" +
          kBabbage +
          R"("})"
          "\n"
          R"({"id": "e", "title": "Charles Babbage", "text": ")" +
          kBabbage +
          R"( He died in 1871."})"
          "\n");
  std::string long_text;
  for (int i = 0; i < 300; ++i) long_text += "word" + std::to_string(i) + " ";
  const std::string txt = test::write_file("long.txt", long_text);
  IngestParams params;
  params.chunk_tokens = 100;
  params.overlap_tokens = 20;
  const auto first = ingest(m, {jsonl, txt}, params);
  EXPECT_EQ(first.files, 2u);
  EXPECT_EQ(first.documents, 5u);  // a, b, c, d (near-duplicate of c under another title), long.txt
  EXPECT_EQ(first.near_duplicates, 1u);
  EXPECT_EQ(first.duplicates, 1u);  // e: c again under the same title
  EXPECT_EQ(first.chunks, 4u);      // 300 words, stride 80: [0,100) [80,180) [160,260) [240,300)
  EXPECT_EQ(first.follows, 3u);
  // a→b, b→c, c→b, d→c, d→b ("Charles Babbage" and "Analytical Engine"); a title in its own text is not.
  EXPECT_EQ(first.mentions, 5u);
  const auto stats = m.stats();
  EXPECT_EQ(stats.nodes, 4u + 1u + 4u);
  SearchQuery q;
  q.text = "Babbage";
  q.mode = SearchMode::lexical;
  EXPECT_EQ(m.search(q).hits.size(), 3u);
  const auto again = ingest(m, {jsonl, txt}, params);
  EXPECT_EQ(again.documents, 0u);
  EXPECT_EQ(again.skipped, 6u);
  EXPECT_EQ(m.stats().nodes, stats.nodes);
  EXPECT_EQ(m.stats().edges, stats.edges);
  // A malformed line rejects its file before anything is written.
  const std::string bad = test::write_file("bad.jsonl", "{\"text\": \"fine\"}\n{not json\n");
  EXPECT_THROW(ingest(m, {bad}), Error);
  EXPECT_EQ(m.stats().nodes, stats.nodes);
  const std::string deep = test::write_file(
      "deep.jsonl", "{\"text\": \"fine\", \"meta\": " + std::string(80000, '[') + std::string(80000, ']') + "}\n");
  EXPECT_THROW(ingest(m, {deep}), Error);
  EXPECT_EQ(m.stats().nodes, stats.nodes);
  EXPECT_THROW(ingest(m, {test::write_file("x.pdf", "%PDF")}), Error);
}

TEST(TextMatch, AhoCorasickAgreesWithBruteForce) {
  std::mt19937 rng(9);
  const std::string alphabet = "ab ";
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<std::string> patterns;
    for (int p = 0; p < 6; ++p) {
      std::string s;
      const int len = 4 + static_cast<int>(rng() % 4);
      for (int i = 0; i < len; ++i) s += "ab"[rng() % 2];
      patterns.push_back(s);
    }
    std::string text;
    for (int i = 0; i < 60; ++i) text += alphabet[rng() % 3];
    const detail::AhoCorasick ac(patterns);
    const auto found = ac.find(text);
    std::set<std::size_t> expected;
    for (std::size_t p = 0; p < patterns.size(); ++p) {
      bool first_of_equal = std::find(patterns.begin(), patterns.end(), patterns[p]) - patterns.begin() == long(p);
      for (std::size_t at = text.find(patterns[p]); first_of_equal && at != std::string::npos;
           at = text.find(patterns[p], at + 1)) {
        const bool left = at == 0 || text[at - 1] == ' ';
        const bool right = at + patterns[p].size() == text.size() || text[at + patterns[p].size()] == ' ';
        if (left && right) expected.insert(p);
      }
    }
    EXPECT_EQ(std::set<std::size_t>(found.begin(), found.end()), expected) << text;
  }
}

TEST(TextMatch, MinHashEstimatesJaccard) {
  std::vector<std::string> a, b;
  for (int i = 0; i < 200; ++i) a.push_back("w" + std::to_string(i));
  b = a;
  for (int i = 150; i < 200; ++i) b[i] = "x" + std::to_string(i);
  // Exact Jaccard of the 3-shingle sets.
  const auto shingles = [](const std::vector<std::string>& t) {
    std::set<std::string> s;
    for (std::size_t i = 0; i + 2 < t.size(); ++i) s.insert(t[i] + " " + t[i + 1] + " " + t[i + 2]);
    return s;
  };
  const auto sa = shingles(a), sb = shingles(b);
  std::size_t inter = 0;
  for (const auto& s : sa) inter += sb.count(s);
  const double exact = static_cast<double>(inter) / (sa.size() + sb.size() - inter);
  EXPECT_NEAR(detail::jaccard_estimate(detail::minhash(a), detail::minhash(b)), exact, 0.15);
  EXPECT_EQ(detail::jaccard_estimate(detail::minhash(a), detail::minhash(a)), 1.0);
}

}  // namespace
}  // namespace ruvllm::memory
