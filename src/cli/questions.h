// Labelled questions in the schemas of ../shared/data: qa ({"id", "question", "supporting": [ids]})
// and ir ({"id", "text", "relevant": {id: grade}}, whose highest-graded ids are gold).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "ruvllm/pipeline.h"

namespace ruvllm::cli {

// (id, question) per line; throws std::runtime_error naming the file and line of a bad row.
std::vector<std::pair<std::string, pipeline::LabelledQuestion>> read_labelled_questions(const std::string& path);

}  // namespace ruvllm::cli
