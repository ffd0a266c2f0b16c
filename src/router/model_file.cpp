// The router file: one versioned JSON document with the ladder, the shape, the operating point,
// the feature fit and the parameters (doubles, written so that they read back bit for bit).
#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/json_depth.h"
#include "internal.h"

namespace ruvllm::router {
namespace {

constexpr const char* kFormat = "ruvllm-router";
// 2: the accuracy slots come from a word model ("fit"."words"); version 1 kept a table per cell of
// query space, which this build no longer computes.
constexpr int kVersion = 2;

nlohmann::json nan_as_null(const std::vector<double>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (double x : v) a.push_back(std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr));
  return a;
}

template <typename T>
std::vector<T> numbers(const nlohmann::json& j, const char* key, std::size_t expected, bool allow_null = false) {
  if (!j.contains(key) || !j[key].is_array()) throw Error(std::string("router file: \"") + key + "\" must be an array");
  const auto& a = j[key];
  if (expected != SIZE_MAX && a.size() != expected) {
    throw Error(std::string("router file: \"") + key + "\" has " + std::to_string(a.size()) + " values, expected " +
                std::to_string(expected));
  }
  std::vector<T> out;
  out.reserve(a.size());
  for (const auto& v : a) {
    if (allow_null && v.is_null()) {
      out.push_back(std::numeric_limits<T>::quiet_NaN());
      continue;
    }
    if (!v.is_number()) throw Error(std::string("router file: \"") + key + "\" holds a value that is not a number");
    const double x = v.get<double>();
    if (!std::isfinite(x) || (std::is_floating_point_v<T> && std::fabs(x) > std::numeric_limits<T>::max())) {
      throw Error(std::string("router file: \"") + key + "\" holds a non-finite value");
    }
    out.push_back(static_cast<T>(x));
  }
  return out;
}

std::size_t whole(const nlohmann::json& j, const char* key, std::size_t lo, std::size_t hi) {
  if (!j.contains(key) || !j[key].is_number_unsigned()) {
    throw Error(std::string("router file: \"") + key + "\" must be a whole number");
  }
  const auto v = j[key].get<uint64_t>();
  if (v < lo || v > hi) throw Error(std::string("router file: \"") + key + "\" is out of range");
  return static_cast<std::size_t>(v);
}

// Identity of the file's current version: inode (save() renames a new file into place), device,
// size and nanosecond mtime, hashed. Modification time alone misses two saves within one tick.
int64_t file_stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  uint64_t h = 1469598103934665603ULL;
  for (uint64_t v :
       {static_cast<uint64_t>(st.st_ino), static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_size),
        static_cast<uint64_t>(st.st_mtim.tv_sec), static_cast<uint64_t>(st.st_mtim.tv_nsec)}) {
    h = (h ^ v) * 1099511628211ULL;
  }
  return static_cast<int64_t>(h | 1);  // 0 means "no file"
}
}  // namespace

void Router::save(const std::string& path) const {
  nlohmann::json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["ladder"] = {{"models", ladder_.models},
                 {"cost", nan_as_null(ladder_.cost)},
                 {"max_privacy", ladder_.max_privacy},
                 {"context_bins", ladder_.context_bins},
                 {"dropped", ladder_.dropped}};
  j["shape"] = {
      {"hidden", shape_.hidden}, {"rank_w", shape_.rank_w}, {"rank_u", shape_.rank_u}, {"steps", shape_.steps}};
  j["threshold"] = threshold;
  j["confidence_floor"] = confidence_floor;
  if (!(evidence_coverage > 0 && evidence_coverage <= 1)) throw Error("router: evidence_coverage must be in (0, 1]");
  j["evidence_coverage"] = evidence_coverage;
  if (objective_.recorded) {  // trained: what it was trained for
    j["objective"] = {{"lambda_latency", objective_.lambda_latency},
                      {"mu_cost", objective_.mu_cost},
                      {"l2", objective_.l2},
                      {"share_ties", objective_.share_ties}};
  }
  j["quantized"] = quantized_;
  j["heads_trained"] = {{"context", impl_->context_trained},
                        {"retrieval", impl_->retrieval_trained},
                        {"sampling", impl_->sampling_trained}};
  if (!impl_->model_view.empty()) {
    nlohmann::json view = nlohmann::json::array();
    for (float v : impl_->model_view) view.push_back(std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v));
    j["model_view"] = view;
  }
  nlohmann::json names = nlohmann::json::array();
  for (auto n : feature_names()) names.push_back(std::string(n));
  j["feature_layout"] = names;
  if (impl_->fitted) {
    const FeatureFit& f = impl_->fit;
    j["fit"] = {{"dim", f.dim},
                {"centre", f.centre},
                {"pca", f.pca},
                {"domains", f.domains},
                {"clusters", f.clusters},
                {"words",
                 {{"terms", f.words.terms},
                  {"idf", f.words.idf},
                  {"tiers", f.words.tiers},
                  {"weight", f.words.weight},
                  {"intercept", nan_as_null(f.words.intercept)},
                  {"alpha", f.words.alpha}}},
                {"shift", f.shift},
                {"scale", f.scale}};
  }
  j["theta"] = theta_;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(ErrorCode::io, "cannot write the router file " + path);
    out << j.dump() << '\n';
    if (!out.flush()) throw Error(ErrorCode::io, "cannot write the router file " + path);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);  // readers (hot reload) see the old or the new file, whole
  if (ec) throw Error(ErrorCode::io, "cannot replace the router file " + path + ": " + ec.message());
}

Router Router::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::io, "cannot read the router file " + path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (common::json_nests_deeper_than(text)) throw Error(path + ": not a router file (nests too deep)");
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw Error(path + ": not a router file (malformed JSON)");
  if (!j.contains("format") || j["format"] != kFormat) throw Error(path + ": not a router file (format)");
  if (!j.contains("version") || !j["version"].is_number_integer())
    throw Error(path + ": router file without a version");
  if (j["version"].get<int>() > kVersion) {
    throw Error(path + ": router file version " + std::to_string(j["version"].get<int>()) +
                " is newer than this build reads (" + std::to_string(kVersion) + ")");
  }
  if (j["version"].get<int>() < 2) {
    throw Error(path + ": router file version " + std::to_string(j["version"].get<int>()) +
                " keeps the accuracy table this build replaced with a word model; retrain the router (ruvllm router "
                "train)");
  }
  try {
    if (!j.contains("ladder") || !j["ladder"].is_object() || !j.contains("shape") || !j["shape"].is_object()) {
      throw Error("router file: \"ladder\" and \"shape\" must be objects");
    }
    const auto& jl = j["ladder"];
    Ladder ladder;
    if (!jl.contains("models") || !jl["models"].is_array())
      throw Error("router file: ladder \"models\" must be an array");
    for (const auto& m : jl["models"]) {
      if (!m.is_string()) throw Error("router file: ladder models must be names");
      ladder.models.push_back(m);
    }
    const std::size_t n = ladder.models.size();
    ladder.cost = numbers<double>(jl, "cost", n, true);
    ladder.max_privacy = numbers<int>(jl, "max_privacy", n);
    ladder.context_bins = numbers<int>(jl, "context_bins", SIZE_MAX);
    if (jl.contains("dropped")) {
      if (!jl["dropped"].is_array()) throw Error("router file: ladder \"dropped\" must be an array of names");
      for (const auto& m : jl["dropped"]) {
        if (!m.is_string()) throw Error("router file: ladder \"dropped\" must be an array of names");
        ladder.dropped.push_back(m);
      }
    }
    const auto& js = j["shape"];
    RouterShape shape{whole(js, "hidden", 1, 128), whole(js, "rank_w", 1, 64), whole(js, "rank_u", 1, 64),
                      whole(js, "steps", 1, 8)};
    Router r(ladder, shape);
    const Layout L(shape, n, ladder.context_bins.size());
    r.theta_ = numbers<double>(j, "theta", L.total);
    for (const char* key : {"threshold", "confidence_floor"}) {
      if (!j.contains(key) || !j[key].is_number() || !std::isfinite(j[key].get<double>())) {
        throw Error(std::string("router file: \"") + key + "\" must be a finite number");
      }
    }
    r.threshold = j["threshold"].get<double>();
    r.confidence_floor = j["confidence_floor"].get<double>();
    if (j.contains("evidence_coverage")) {  // files written before it had no such key: the default
      const auto& v = j["evidence_coverage"];
      if (!v.is_number() || !(v.get<double>() > 0 && v.get<double>() <= 1)) {
        throw Error("router file: \"evidence_coverage\" must be a number in (0, 1]");
      }
      r.evidence_coverage = v.get<double>();
    }
    if (j.contains("objective")) {
      const auto& o = j["objective"];
      auto finite = [&](const char* key, double low) {
        if (!o.is_object() || !o.contains(key) || !o[key].is_number() || !std::isfinite(o[key].get<double>()) ||
            o[key].get<double>() < low) {
          throw Error(std::string("router file: objective \"") + key + "\" must be a finite number ≥ " +
                      std::to_string(static_cast<int>(low)));
        }
        return o[key].get<double>();
      };
      r.objective_.lambda_latency = finite("lambda_latency", 0);
      r.objective_.mu_cost = finite("mu_cost", 0);
      r.objective_.l2 = finite("l2", 0);
      if (!o.contains("share_ties") || !o["share_ties"].is_boolean()) {
        throw Error("router file: objective \"share_ties\" must be true or false");
      }
      r.objective_.share_ties = o["share_ties"].get<bool>();
      r.objective_.recorded = true;
    } else {  // untrained, or written before the objective was recorded: what training did then
      r.objective_ = {0, 0, 10, false, false};
    }
    if (!j.contains("feature_layout") || !j["feature_layout"].is_array() || j["feature_layout"].size() != kFeatures) {
      throw Error("router file: \"feature_layout\" must list 128 feature names");
    }
    for (std::size_t i = 0; i < kFeatures; ++i) {
      if (j["feature_layout"][i] != std::string(feature_names()[i])) {
        throw Error("router file: feature " + std::to_string(i) + " is \"" + j["feature_layout"][i].dump() +
                    "\", this build computes \"" + std::string(feature_names()[i]) + "\"; retrain the router");
      }
    }
    auto impl = std::make_shared<Impl>();
    if (j.contains("fit")) {
      const auto& jf = j["fit"];
      FeatureFit& f = impl->fit;
      f.dim = whole(jf, "dim", 0, 1 << 16);
      f.centre = numbers<float>(jf, "centre", f.dim);
      f.pca = numbers<float>(jf, "pca", f.dim ? kPca * f.dim : 0);
      f.domains = numbers<float>(jf, "domains", f.dim ? kDomains * f.dim : 0);
      f.clusters = numbers<float>(jf, "clusters", f.dim ? kClusters * f.dim : 0);
      if (!jf.contains("words") || !jf["words"].is_object())
        throw Error("router file: \"fit\" has no \"words\" object");
      const auto& jw = jf["words"];
      WordModel& w = f.words;
      if (!jw.contains("terms") || !jw["terms"].is_array()) throw Error("router file: \"terms\" must be an array");
      for (const auto& t : jw["terms"]) {
        if (!t.is_string()) throw Error("router file: \"terms\" must be strings");
        w.terms.push_back(t);
      }
      w.index();
      w.tiers = whole(jw, "tiers", std::min(n, kMaxTiers), std::min(n, kMaxTiers));  // one row per model
      w.idf = numbers<float>(jw, "idf", w.terms.size());
      for (float v : w.idf) {
        if (!(v >= 1)) throw Error("router file: \"idf\" values are at least 1 (smoothed idf)");
      }
      w.weight = numbers<float>(jw, "weight", w.tiers * w.terms.size());
      w.intercept = numbers<double>(jw, "intercept", w.tiers, true);
      if (!jw.contains("alpha") || !jw["alpha"].is_number() || !(jw["alpha"].get<double>() >= 0))
        throw Error("router file: \"alpha\" must be a number ≥ 0");
      w.alpha = jw["alpha"].get<double>();
      f.shift = numbers<float>(jf, "shift", kFeatures);
      f.scale = numbers<float>(jf, "scale", kFeatures);
      impl->fitted = true;
    }
    if (j.contains("heads_trained") && j["heads_trained"].is_object()) {
      impl->context_trained = j["heads_trained"].value("context", false);
      impl->retrieval_trained = j["heads_trained"].value("retrieval", false);
      impl->sampling_trained = j["heads_trained"].value("sampling", false);
    }
    if (j.contains("model_view")) {
      const auto& view = j["model_view"];
      if (!view.is_array() || view.size() != kFeatures)
        throw Error("router file: \"model_view\" must hold 128 entries");
      for (const auto& v : view) {
        if (!v.is_null() && !(v.is_number() && std::isfinite(v.get<double>())))
          throw Error("router file: \"model_view\" entries are numbers or null");
        impl->model_view.push_back(v.is_null() ? std::numeric_limits<float>::quiet_NaN() : v.get<float>());
      }
    }
    r.quantized_ = j.value("quantized", false);
    compile(L, r.theta_, r.quantized_, *impl);
    r.impl_ = std::move(impl);
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed router file: " + e.what());
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

RouterHandle::RouterHandle(std::string path)
    : path_(std::move(path)), router_(std::make_shared<const Router>(Router::load(path_))), stamp_(file_stamp(path_)) {}

std::shared_ptr<const Router> RouterHandle::get() const {
  std::lock_guard lock(mutex_);
  return router_;
}

bool RouterHandle::reload_if_changed(std::string* error) {
  const int64_t stamp = file_stamp(path_);
  {
    std::lock_guard lock(mutex_);
    if (stamp == stamp_) return false;
  }
  try {
    auto fresh = std::make_shared<const Router>(Router::load(path_));
    std::lock_guard lock(mutex_);
    router_ = std::move(fresh);
    stamp_ = stamp;
    return true;
  } catch (const Error& e) {  // keep serving the old router; say why the new file was refused
    if (error) *error = e.what();
    std::lock_guard lock(mutex_);
    stamp_ = stamp;  // do not retry a bad file on every request; a newer write changes the stamp
    return false;
  }
}

}  // namespace ruvllm::router
