// What the router commands read: an outcome set's splits and evidence rows, with their queries
// embedded through the GloVe table, and the --data and --context-bins options.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "ruvllm/embed.h"
#include "ruvllm/router.h"

namespace ruvllm::cli {

struct DataOptions {
  std::string data, words, query_view = "last-block";
};

void add_data_options(CLI::App* cmd, DataOptions& o, bool required = true);  // --data, --words, --query-view
std::unique_ptr<embed::Embedder> open_embedder(const DataOptions& d);
// `d.data`/<split>.jsonl, each query as --query-view says embedded; throws for a bad row or view.
std::vector<router::Outcome> load_split(const DataOptions& d, const router::Ladder& ladder, const std::string& split,
                                        const embed::Embedder& embedder);
// Evidence rows (`router evidence`): model-free settings for the context and retrieval heads.
std::vector<router::Outcome> load_evidence(const std::vector<std::string>& files, const router::Ladder& ladder,
                                           const embed::Embedder& embedder);
// --context-bins: increasing positive token counts, comma-separated (1 to 16); throws otherwise.
std::vector<int> parse_bins(const std::string& text);
std::string default_bins();  // the ladder's default bins in that form

}  // namespace ruvllm::cli
