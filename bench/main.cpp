// ruvllm-bench: the benchmarks, a program of their own so that the product binary carries none of
// their code (`ruvllm bench ...` runs this program). Each prints a markdown table and writes JSON
// with the machine, the inputs, and the reference measured in the same run.
#include <cstdio>
#include <exception>

#include "bench/bench.h"

int main(int argc, char** argv) {
  CLI::App app{"ruvllm-bench: ruvllm's benchmarks (JSON + markdown, the reference measured in the same run)"};
  app.require_subcommand(1);
  ruvllm::bench::add_bench_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ruvllm-bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
