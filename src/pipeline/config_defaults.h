// The keys whose default derives from others (paths under data_dir, the last model as default),
// filled the same way by load_config and by a Pipeline given a Config built in code.
#pragma once

#include "ruvllm/pipeline.h"

namespace ruvllm::pipeline::detail {

void fill_derived_defaults(Config& config);

}  // namespace ruvllm::pipeline::detail
