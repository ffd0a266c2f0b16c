// The model ladder from TOML: [[model]] tables. The one parser of them: `ruvllm generate --ladder`
// reads a ladder file with it, and ruvllm.toml's loader (src/config) its [[model]] tables.
#include <toml++/toml.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "ruvllm/llm.h"

namespace ruvllm::llm {
namespace {

namespace fs = std::filesystem;

ModelSpec read_model(const toml::table& t, const std::string& where, int index, std::vector<LadderIssue>& issues) {
  ModelSpec spec;
  spec.tier = index;
  for (const auto& [k, v] : t) {
    const std::string key = where + "." + std::string(k.str());
    if (k == "name" || k == "path" || k == "size_class") {
      auto s = v.value_exact<std::string>();
      if (!s)
        issues.push_back({key, "must be a string"});
      else
        (k == "name" ? spec.name : k == "path" ? spec.path : spec.size_class) = *s;
    } else if (k == "relative_cost") {
      auto d = v.value<double>();
      if (!d || !(*d > 0) || !std::isfinite(*d))
        issues.push_back({key, "must be a number > 0"});
      else
        spec.relative_cost = *d;
    } else if (k == "tier") {
      auto d = v.value_exact<int64_t>();
      if (!d || *d < 0 || *d > 1000000)
        issues.push_back({key, "must be an integer in [0, 1000000]"});
      else
        spec.tier = static_cast<int>(*d);
    } else {
      issues.push_back({key, "unknown key (name, path, size_class, relative_cost, tier)"});
    }
  }
  return spec;
}

}  // namespace

std::vector<ModelSpec> read_ladder(const std::string& toml_path, std::vector<LadderIssue>& issues) {
  toml::table doc;
  try {
    doc = toml::parse_file(toml_path);
  } catch (const toml::parse_error& e) {
    issues.push_back({"", "line " + std::to_string(e.source().begin.line) + ": " + std::string(e.description())});
    return {};
  }
  const toml::node* node = doc.get("model");
  const toml::array* models = node == nullptr ? nullptr : node->as_array();
  if (node != nullptr && models == nullptr) {
    issues.push_back({"model", "must be an array of tables ([[model]])"});
    return {};
  }
  if (models == nullptr || models->empty()) {
    issues.push_back({"model", "no [[model]] tables: the ladder needs at least one model"});
    return {};
  }
  const fs::path base = fs::absolute(toml_path).parent_path();
  std::vector<ModelSpec> ladder;
  std::set<std::string> names;
  for (std::size_t i = 0; i < models->size(); ++i) {
    const std::string where = "model[" + std::to_string(i) + "]";
    const toml::table* t = models->get(i)->as_table();
    if (t == nullptr) {
      issues.push_back({where, "must be a table ([[model]])"});
      continue;
    }
    ModelSpec spec = read_model(*t, where, static_cast<int>(i), issues);
    if (spec.name.empty())
      issues.push_back({where + ".name", "is missing"});
    else if (!names.insert(spec.name).second)
      issues.push_back({where + ".name", "'" + spec.name + "' is used twice"});
    else if (spec.name == "auto")
      issues.push_back({where + ".name", "'auto' is reserved for routing"});
    if (spec.path.empty())
      issues.push_back({where + ".path", "is missing"});
    else if (fs::path(spec.path).is_relative())
      spec.path = (base / spec.path).lexically_normal().string();
    ladder.push_back(std::move(spec));
  }
  return ladder;
}

std::vector<ModelSpec> read_ladder(const std::string& toml_path) {
  std::vector<LadderIssue> issues;
  auto ladder = read_ladder(toml_path, issues);
  if (issues.empty()) return ladder;
  std::string what = toml_path + ":";
  for (const auto& i : issues) what += "\n  " + (i.key.empty() ? std::string() : i.key + ": ") + i.message;
  throw Error(ErrorCode::invalid_argument, what);
}

}  // namespace ruvllm::llm
