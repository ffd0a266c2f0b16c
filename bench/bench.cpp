#include "bench/bench.h"

namespace ruvllm::bench {

void add_bench_commands(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks: JSON + markdown, reference measured in the same run");
  bench->require_subcommand(1);
  add_bench_models(*bench);
  add_bench_ann(*bench);
  add_bench_retrieval(*bench);
  add_bench_router(*bench);
  add_bench_e2e(*bench);
}

}  // namespace ruvllm::bench
