// The model ladder from TOML: [[model]] tables.
#include <toml++/toml.h>
#include <filesystem>
#include <set>

#include "ruvllm/llm.h"

namespace ruvllm::llm {

std::vector<ModelSpec> read_ladder(const std::string& toml_path) {
  toml::table doc;
  try {
    doc = toml::parse_file(toml_path);
  } catch (const toml::parse_error& e) {
    throw Error(toml_path + ": " + std::string(e.description()) + " (line " + std::to_string(e.source().begin.line) +
                ")");
  }
  const toml::array* models = doc["model"].as_array();
  if (models == nullptr || models->empty()) throw Error(toml_path + ": no [[model]] entries");
  const auto base = std::filesystem::path(toml_path).parent_path();
  std::vector<ModelSpec> ladder;
  std::set<std::string> names;
  for (std::size_t i = 0; i < models->size(); ++i) {
    const toml::table* t = models->get(i)->as_table();
    const std::string where = toml_path + ": model[" + std::to_string(i) + "]";
    if (t == nullptr) throw Error(where + " is not a table");
    ModelSpec spec;
    spec.name = (*t)["name"].value_or(std::string{});
    spec.path = (*t)["path"].value_or(std::string{});
    spec.size_class = (*t)["size_class"].value_or(std::string{});
    spec.relative_cost = (*t)["relative_cost"].value_or(1.0);
    spec.tier = (*t)["tier"].value_or(static_cast<int64_t>(i));
    if (spec.name.empty()) throw Error(where + ".name is missing");
    if (!names.insert(spec.name).second) throw Error(where + ".name '" + spec.name + "' is used twice");
    if (spec.path.empty()) throw Error(where + ".path is missing");
    if (!(spec.relative_cost > 0)) throw Error(where + ".relative_cost must be > 0");
    if (spec.tier < 0) throw Error(where + ".tier must be >= 0");
    if (std::filesystem::path(spec.path).is_relative()) spec.path = (base / spec.path).string();
    ladder.push_back(std::move(spec));
  }
  return ladder;
}

}  // namespace ruvllm::llm
