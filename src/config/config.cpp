// The configuration file: one TOML table per room, every key with a default, environment overrides.
//
// Every scalar key is one row of a table (name, how to read it, a check), so that the file, the
// environment and `ruvllm config check` share one list and every error names its key.
#include "ruvllm/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <set>
#include <sstream>

namespace ruvllm::config {
namespace {

namespace fs = std::filesystem;

// One scalar key: reads a TOML node into the config; returns "" or what is wrong with the value.
struct Key {
  const char* name;  // "section.key"
  std::function<std::string(Settings&, const toml::node&)> set;
};

template <typename T>
std::optional<T> as(const toml::node& n) {
  if constexpr (std::is_same_v<T, double>) {
    if (auto v = n.value<double>()) return *v;  // integers convert too
    return std::nullopt;
  } else {
    return n.value_exact<T>();
  }
}

Key string_key(const char* name, std::string pipeline::Config::*field) {
  return {name, [field](Settings& c, const toml::node& n) -> std::string {
            auto v = as<std::string>(n);
            if (!v) return "must be a string";
            c.*field = *v;
            return "";
          }};
}

template <typename Int, typename Target>
Key int_key(const char* name, Target target, int64_t lo, int64_t hi) {
  return {name, [target, lo, hi](Settings& c, const toml::node& n) -> std::string {
            auto v = as<int64_t>(n);
            if (!v) return "must be an integer";
            if (*v < lo || *v > hi) return "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
            target(c) = static_cast<Int>(*v);
            return "";
          }};
}

template <typename Target>
Key real_key(const char* name, Target target, double lo, double hi) {
  return {name, [target, lo, hi](Settings& c, const toml::node& n) -> std::string {
            auto v = as<double>(n);
            if (!v || !std::isfinite(*v)) return "must be a number";
            if (*v < lo || *v > hi) {
              std::ostringstream s;
              s << "must be in [" << lo << ", " << hi << "]";
              return s.str();
            }
            target(c) = *v;
            return "";
          }};
}

// A number whose range is defined elsewhere, once (llm's sampling ranges).
template <typename Target>
Key checked_key(const char* name, Target target, std::optional<std::string> (*problem)(double)) {
  return {name, [target, problem](Settings& c, const toml::node& n) -> std::string {
            auto v = as<double>(n);
            if (!v || !std::isfinite(*v)) return "must be a number";
            if (auto p = problem(*v)) return *p;
            target(c) = *v;
            return "";
          }};
}

Key bool_key(const char* name, bool pipeline::Config::*field) {
  return {name, [field](Settings& c, const toml::node& n) -> std::string {
            auto v = as<bool>(n);
            if (!v) return "must be true or false";
            c.*field = *v;
            return "";
          }};
}

#define FIELD(expr) \
  [](Settings & c) -> auto& { return expr; }

const std::vector<Key>& keys() {
  static const std::vector<Key> table = {
      string_key("models.default", &Settings::default_model),
      {"models.load",
       [](Settings& c, const toml::node& n) -> std::string {
         auto v = as<std::string>(n);
         if (v == "read")
           c.load_mode = llm::LoadMode::read;
         else if (v == "mmap")
           c.load_mode = llm::LoadMode::mmap;
         else
           return "must be \"read\" or \"mmap\"";
         return "";
       }},
      int_key<int>("models.threads", FIELD(c.threads), 0, 1024),
      int_key<int>("models.gpu_layers", FIELD(c.gpu_layers), -1, 100000),
      int_key<int>("models.context", FIELD(c.context), 256, 1 << 20),
      int_key<int>("models.parallel", FIELD(c.parallel), 1, 256),

      string_key("memory.data_dir", &Settings::data_dir),
      string_key("memory.path", &Settings::memory_path),
      string_key("memory.word_vectors", &Settings::word_vectors),

      {"retrieval.mode",
       [](Settings& c, const toml::node& n) -> std::string {
         auto v = as<std::string>(n);
         try {
           c.retrieve.mode = memory::parse_search_mode(v.value_or(""));
         } catch (const Error&) {
           return "must be \"dense\", \"lexical\" or \"hybrid\"";
         }
         return "";
       }},
      real_key("retrieval.dense_weight", FIELD(c.retrieve.dense_weight), 0, 1),
      int_key<std::size_t>("retrieval.candidates", FIELD(c.retrieve.candidates), 1, 10000),
      int_key<std::size_t>("retrieval.seeds", FIELD(c.retrieve.seeds), 1, 10000),
      int_key<int>("retrieval.hops", FIELD(c.retrieve.expand.hops), 0, 8),
      int_key<std::size_t>("retrieval.max_nodes", FIELD(c.retrieve.expand.max_nodes), 1, 100000),
      int_key<std::size_t>("retrieval.degree_budget", FIELD(c.retrieve.expand.degree_budget), 1, 100000),

      {"attention.scorer",
       [](Settings& c, const toml::node& n) -> std::string {
         auto v = as<std::string>(n);
         if (v != "retrieval" && v != "pagerank" && v != "attention")
           return "must be \"retrieval\", \"pagerank\" or \"attention\"";
         c.scorer = *v;
         return "";
       }},
      string_key("attention.file", &Settings::attention_file),

      string_key("router.file", &Settings::router_file),
      {"router.threshold",
       [](Settings& c, const toml::node& n) -> std::string {
         auto v = as<double>(n);
         if (!v || !(*v >= 0 && *v <= 1)) return "must be a number in [0, 1]";
         c.router_threshold = *v;
         return "";
       }},
      real_key("router.confidence_floor", FIELD(c.confidence_floor), 0, 1),

      string_key("context.system_prompt", &Settings::system_prompt),
      int_key<std::size_t>("context.max_docs", FIELD(c.max_docs), 0, 1000),
      int_key<std::size_t>("context.max_tokens", FIELD(c.max_context_tokens), 0, 1 << 20),

      int_key<int>("generation.max_tokens", FIELD(c.max_tokens), 0, 1 << 20),
      checked_key("generation.temperature", FIELD(c.sampling.temperature), llm::temperature_problem),
      checked_key("generation.top_p", FIELD(c.sampling.top_p), llm::top_p_problem),
      int_key<int>("generation.top_k", FIELD(c.sampling.top_k), 0, 1 << 20),
      real_key("generation.min_p", FIELD(c.sampling.min_p), 0, 0.999),
      real_key("generation.repeat_penalty", FIELD(c.sampling.repeat_penalty), 1e-3, 10),
      {"generation.seed",
       [](Settings& c, const toml::node& n) -> std::string {
         auto v = as<int64_t>(n);
         if (!v || *v < 0 || *v > 0xffffffffLL) return "must be an integer in [0, 4294967295]";
         c.sampling.seed = static_cast<uint32_t>(*v);
         return "";
       }},

      string_key("pipeline.request_log", &Settings::request_log),
      bool_key("pipeline.writeback", &Settings::writeback),
      int_key<std::size_t>("pipeline.cache_entries", FIELD(c.cache_entries), 0, 1 << 24),

      {"server.host",
       [](Settings& c, const toml::node& n) -> std::string {
         auto v = as<std::string>(n);
         if (!v || v->empty()) return "must be a host name or address";
         c.server.host = *v;
         return "";
       }},
      int_key<int>("server.port", FIELD(c.server.port), 0, 65535),
      int_key<std::size_t>("server.max_body_bytes", FIELD(c.server.max_body_bytes), 1024, int64_t{1} << 32),
      int_key<int>("server.max_tokens", FIELD(c.server.max_tokens), 1, 1 << 20),
      real_key("server.request_timeout_s", FIELD(c.server.request_timeout_s), 0.001, 86400),
      int_key<std::size_t>("server.max_queue", FIELD(c.server.max_queue), 1, 100000),
      int_key<int>("server.threads", FIELD(c.server.threads), 1, 1024),
  };
  return table;
}

#undef FIELD

const Key* find_key(std::string_view name) {
  for (const Key& k : keys())
    if (name == k.name) return &k;
  return nullptr;
}

// A value from the environment: TOML syntax when it parses as a value (numbers, booleans,
// arrays), else the raw text as a string.
toml::table env_value(const std::string& raw) {
  try {
    return toml::parse("v = " + raw);
  } catch (const toml::parse_error&) {
    toml::table t;
    t.insert("v", raw);
    return t;
  }
}

std::string env_name(std::string_view key) {
  std::string name = "RUVLLM_";
  for (char ch : key) name += ch == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return name;
}

// One [section] of the file; [[model]] tables are llm's (read_ladder), the rest the key table's.
void read_section(Settings& c, const std::string& path, const std::string& s, const toml::node& node,
                  std::vector<ConfigIssue>& issues) {
  if (s == "model") {
    std::vector<llm::LadderIssue> ladder_issues;
    c.models = llm::read_ladder(path, ladder_issues);
    for (auto& i : ladder_issues) issues.push_back({std::move(i.key), std::move(i.message)});
    return;
  }
  const toml::table* t = node.as_table();
  if (t == nullptr) {
    issues.push_back({s,
                      "unknown top-level key (sections: models, memory, retrieval, attention, router, "
                      "context, generation, pipeline, server; [[model]] tables)"});
    return;
  }
  for (const auto& [k, v] : *t) {
    const std::string key = s + "." + std::string(k.str());
    if (key == "router.models") {
      const toml::table* m = v.as_table();
      if (m == nullptr) {
        issues.push_back({key, "must be a table of router model name = ladder model name"});
        continue;
      }
      for (const auto& [from, to] : *m) {
        auto name = to.value_exact<std::string>();
        if (!name)
          issues.push_back({key + "." + std::string(from.str()), "must be a string (a model name)"});
        else
          c.router_models[std::string(from.str())] = *name;
      }
      continue;
    }
    if (key == "server.api_keys") {
      const toml::array* a = v.as_array();
      bool ok = a != nullptr;
      if (ok) {
        for (const auto& e : *a) {
          auto s2 = e.value_exact<std::string>();
          if (!s2 || s2->empty())
            ok = false;
          else
            c.server.api_keys.push_back(*s2);
        }
      }
      if (!ok) issues.push_back({key, "must be an array of non-empty strings"});
      continue;
    }
    const Key* known = find_key(key);
    if (known == nullptr) {
      issues.push_back({key, "unknown key"});
      continue;
    }
    if (auto why = known->set(c, v); !why.empty()) issues.push_back({key, why});
  }
}

// RUVLLM_<SECTION>_<KEY> for every scalar key, and RUVLLM_SERVER_API_KEYS (comma-separated).
void read_environment(Settings& c, std::vector<ConfigIssue>& issues) {
  for (const Key& k : keys()) {
    const std::string name = env_name(k.name);
    if (const char* raw = std::getenv(name.c_str())) {
      toml::table t = env_value(raw);
      if (auto why = k.set(c, *t.get("v")); !why.empty()) issues.push_back({k.name, why + " (from " + name + ")"});
    }
  }
  if (const char* raw = std::getenv("RUVLLM_SERVER_API_KEYS")) {
    c.server.api_keys.clear();
    std::string s = raw;
    for (std::size_t a = 0; a <= s.size();) {
      std::size_t b = s.find(',', a);
      if (b == std::string::npos) b = s.size();
      if (b > a) c.server.api_keys.push_back(s.substr(a, b - a));
      a = b + 1;
    }
  }
}

// Rules that join keys: the default and the router's targets on the ladder, seeds within candidates.
void check_across_keys(const Settings& c, std::vector<ConfigIssue>& issues) {
  const bool ladder_reported =
      std::any_of(issues.begin(), issues.end(), [](const ConfigIssue& i) { return i.key == "model"; });
  if (c.models.empty() && !ladder_reported)
    issues.push_back({"model",
                      "no config file, so no models: write a ruvllm.toml with [[model]] tables (`ruvllm config show` "
                      "prints every key)"});
  const auto on_ladder = [&](const std::string& name) {
    return std::any_of(c.models.begin(), c.models.end(), [&](const llm::ModelSpec& m) { return m.name == name; });
  };
  if (!c.models.empty() && !on_ladder(c.default_model))
    issues.push_back({"models.default", "'" + c.default_model + "' is not a [[model]]"});
  if (c.retrieve.seeds > c.retrieve.candidates)
    issues.push_back({"retrieval.seeds", "must not exceed retrieval.candidates"});
  if (c.scorer == "attention" && c.attention_file.empty())
    issues.push_back({"attention.file", "is required when attention.scorer = \"attention\""});
  for (const auto& [from, to] : c.router_models)
    if (!on_ladder(to)) issues.push_back({"router.models." + from, "'" + to + "' is not a [[model]]"});
}

Settings parse(const std::string& path, std::vector<ConfigIssue>& issues) {
  Settings c;
  fs::path base = ".";
  if (!path.empty()) {
    if (!fs::exists(path)) {
      issues.push_back({"", "config file " + path + " does not exist"});
      return c;
    }
    base = fs::absolute(path).parent_path();
    toml::table doc;
    try {
      doc = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      issues.push_back({"", path + ":" + std::to_string(e.source().begin.line) + ": " + std::string(e.description())});
      return c;
    }
    for (const auto& [section, node] : doc) read_section(c, path, std::string(section.str()), node, issues);
    // A file without [[model]] tables: read_ladder says what is missing.
    if (!doc.contains("model")) read_section(c, path, "model", doc, issues);
  }
  read_environment(c, issues);  // after the file: the environment wins
  // Relative paths in the file resolve against its folder, like the ladder's.
  auto resolve = [&](std::string& p) {
    if (!p.empty() && p != "off" && fs::path(p).is_relative()) p = (base / p).lexically_normal().string();
  };
  for (std::string* p :
       {&c.data_dir, &c.memory_path, &c.word_vectors, &c.attention_file, &c.router_file, &c.request_log})
    resolve(*p);
  pipeline::fill_derived_defaults(c);
  check_across_keys(c, issues);
  return c;
}

std::string describe(const std::vector<ConfigIssue>& issues, const std::string& path) {
  std::string s = (path.empty() ? std::string("configuration") : path) + ":";
  for (const auto& i : issues) s += "\n  " + (i.key.empty() ? std::string() : i.key + ": ") + i.message;
  return s;
}

}  // namespace

Settings load(const std::string& path, Scope scope) {
  std::vector<ConfigIssue> issues;
  Settings c = parse(path, issues);
  if (scope == Scope::memory)  // the ladder and what names it are not the memory commands' concern
    std::erase_if(issues, [](const ConfigIssue& i) {
      return i.key == "model" || i.key.starts_with("model[") || i.key == "models.default" ||
             i.key.starts_with("router.models");
    });
  if (!issues.empty()) throw Error(ErrorCode::invalid_argument, describe(issues, path));
  return c;
}

std::vector<ConfigIssue> check(const std::string& path) {
  std::vector<ConfigIssue> issues;
  Settings c = parse(path, issues);
  if (!issues.empty()) return issues;
  return pipeline::check_config(c);
}

std::string defaults_toml() {
  const Settings d;
  std::ostringstream s;
  s << "# ruvllm configuration: every key with its default. Environment variables override keys:\n"
       "# RUVLLM_<SECTION>_<KEY>, e.g. RUVLLM_SERVER_PORT=9000. Relative paths resolve against this file.\n\n"
       "# The model ladder, cheapest first (the router escalates upwards).\n"
       "# [[model]]\n# name = \"lfm2-350m\"\n# path = \"models/lfm2-350m-q4_0.gguf\"\n# size_class = \"350m\"\n"
       "# relative_cost = 1.0\n\n"
       "[models]\n"
       "default = \"\"          # routing off and the naive flow use it; \"\" = the last [[model]]\n"
       "load = \"read\"         # read | mmap\n"
    << "threads = " << d.threads << "            # 0 = one per hardware thread\n"
    << "gpu_layers = " << d.gpu_layers << "\ncontext = " << d.context << "\nparallel = " << d.parallel
    << "         # sequences decoded together per model\n\n"
    << "[memory]\ndata_dir = \"" << d.data_dir << "\"\npath = \"\"             # \"\" = data_dir/memory.sqlite\n"
    << "word_vectors = \"\"     # \"\" = the GloVe table set-up converts\n\n"
    << "[retrieval]\nmode = \"hybrid\"       # dense | lexical | hybrid\ndense_weight = " << d.retrieve.dense_weight
    << "\ncandidates = " << d.retrieve.candidates << "\nseeds = " << d.retrieve.seeds
    << "\nhops = " << d.retrieve.expand.hops << "\nmax_nodes = " << d.retrieve.expand.max_nodes
    << "\ndegree_budget = " << d.retrieve.expand.degree_budget << "\n\n"
    << "[attention]\nscorer = \"" << d.scorer << "\"   # retrieval | pagerank | attention\nfile = \"\"\n\n"
    << "[router]\nfile = \"\"             # \"\" = routing off: every request goes to models.default\n"
       "# threshold = 0.5      # overrides the file's calibrated threshold\n"
    << "confidence_floor = " << d.confidence_floor
    << "\n# [router.models]       # router ladder name = [[model]] name\n\n"
    << "[context]\nsystem_prompt = \"" << d.system_prompt << "\"\nmax_docs = " << d.max_docs
    << "\nmax_tokens = " << d.max_context_tokens << "\n\n"
    << "[generation]\nmax_tokens = " << d.max_tokens << "\ntemperature = " << d.sampling.temperature
    << "\ntop_p = " << d.sampling.top_p << "\ntop_k = " << d.sampling.top_k << "\nmin_p = " << d.sampling.min_p
    << "\nrepeat_penalty = " << d.sampling.repeat_penalty << "\n# seed = 1\n\n"
    << "[pipeline]\nrequest_log = \"\"      # \"\" = data_dir/requests.jsonl; \"off\" = none\nwriteback = "
    << (d.writeback ? "true" : "false") << "\ncache_entries = " << d.cache_entries << "\n\n"
    << "[server]\nhost = \"" << d.server.host << "\"\nport = " << d.server.port
    << "\napi_keys = []          # Bearer tokens; empty = no authentication\nmax_body_bytes = "
    << d.server.max_body_bytes << "\nmax_tokens = " << d.server.max_tokens
    << "\nrequest_timeout_s = " << d.server.request_timeout_s << "\nmax_queue = " << d.server.max_queue
    << "\nthreads = " << d.server.threads << "\n";
  return s.str();
}

}  // namespace ruvllm::config
