// The benchmarks are subcommands of `ruvllm-bench` (bench/main.cpp), which `ruvllm bench ...` runs.
// Each prints a markdown table and writes JSON with the machine, the inputs, and the reference
// measured in the same run.
#pragma once

#include <CLI/CLI.hpp>

#include "common/report.h"

namespace ruvllm::bench {

// The report pieces every benchmark uses (common/report.h).
using common::machine_info;
using common::peak_rss_bytes;
using common::reset_peak_rss;
using common::summarize;
using common::Summary;
using common::to_json;
using common::write_report;

void add_bench_commands(CLI::App& app);  // every benchmark below, as subcommands of `app`

// One per benchmark file.
void add_bench_models(CLI::App& bench);
void add_bench_ann(CLI::App& bench);
void add_bench_retrieval(CLI::App& bench);
void add_bench_router(CLI::App& bench);
void add_bench_e2e(CLI::App& bench);

}  // namespace ruvllm::bench
