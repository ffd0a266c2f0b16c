// The graph-attention model file: versioned JSON with the shape, the relation and feature layout
// it was trained with, θ and the anchor. Written to a temporary file and renamed, so that a reader
// never sees half a file.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/json_depth.h"
#include "gat.h"

namespace ruvllm::attention {

void AttentionModel::save(const std::string& path) const {
  for (std::size_t i = 0; i < theta_.size(); ++i) {
    if (!std::isfinite(theta_[i]) || !std::isfinite(anchor_[i]))
      throw Error("attention: refusing to save non-finite parameters");
  }
  nlohmann::json j;
  j["format"] = "ruvllm-attention";
  j["version"] = 1;
  j["dimension"] = dimension_;
  j["hidden"] = shape_.hidden;
  j["heads"] = shape_.heads;
  j["leaky_slope"] = shape_.leaky_slope;
  j["recency_days"] = shape_.recency_days;
  j["query_interaction"] = shape_.query_interaction;
  j["relations"] = std::vector<std::string>(kRelations.begin(), kRelations.end());
  j["meta_features"] = std::vector<std::string>(kMetaFeatures.begin(), kMetaFeatures.end());
  j["theta"] = theta_;
  j["anchor"] = anchor_;
  const std::string tmp = path + ".partial";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw Error(ErrorCode::io, "attention: cannot write " + tmp);
    out << j.dump() << "\n";
    if (!out.flush()) throw Error(ErrorCode::io, "attention: cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw Error(ErrorCode::io, "attention: cannot replace " + path + ": " + ec.message());
}

AttentionModel AttentionModel::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::io, "attention: cannot read the model file " + path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (common::json_nests_deeper_than(text)) throw Error(path + " is not a ruvllm attention model (nests too deep)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
    if (j.value("format", "") != "ruvllm-attention") throw Error(path + " is not a ruvllm attention model");
    if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int64_t>() != 1)
      throw Error(path + ": attention model version " + (j.contains("version") ? j["version"].dump() : "(none)") +
                  " is not supported (this build reads version 1)");
    // Whole non-negative numbers only: a cast from 16.9 or 1e20 would be silent or undefined.
    auto count = [&](const char* key, std::size_t max) {
      if (!j.contains(key) || !j[key].is_number_unsigned() || j[key].get<uint64_t>() > max)
        throw Error(path + ": \"" + key + "\" must be a whole number in [0, " + std::to_string(max) + "]");
      return static_cast<std::size_t>(j[key].get<uint64_t>());
    };
    AttentionShape shape;
    shape.hidden = count("hidden", 256);
    shape.heads = count("heads", 16);
    const std::size_t dimension = count("dimension", 65536);
    shape.leaky_slope = j.at("leaky_slope").get<double>();
    shape.recency_days = j.at("recency_days").get<double>();
    shape.query_interaction = j.at("query_interaction").get<bool>();
    if (j.at("relations").get<std::vector<std::string>>() !=
            std::vector<std::string>(kRelations.begin(), kRelations.end()) ||
        j.at("meta_features").get<std::vector<std::string>>() !=
            std::vector<std::string>(kMetaFeatures.begin(), kMetaFeatures.end())) {
      throw Error(path + ": the model's relation or feature layout differs from this build's");
    }
    check_shape(shape);
    auto theta = j.at("theta").get<std::vector<double>>();
    auto anchor = j.at("anchor").get<std::vector<double>>();
    const std::size_t expected = Layout(dimension, shape).total;  // checked before any allocation
    if (theta.size() != expected || anchor.size() != expected)
      throw Error(path + ": the parameter count does not match the shape");
    AttentionModel model(dimension, shape);
    for (std::size_t i = 0; i < theta.size(); ++i) {
      if (!std::isfinite(theta[i]) || !std::isfinite(anchor[i])) throw Error(path + ": a parameter is not finite");
    }
    model.theta_ = std::move(theta);
    model.anchor_ = std::move(anchor);
    return model;
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed attention model: " + e.what());
  }
}

}  // namespace ruvllm::attention
