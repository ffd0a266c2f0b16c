// What the configuration implies beyond its keys: defaults derived from other keys, and what only
// the disk can say about the files it names.
#include <filesystem>

#include "ruvllm/pipeline.h"

namespace ruvllm::pipeline {

namespace fs = std::filesystem;

void fill_derived_defaults(Config& c) {
  if (c.memory_path.empty()) c.memory_path = (fs::path(c.data_dir) / "memory.sqlite").string();
  if (c.request_log.empty()) c.request_log = (fs::path(c.data_dir) / "requests.jsonl").string();
  if (c.default_model.empty() && !c.models.empty()) c.default_model = c.models.back().name;
}

std::vector<ConfigIssue> check_config(const Config& c) {
  std::vector<ConfigIssue> issues;
  for (std::size_t i = 0; i < c.models.size(); ++i) {
    const std::string key = "model[" + std::to_string(i) + "].path";
    if (!fs::exists(c.models[i].path)) {
      issues.push_back({key, c.models[i].path + " does not exist"});
      continue;
    }
    try {
      (void)llm::inspect_model(c.models[i].path);
    } catch (const std::exception& e) {
      issues.push_back({key, e.what()});
    }
  }
  if (!c.router_file.empty()) {
    try {
      const auto r = router::Router::load(c.router_file);
      for (const auto& name : r.ladder().models) {
        auto it = c.router_models.find(name);
        const std::string& target = it == c.router_models.end() ? name : it->second;
        bool on_ladder = false;
        for (const auto& m : c.models) on_ladder |= m.name == target;
        if (!on_ladder)
          issues.push_back({"router.models", "the router's model '" + name +
                                                 "' maps to no [[model]]: add router.models.\"" + name +
                                                 "\" = \"<model name>\""});
      }
    } catch (const std::exception& e) {
      issues.push_back({"router.file", e.what()});
    }
  }
  if (!c.attention_file.empty()) {
    try {
      (void)attention::AttentionModel::load(c.attention_file);
    } catch (const std::exception& e) {
      issues.push_back({"attention.file", e.what()});
    }
  }
  if (!c.word_vectors.empty() && !fs::exists(c.word_vectors))
    issues.push_back({"memory.word_vectors", c.word_vectors + " does not exist"});
  return issues;
}

}  // namespace ruvllm::pipeline
