// Benchmarks are `ruvllm bench ...` subcommands. Each prints a markdown table and writes JSON
// with the machine, the inputs, and the reference measured in the same run.
#pragma once

#include <CLI/CLI.hpp>

namespace ruvllm::bench {

void add_bench_commands(CLI::App& app);

// One per benchmark file.
void add_bench_models(CLI::App& bench);
void add_bench_ann(CLI::App& bench);
void add_bench_retrieval(CLI::App& bench);
void add_bench_router(CLI::App& bench);
void add_bench_e2e(CLI::App& bench);

}  // namespace ruvllm::bench
