#include "bench/bench.h"

namespace ruvllm::bench {

void add_bench_commands(CLI::App& app) {
  add_bench_models(app);
  add_bench_ann(app);
  add_bench_retrieval(app);
  add_bench_router(app);
  add_bench_e2e(app);
}

}  // namespace ruvllm::bench
