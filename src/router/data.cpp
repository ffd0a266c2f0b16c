// Outcome records in the schema of ../shared/data/router: models.json and {train,test}.jsonl.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <unordered_map>

#include "common/json_depth.h"
#include "internal.h"

namespace ruvllm::router {
namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::io, "cannot read " + path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (common::json_nests_deeper_than(text))
    throw Error(path + ": nests deeper than " + std::to_string(common::kMaxJsonDepth) + " levels");
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) throw Error(path + ": malformed JSON");
  return j;
}

// Rows of a JSONL file, each handed to `row` with its line number; blank lines are skipped.
template <typename F>
void for_each_row(const std::string& path, F&& row) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::io, "cannot read " + path);
  std::size_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (common::json_nests_deeper_than(line))
      throw Error(path + ":" + std::to_string(line_no) + ": nests deeper than " +
                  std::to_string(common::kMaxJsonDepth) + " levels");
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error(path + ":" + std::to_string(line_no) + ": not a JSON object");
    row(j, line_no);
  }
}

// RetrievalSignals from JSON: {"scores": [..], "embeddings": [[..], ..], "attention_entropy",
// "graph_depth", "search_agreement"}; every number finite.
template <typename Fail>
RetrievalSignals retrieval_signals(const nlohmann::json& j, Fail&& fail) {
  if (!j.is_object()) fail("\"retrieval_signals\" must be an object");
  auto floats = [&](const nlohmann::json& a, const char* what) {
    if (!a.is_array()) fail(std::string(what) + " must be an array of numbers");
    std::vector<float> v;
    for (const auto& x : a) {
      if (!x.is_number() || !(std::fabs(x.get<double>()) <= 3.4e38))
        fail(std::string(what) + " must hold finite numbers");
      v.push_back(x.get<float>());
    }
    return v;
  };
  RetrievalSignals r;
  if (j.contains("scores")) r.scores = floats(j["scores"], "retrieval_signals.scores");
  if (j.contains("embeddings")) {
    if (!j["embeddings"].is_array()) fail("retrieval_signals.embeddings must be an array of vectors");
    for (const auto& e : j["embeddings"]) r.embeddings.push_back(floats(e, "retrieval_signals.embeddings"));
  }
  auto number = [&](const char* key, double& into) {
    if (!j.contains(key)) return;
    if (!j[key].is_number() || !std::isfinite(j[key].get<double>()))
      fail(std::string("retrieval_signals.") + key + " must be a finite number");
    into = j[key].get<double>();
  };
  number("attention_entropy", r.attention_entropy);
  number("search_agreement", r.search_agreement);
  if (j.contains("graph_depth")) {
    if (!j["graph_depth"].is_number_integer() || j["graph_depth"].get<int64_t>() < 0 ||
        j["graph_depth"].get<int64_t>() > 1000) {
      fail("retrieval_signals.graph_depth must be a whole number in [0, 1000]");
    }
    r.graph_depth = static_cast<int>(j["graph_depth"].get<int64_t>());
  }
  return r;
}

}  // namespace

Ladder load_ladder(const std::string& dir, bool frontier) {
  const auto models = read_json(dir + "/models.json");
  if (!models.is_array() || models.empty()) throw Error(dir + "/models.json: expected a non-empty array of models");
  std::vector<std::string> names;
  std::vector<double> listed;
  for (const auto& m : models) {
    if (!m.is_object() || !m.contains("name") || !m["name"].is_string()) {
      throw Error(dir + "/models.json: every model needs a \"name\"");
    }
    names.push_back(m["name"]);
    const auto cost = m.value("cost_per_call", nlohmann::json());
    listed.push_back(cost.is_number() ? cost.get<double>() : std::numeric_limits<double>::quiet_NaN());
  }
  if (names.size() > kMaxTiers) throw Error(dir + "/models.json: at most 16 models");
  // Mean per-call cost over the training rows, where the data records costs.
  std::vector<double> sum(names.size(), 0.0), count(names.size(), 0.0);
  std::vector<double> q_sum(names.size(), 0.0), q_count(names.size(), 0.0);
  std::ifstream probe(dir + "/train.jsonl");
  if (probe) {
    probe.close();
    for_each_row(dir + "/train.jsonl", [&](const nlohmann::json& j, std::size_t) {
      if (!j.contains("outcomes") || !j["outcomes"].is_object()) return;
      for (std::size_t m = 0; m < names.size(); ++m) {
        const auto it = j["outcomes"].find(names[m]);
        if (it == j["outcomes"].end() || !it->is_object()) continue;
        const auto cost = it->value("cost", nlohmann::json());
        if (cost.is_number()) sum[m] += cost.get<double>(), count[m] += 1;
        const auto quality = it->value("quality", nlohmann::json());
        if (quality.is_number()) q_sum[m] += quality.get<double>(), q_count[m] += 1;
      }
    });
  }
  std::vector<double> cost(names.size());
  bool all_known = true;
  for (std::size_t m = 0; m < names.size(); ++m) {
    cost[m] = count[m] > 0 ? sum[m] / count[m] : listed[m];
    all_known &= std::isfinite(cost[m]);
  }
  std::vector<std::size_t> order(names.size());
  std::iota(order.begin(), order.end(), 0);
  if (all_known) std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return cost[a] < cost[b]; });
  Ladder ladder;
  double best_quality = -std::numeric_limits<double>::infinity();
  for (std::size_t m : order) {
    // A model without quality records cannot be judged: it stays.
    const double quality = q_count[m] > 0 ? q_sum[m] / q_count[m] : -std::numeric_limits<double>::infinity();
    if (frontier && all_known && q_count[m] > 0 && quality <= best_quality) {
      ladder.dropped.push_back(names[m]);
      continue;
    }
    best_quality = std::max(best_quality, quality);
    ladder.models.push_back(names[m]);
    ladder.cost.push_back(cost[m]);
  }
  // Every models.json name stays known to load_outcomes, which drops the left-off models' trials.

  ladder.max_privacy.assign(ladder.models.size(), 3);
  return ladder;
}

std::vector<Outcome> load_outcomes(const std::string& path, const Ladder& ladder) {
  std::unordered_map<std::string, std::size_t> index;
  for (std::size_t m = 0; m < ladder.models.size(); ++m) index[ladder.models[m]] = m;
  std::vector<Outcome> out;
  for_each_row(path, [&](const nlohmann::json& j, std::size_t line_no) {
    auto fail = [&](const std::string& why) { throw Error(path + ":" + std::to_string(line_no) + ": " + why); };
    if (!j.contains("query") || !j["query"].is_string()) fail("\"query\" must be a string");
    const bool has_settings = j.contains("settings");
    if (has_settings && !j["settings"].is_array()) fail("\"settings\" must be an array");
    if (j.contains("outcomes") ? !j["outcomes"].is_object() : !has_settings) {
      fail("\"outcomes\" must be an object (or the row needs \"settings\")");
    }
    Outcome o;
    o.id = j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>() : std::to_string(line_no);
    o.task = j.contains("task") && j["task"].is_string() ? j["task"].get<std::string>() : "";
    o.signals.query.text = j["query"];
    if (j.contains("retrieval_signals")) o.signals.retrieval = retrieval_signals(j["retrieval_signals"], fail);
    if (has_settings) {
      for (const auto& r : j["settings"]) {
        if (!r.is_object()) fail("every setting must be an object");
        Trial t;
        t.model = kAnyModel;
        if (!r.contains("quality") || !r["quality"].is_number() ||
            !(r["quality"].get<double>() >= 0 && r["quality"].get<double>() <= 1)) {
          fail("every setting needs a quality in [0, 1]");
        }
        t.quality = r["quality"].get<double>();
        if (!r.contains("retrieval") || !r["retrieval"].is_string()) fail("every setting needs a retrieval strategy");
        for (int k = 0; k < 4; ++k)
          if (to_string(static_cast<Retrieval>(k)) == r["retrieval"].get<std::string>()) t.retrieval = k;
        if (t.retrieval < 0) fail("unknown retrieval \"" + r["retrieval"].get<std::string>() + "\"");
        if (!r.contains("context_tokens") || !r["context_tokens"].is_number_integer()) {
          fail("every setting needs whole context_tokens");
        }
        const auto bin =
            std::find(ladder.context_bins.begin(), ladder.context_bins.end(), r["context_tokens"].get<int64_t>());
        if (bin == ladder.context_bins.end()) {
          fail("context_tokens " + r["context_tokens"].dump() + " is not one of the router's context bins");
        }
        t.context_bin = static_cast<int>(bin - ladder.context_bins.begin());
        if (r.contains("tokens")) {
          if (!r["tokens"].is_number() || !(r["tokens"].get<double>() >= 0)) fail("tokens must be a number ≥ 0");
          t.context_tokens = r["tokens"].get<double>();
        }
        o.trials.push_back(t);
      }
    }
    if (!j.contains("outcomes")) {
      out.push_back(std::move(o));
      return;
    }
    for (const auto& [name, r] : j["outcomes"].items()) {
      const auto it = index.find(name);
      if (it == index.end()) {
        if (std::find(ladder.dropped.begin(), ladder.dropped.end(), name) != ladder.dropped.end()) continue;
        fail("model \"" + name + "\" is not in the ladder");
      }
      if (!r.is_object() || !r.contains("quality") || !r["quality"].is_number())
        fail("\"" + name + "\" needs a numeric quality");
      Trial t;
      t.model = it->second;
      t.quality = r["quality"].get<double>();
      if (!(t.quality >= 0 && t.quality <= 1)) fail("quality of \"" + name + "\" is outside [0, 1]");
      if (r.contains("cost") && !r["cost"].is_null()) {
        if (!r["cost"].is_number() || !(r["cost"].get<double>() >= 0))
          fail("cost of \"" + name + "\" must be ≥ 0 or null");
        t.cost = r["cost"].get<double>();
      }
      auto number = [&](const char* key, double lo, double hi, double& into) {
        if (!r.contains(key) || r[key].is_null()) return;
        if (!r[key].is_number() || !(r[key].get<double>() >= lo && r[key].get<double>() <= hi)) {
          fail(std::string(key) + " of \"" + name + "\" must be a number in [" + std::to_string(lo) + ", " +
               std::to_string(hi) + "]");
        }
        into = r[key].get<double>();
      };
      auto index_of = [&](const char* key, int count, int& into) {
        if (!r.contains(key) || r[key].is_null()) return;
        if (!r[key].is_number_integer() || r[key].get<int64_t>() < 0 || r[key].get<int64_t>() >= count) {
          fail(std::string(key) + " of \"" + name + "\" must be a whole number in [0, " + std::to_string(count - 1) +
               "]");
        }
        into = static_cast<int>(r[key].get<int64_t>());
      };
      number("latency_ms", 0, 1e9, t.latency_ms);
      number("temperature", 0, 2, t.temperature);
      number("top_p", 0, 1, t.top_p);
      index_of("context_bin", static_cast<int>(ladder.context_bins.size()), t.context_bin);
      index_of("retrieval", 4, t.retrieval);
      o.trials.push_back(t);
    }
    out.push_back(std::move(o));
  });
  if (out.empty()) throw Error(path + ": no outcome records");
  return out;
}

}  // namespace ruvllm::router
