// What a retrieval strategy offers the context builder, and what retrieval tells the router.
#pragma once

#include <deque>
#include <limits>
#include <string>
#include <vector>

#include "ruvllm/pipeline.h"

namespace ruvllm::pipeline::detail {

struct Candidates {
  bool more = false;  // graph: subgraph nodes beyond the `offered` best were left out
  std::vector<attention::Candidate> candidates;
  std::vector<ContextBlock> blocks;       // the same nodes, for the response
  std::vector<const memory::Node*> from;  // into `owned` or the subgraph: metadata for evidence
  std::deque<memory::Node> owned;         // rows read from the store (hits outside the subgraph, or a
                                          // subgraph expanded without rows)
};

// The context candidates a retrieval strategy gives: none; the dense top-`want` (the naive flow's
// search: its own, since a dense hit need not be among the fused candidates); the fused hits
// (≤ want); or the `offered` best subgraph nodes by graph score, in the order the context builder
// reads them (it cuts to max_docs). `r.search` is that dense search already when the flow is naive.
// Rows the subgraph does not hold are read in one statement; a node removed since the search
// leaves a gap.
Candidates gather(const memory::Memory& memory, const Retrieved& r, const std::vector<double>& scores,
                  router::Retrieval strategy, std::size_t want, const std::string& query,
                  const std::vector<float>& query_vector, bool search_is_dense,
                  std::size_t offered = std::numeric_limits<std::size_t>::max());

// The router's retrieval signals: every hit's dense similarity (0 for lexical-only hits), the
// seeds' vectors, the attention's entropy and depth, and how many of the top 10 both searches found.
router::RetrievalSignals retrieval_signals(const Retrieved& r, const std::vector<float>& query_vector,
                                           const attention::Scores& sc);

}  // namespace ruvllm::pipeline::detail
