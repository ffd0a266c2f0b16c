// The outcome sets of the router commands (router_data.h).
#include "router_data.h"

#include <cstdio>
#include <stdexcept>

#include "progress.h"
#include "ruvllm/pipeline.h"

namespace ruvllm::cli {
namespace {

// What of a prompt is the query: all of it, or its last block (few-shot prompts end with the
// question after a blank line).
std::string query_view(const std::string& text, const std::string& view) {
  if (view == "whole") return text;
  if (view != "last-block") throw std::runtime_error("--query-view must be last-block or whole");
  const std::size_t at = text.rfind("\n\n");
  if (at == std::string::npos) return text;
  const std::string last = text.substr(at + 2);
  return last.find_first_not_of(" \t\r\n") == std::string::npos ? text : last;
}

// Fills each outcome's query signals (text view, embedding, token counts) through the embedder.
void embed_queries(std::vector<router::Outcome>& outcomes, const embed::Embedder& embedder, const std::string& view) {
  ProgressBar bar;
  std::size_t done = 0;
  for (auto& o : outcomes) {
    o.signals.query = pipeline::query_signals(embedder, query_view(o.signals.query.text, view));
    bar(static_cast<double>(++done) / static_cast<double>(outcomes.size()));
  }
}

}  // namespace

void add_data_options(CLI::App* cmd, DataOptions& o, bool required) {
  auto* opt = cmd->add_option("--data", o.data, "Outcome set: a folder with models.json and <split>.jsonl");
  if (required) opt->required();
  cmd->add_option("--words", o.words, "Word-vector table for query features (default: the GloVe table)");
  cmd->add_option("--query-view", o.query_view,
                  "What of a prompt is the query: last-block (after the last blank line: few-shot prompts end "
                  "with the question) or whole")
      ->capture_default_str();
}

std::vector<router::Outcome> load_split(const DataOptions& d, const router::Ladder& ladder, const std::string& split,
                                        const embed::Embedder& embedder) {
  auto outcomes = router::load_outcomes(d.data + "/" + split + ".jsonl", ladder);
  std::fprintf(stderr, "%s: %zu outcomes; embedding queries\n", split.c_str(), outcomes.size());
  embed_queries(outcomes, embedder, d.query_view);
  return outcomes;
}

std::unique_ptr<embed::Embedder> open_embedder(const DataOptions& d) {
  embed::WordVectorParams p;
  p.path = d.words;
  return embed::open_word_vectors(p);
}

// Evidence rows (`router evidence`): model-free settings for the context and retrieval heads.
std::vector<router::Outcome> load_evidence(const std::vector<std::string>& files, const router::Ladder& ladder,
                                           const embed::Embedder& embedder) {
  std::vector<router::Outcome> all;
  for (const auto& f : files) {
    auto rows = router::load_outcomes(f, ladder);
    std::fprintf(stderr, "%s: %zu evidence rows; embedding queries\n", f.c_str(), rows.size());
    embed_queries(rows, embedder, "whole");
    all.insert(all.end(), std::make_move_iterator(rows.begin()), std::make_move_iterator(rows.end()));
  }
  return all;
}

std::vector<int> parse_bins(const std::string& text) {
  std::vector<int> bins;
  std::size_t at = 0;
  while (at <= text.size()) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    std::size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v <= 0 || (!bins.empty() && v <= bins.back())) {
      throw std::runtime_error("--context-bins: increasing positive token counts, comma-separated (got '" + text +
                               "')");
    }
    bins.push_back(v);
    at = comma + 1;
  }
  if (bins.empty() || bins.size() > 16) throw std::runtime_error("--context-bins: 1 to 16 bins");
  return bins;
}

std::string default_bins() {
  std::string out;
  for (int b : router::Ladder{}.context_bins) out += (out.empty() ? "" : ",") + std::to_string(b);
  return out;
}

}  // namespace ruvllm::cli
