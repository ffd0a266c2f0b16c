// The retrieval stage: memory's search and expansion faithfully turned into attention's input.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "fixtures.h"
#include "ruvllm/embed.h"
#include "ruvllm/pipeline.h"

namespace ruvllm::pipeline {
namespace {

std::unique_ptr<memory::Memory> bridge_memory() {
  std::shared_ptr<embed::Embedder> glove;
  try {
    glove = embed::open_word_vectors();
  } catch (const embed::Error&) {
    return nullptr;
  }
  // Per test: ctest runs the tests of this file as parallel processes, and one removing the files
  // another has open failed it with "disk I/O error".
  const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  const std::string db = test::tmp_dir() + "/pipeline-retrieve-" + name + ".sqlite";
  for (const char* suffix : {"", "-wal", "-shm", ".usearch"}) std::filesystem::remove(db + suffix);
  memory::MemoryParams p;
  p.path = db;
  p.embedder = glove;
  p.durable = false;
  auto m = std::make_unique<memory::Memory>(p);
  // "Kiss and Tell" mentions "Shirley Temple" by title: ingest joins them with a `mentions` edge.
  const std::string corpus = test::write_file(
      "bridge-" + name + ".jsonl",
      R"({"id": "kt", "title": "Kiss and Tell", "text": "Kiss and Tell is a 1945 American comedy film starring Shirley Temple as Corliss Archer."})"
      "\n"
      R"({"id": "st", "title": "Shirley Temple", "text": "Shirley Temple Black was an actress who later served as United States ambassador to Ghana."})"
      "\n"
      R"({"id": "gh", "title": "Ghana", "text": "Ghana is a country in West Africa on the Gulf of Guinea."})"
      "\n"
      R"({"id": "cf", "title": "Comedy film", "text": "A comedy film is a genre of film that emphasises humour."})"
      "\n");
  memory::ingest(*m, {corpus});
  return m;
}

TEST(Retrieve, FillsTheAttentionInputFromSearchAndExpansion) {
  auto memory = bridge_memory();
  if (!memory) GTEST_SKIP() << "skipped: no word-vector table (scripts/setup.sh converts it)";
  RetrieveParams params;
  params.mode = memory::SearchMode::lexical;
  params.seeds = 1;
  const LabelledQuestion question{"Which 1945 comedy film Kiss and Tell starred whom", {"kt", "st"}};
  const LabelledRetrieval lr = retrieve_labelled(*memory, question, params);
  const Retrieved& r = lr.retrieved;
  ASSERT_FALSE(r.search.hits.empty());
  ASSERT_EQ(r.graph.nodes.size(), r.subgraph.nodes.size());
  EXPECT_EQ(r.graph.query.size(), memory->embedder()->dimension());
  std::map<std::string, std::size_t> at;
  for (std::size_t i = 0; i < r.subgraph.nodes.size(); ++i) at[r.subgraph.nodes[i].id] = i;
  // Every candidate inside the subgraph carries its rank; exactly the first `seeds` are seeds.
  std::size_t seeds = 0;
  for (std::size_t rank = 0; rank < r.search.hits.size(); ++rank) {
    const auto it = at.find(r.search.hits[rank].id);
    if (it == at.end()) continue;
    const auto& node = r.graph.nodes[it->second];
    EXPECT_EQ(node.retrieval_rank, static_cast<int>(rank));
    EXPECT_EQ(node.lexical_rank, r.search.hits[rank].lexical_rank);
    EXPECT_EQ(node.seed, rank < params.seeds);
    seeds += node.seed;
  }
  EXPECT_EQ(seeds, 1u);
  for (std::size_t i = 0; i < r.graph.nodes.size(); ++i) {
    EXPECT_EQ(r.graph.nodes[i].depth, r.subgraph.depth[i]);
    EXPECT_EQ(r.graph.nodes[i].embedding, r.subgraph.nodes[i].vector);
  }
  ASSERT_EQ(r.graph.edges.size(), r.subgraph.edges.size());
  for (std::size_t e = 0; e < r.graph.edges.size(); ++e) {
    EXPECT_EQ(r.subgraph.nodes[r.graph.edges[e].src].id, r.subgraph.edges[e].src);
    EXPECT_EQ(r.subgraph.nodes[r.graph.edges[e].dst].id, r.subgraph.edges[e].dst);
    EXPECT_EQ(r.graph.edges[e].rel, r.subgraph.edges[e].rel);
  }
  // The seed is Kiss and Tell; Shirley Temple is its neighbour through `mentions`, and both are gold.
  EXPECT_EQ(lr.node_sources[0], "kt");
  bool bridge = false;
  for (const auto& e : r.graph.edges) {
    bridge = bridge || (lr.node_sources[e.src] == "kt" && lr.node_sources[e.dst] == "st" && e.rel == "mentions");
  }
  EXPECT_TRUE(bridge);
  EXPECT_EQ(lr.gold_nodes.size(), 2u);
  // Ranked with the gold nodes first, recall@2 is 1; with them last, 0.
  std::vector<double> score(lr.node_sources.size(), 0.0);
  for (std::size_t g : lr.gold_nodes) score[g] = 1;
  EXPECT_DOUBLE_EQ(source_recall(lr, question.gold_sources, score, 2), 1.0);
  for (double& s : score) s = 1 - s;
  if (lr.node_sources.size() >= 4) {
    EXPECT_DOUBLE_EQ(source_recall(lr, question.gold_sources, score, 2), 0.0);
  }
  EXPECT_THROW(source_recall(lr, question.gold_sources, {1.0}, 2), memory::Error);

  EXPECT_THROW(retrieve(*memory, "x", {.seeds = 0}), memory::Error);
  EXPECT_THROW(retrieve(*memory, "x", {.candidates = 4, .seeds = 5}), memory::Error);
  EXPECT_THROW(retrieve(*memory, "bad \xff utf-8"), std::runtime_error);
}

TEST(Retrieve, SourceRecallCountsEachSourceOnce) {
  LabelledRetrieval r;
  r.node_sources = {"a", "a", "", "b", "c"};
  // Order by score: node 0 (a), 1 (a again: not counted), 2 (no source: skipped), 4 (c), 3 (b).
  const std::vector<double> score = {5, 4, 3, 1, 2};
  EXPECT_DOUBLE_EQ(source_recall(r, {"a", "b"}, score, 1), 0.5);
  EXPECT_DOUBLE_EQ(source_recall(r, {"a", "b"}, score, 2), 0.5);  // a, c
  EXPECT_DOUBLE_EQ(source_recall(r, {"a", "b"}, score, 3), 1.0);  // a, c, b
  EXPECT_DOUBLE_EQ(source_recall(r, {}, score, 3), 0.0);
}

TEST(Retrieve, EmbeddingInsideTheSearchEqualsEmbeddingFirst) {
  auto memory = bridge_memory();
  if (!memory) GTEST_SKIP() << "skipped: no word-vector table (scripts/setup.sh converts it)";
  const std::string query = "Which comedy film starred Shirley Temple, later ambassador to Ghana?";
  const embed::Embedding first = memory->embedder()->embed(query);
  for (const auto mode : {memory::SearchMode::hybrid, memory::SearchMode::dense, memory::SearchMode::lexical}) {
    RetrieveParams params;
    params.mode = mode;
    params.seeds = 2;
    const Retrieved given = retrieve(*memory, query, first.vector, params);
    const Retrieved inside = retrieve(*memory, query, params);
    // The search made the same embedding the caller would have made, and reports it.
    EXPECT_EQ(inside.search.query_embedding.vector, first.vector);
    EXPECT_EQ(inside.search.query_embedding.tokens, first.tokens);
    EXPECT_EQ(inside.search.query_embedding.known, first.known);
    EXPECT_TRUE(given.search.query_embedding.vector.empty());  // the caller's vector: nothing made
    EXPECT_EQ(inside.graph.query, given.graph.query);
    ASSERT_EQ(inside.search.hits.size(), given.search.hits.size());
    for (std::size_t i = 0; i < given.search.hits.size(); ++i) {
      EXPECT_EQ(inside.search.hits[i].id, given.search.hits[i].id);
      EXPECT_EQ(inside.search.hits[i].score, given.search.hits[i].score);
    }
    ASSERT_EQ(inside.subgraph.nodes.size(), given.subgraph.nodes.size());
    for (std::size_t i = 0; i < given.subgraph.nodes.size(); ++i)
      EXPECT_EQ(inside.subgraph.nodes[i].id, given.subgraph.nodes[i].id);
    EXPECT_EQ(inside.subgraph.edges.size(), given.subgraph.edges.size());
  }
}

}  // namespace
}  // namespace ruvllm::pipeline
