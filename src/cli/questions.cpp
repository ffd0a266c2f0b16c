// Labelled questions for the commands that learn from them (attention train, router evidence).
#include "questions.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "common/json_depth.h"

namespace ruvllm::cli {

// Questions in the schema of ../shared/data/qa ({"id", "question", "supporting": [ids]})
// or ../shared/data/ir ({"id", "text", "relevant": {id: grade}}: the highest-graded ids are gold).
std::vector<std::pair<std::string, pipeline::LabelledQuestion>> read_labelled_questions(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read the questions file " + path);
  std::vector<std::pair<std::string, pipeline::LabelledQuestion>> out;
  std::size_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto fail = [&](const std::string& why) {
      throw std::runtime_error(path + ":" + std::to_string(line_no) + ": " + why);
    };
    if (common::json_nests_deeper_than(line))
      fail("nests deeper than " + std::to_string(common::kMaxJsonDepth) + " levels");
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object()) fail("not a JSON object");
    const char* text_key = j.contains("question") ? "question" : "text";
    if (!j.contains(text_key) || !j[text_key].is_string()) fail("\"question\" (or \"text\") must be a string");
    pipeline::LabelledQuestion q{j[text_key], {}};
    if (j.contains("supporting")) {
      if (!j["supporting"].is_array()) fail("\"supporting\" must be an array of ids");
      for (const auto& id : j["supporting"]) {
        if (!id.is_string()) fail("\"supporting\" must hold strings");
        q.gold_sources.push_back(id);
      }
    } else if (j.contains("relevant") && j["relevant"].is_object()) {
      int top = 0;
      for (const auto& [id, grade] : j["relevant"].items()) {
        if (!grade.is_number_integer()) fail("relevance grades must be whole numbers");
        top = std::max(top, grade.get<int>());
      }
      for (const auto& [id, grade] : j["relevant"].items())
        if (grade.get<int>() == top) q.gold_sources.push_back(id);
    } else {
      fail("needs \"supporting\" (an array of ids) or \"relevant\" (an object of id: grade)");
    }
    if (q.gold_sources.empty()) fail("no gold ids");
    std::string id = j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>() : std::to_string(line_no);
    out.emplace_back(std::move(id), std::move(q));
  }
  if (out.empty()) throw std::runtime_error(path + ": no questions");
  return out;
}

}  // namespace ruvllm::cli
