// The configuration file: one TOML table per room, every key with a default, environment overrides.
//
// Every scalar key is one row of a table (name, how to read it, a check), so that the file, the
// environment and `ruvllm config check` share one list and every error names its key.
#include <toml++/toml.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <set>
#include <sstream>

#include "pipeline/config_defaults.h"
#include "ruvllm/pipeline.h"

namespace ruvllm::pipeline {
namespace {

namespace fs = std::filesystem;

// One scalar key: reads a TOML node into the config; returns "" or what is wrong with the value.
struct Key {
  const char* name;  // "section.key"
  std::function<std::string(Config&, const toml::node&)> set;
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

Key string_key(const char* name, std::string Config::*field) {
  return {name, [field](Config& c, const toml::node& n) -> std::string {
            auto v = as<std::string>(n);
            if (!v) return "must be a string";
            c.*field = *v;
            return "";
          }};
}

template <typename Int, typename Target>
Key int_key(const char* name, Target target, int64_t lo, int64_t hi) {
  return {name, [target, lo, hi](Config& c, const toml::node& n) -> std::string {
            auto v = as<int64_t>(n);
            if (!v) return "must be an integer";
            if (*v < lo || *v > hi) return "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
            target(c) = static_cast<Int>(*v);
            return "";
          }};
}

template <typename Target>
Key real_key(const char* name, Target target, double lo, double hi) {
  return {name, [target, lo, hi](Config& c, const toml::node& n) -> std::string {
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
  return {name, [target, problem](Config& c, const toml::node& n) -> std::string {
            auto v = as<double>(n);
            if (!v || !std::isfinite(*v)) return "must be a number";
            if (auto p = problem(*v)) return *p;
            target(c) = *v;
            return "";
          }};
}

Key bool_key(const char* name, bool Config::*field) {
  return {name, [field](Config& c, const toml::node& n) -> std::string {
            auto v = as<bool>(n);
            if (!v) return "must be true or false";
            c.*field = *v;
            return "";
          }};
}

#define FIELD(expr) \
  [](Config & c) -> auto& { return expr; }

const std::vector<Key>& keys() {
  static const std::vector<Key> table = {
      string_key("models.default", &Config::default_model),
      {"models.load",
       [](Config& c, const toml::node& n) -> std::string {
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

      string_key("memory.data_dir", &Config::data_dir),
      string_key("memory.path", &Config::memory_path),
      string_key("memory.word_vectors", &Config::word_vectors),

      {"retrieval.mode",
       [](Config& c, const toml::node& n) -> std::string {
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
       [](Config& c, const toml::node& n) -> std::string {
         auto v = as<std::string>(n);
         if (v != "retrieval" && v != "pagerank" && v != "attention")
           return "must be \"retrieval\", \"pagerank\" or \"attention\"";
         c.scorer = *v;
         return "";
       }},
      string_key("attention.file", &Config::attention_file),

      string_key("router.file", &Config::router_file),
      {"router.threshold",
       [](Config& c, const toml::node& n) -> std::string {
         auto v = as<double>(n);
         if (!v || !(*v >= 0 && *v <= 1)) return "must be a number in [0, 1]";
         c.router_threshold = *v;
         return "";
       }},
      real_key("router.confidence_floor", FIELD(c.confidence_floor), 0, 1),

      string_key("context.system_prompt", &Config::system_prompt),
      int_key<std::size_t>("context.max_docs", FIELD(c.max_docs), 0, 1000),
      int_key<std::size_t>("context.max_tokens", FIELD(c.max_context_tokens), 0, 1 << 20),

      int_key<int>("generation.max_tokens", FIELD(c.max_tokens), 0, 1 << 20),
      checked_key("generation.temperature", FIELD(c.sampling.temperature), llm::temperature_problem),
      checked_key("generation.top_p", FIELD(c.sampling.top_p), llm::top_p_problem),
      int_key<int>("generation.top_k", FIELD(c.sampling.top_k), 0, 1 << 20),
      real_key("generation.min_p", FIELD(c.sampling.min_p), 0, 0.999),
      real_key("generation.repeat_penalty", FIELD(c.sampling.repeat_penalty), 1e-3, 10),
      {"generation.seed",
       [](Config& c, const toml::node& n) -> std::string {
         auto v = as<int64_t>(n);
         if (!v || *v < 0 || *v > 0xffffffffLL) return "must be an integer in [0, 4294967295]";
         c.sampling.seed = static_cast<uint32_t>(*v);
         return "";
       }},

      string_key("pipeline.request_log", &Config::request_log),
      bool_key("pipeline.writeback", &Config::writeback),
      int_key<std::size_t>("pipeline.cache_entries", FIELD(c.cache_entries), 0, 1 << 24),

      {"server.host",
       [](Config& c, const toml::node& n) -> std::string {
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

void read_models(Config& c, const toml::array& models, const fs::path& base, std::vector<ConfigIssue>& issues) {
  std::set<std::string> names;
  c.models.clear();
  for (std::size_t i = 0; i < models.size(); ++i) {
    const std::string where = "model[" + std::to_string(i) + "]";
    const toml::table* t = models.get(i)->as_table();
    if (t == nullptr) {
      issues.push_back({where, "must be a table ([[model]])"});
      continue;
    }
    llm::ModelSpec spec;
    spec.tier = static_cast<int>(i);
    for (const auto& [k, v] : *t) {
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
        if (!d || *d < 0)
          issues.push_back({key, "must be an integer >= 0"});
        else
          spec.tier = static_cast<int>(*d);
      } else {
        issues.push_back({key, "unknown key (name, path, size_class, relative_cost, tier)"});
      }
    }
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
    c.models.push_back(std::move(spec));
  }
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

Config parse(const std::string& path, std::vector<ConfigIssue>& issues) {
  Config c;
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
    for (const auto& [section, node] : doc) {
      const std::string s(section.str());
      if (s == "model") {
        if (const toml::array* a = node.as_array())
          read_models(c, *a, base, issues);
        else
          issues.push_back({"model", "must be an array of tables ([[model]])"});
        continue;
      }
      const toml::table* t = node.as_table();
      if (t == nullptr) {
        issues.push_back({s,
                          "unknown top-level key (sections: models, memory, retrieval, attention, router, "
                          "context, generation, pipeline, server; [[model]] tables)"});
        continue;
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
  }
  // Environment overrides, after the file.
  for (const Key& k : keys()) {
    const std::string name = env_name(k.name);
    if (const char* raw = std::getenv(name.c_str())) {
      toml::table t = env_value(raw);
      if (auto why = k.set(c, *t.get("v")); !why.empty()) issues.push_back({k.name, why + " (from " + name + ")"});
    }
  }
  if (const char* raw = std::getenv("RUVLLM_SERVER_API_KEYS")) {  // comma-separated
    c.server.api_keys.clear();
    std::string s = raw;
    for (std::size_t a = 0; a <= s.size();) {
      std::size_t b = s.find(',', a);
      if (b == std::string::npos) b = s.size();
      if (b > a) c.server.api_keys.push_back(s.substr(a, b - a));
      a = b + 1;
    }
  }
  // Relative paths in the file resolve against its folder, like the ladder's.
  auto resolve = [&](std::string& p) {
    if (!p.empty() && p != "off" && fs::path(p).is_relative()) p = (base / p).lexically_normal().string();
  };
  resolve(c.data_dir);
  resolve(c.memory_path);
  resolve(c.word_vectors);
  resolve(c.attention_file);
  resolve(c.router_file);
  resolve(c.request_log);
  detail::fill_derived_defaults(c);

  if (c.models.empty()) issues.push_back({"model", "no [[model]] tables: the ladder needs at least one model"});
  bool found = false;
  for (const auto& m : c.models) found |= m.name == c.default_model;
  if (!c.models.empty() && !found) issues.push_back({"models.default", "'" + c.default_model + "' is not a [[model]]"});
  if (c.retrieve.seeds > c.retrieve.candidates)
    issues.push_back({"retrieval.seeds", "must not exceed retrieval.candidates"});
  if (c.scorer == "attention" && c.attention_file.empty())
    issues.push_back({"attention.file", "is required when attention.scorer = \"attention\""});
  for (const auto& [from, to] : c.router_models) {
    bool on_ladder = false;
    for (const auto& m : c.models) on_ladder |= m.name == to;
    if (!on_ladder) issues.push_back({"router.models." + from, "'" + to + "' is not a [[model]]"});
  }
  return c;
}

std::string describe(const std::vector<ConfigIssue>& issues, const std::string& path) {
  std::string s = (path.empty() ? std::string("configuration") : path) + ":";
  for (const auto& i : issues) s += "\n  " + (i.key.empty() ? std::string() : i.key + ": ") + i.message;
  return s;
}

}  // namespace

namespace detail {

void fill_derived_defaults(Config& c) {
  if (c.memory_path.empty()) c.memory_path = (fs::path(c.data_dir) / "memory.sqlite").string();
  if (c.request_log.empty()) c.request_log = (fs::path(c.data_dir) / "requests.jsonl").string();
  if (c.default_model.empty() && !c.models.empty()) c.default_model = c.models.back().name;
}

}  // namespace detail

Config load_config(const std::string& path) {
  std::vector<ConfigIssue> issues;
  Config c = parse(path, issues);
  if (!issues.empty()) throw Error(describe(issues, path));
  return c;
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

std::vector<ConfigIssue> check_config(const std::string& path) {
  std::vector<ConfigIssue> issues;
  Config c = parse(path, issues);
  if (!issues.empty()) return issues;
  return check_config(c);
}

std::string default_config_toml() {
  const Config d;
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

}  // namespace ruvllm::pipeline
