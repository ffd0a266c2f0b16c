#include <cstdio>
#include <exception>

#include "bench/bench.h"
#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"ruvllm: a self-learning LLM runtime on llama.cpp (LFM2 first)"};
  app.require_subcommand(1);
  app.fallthrough();
  ruvllm::cli::add_model_commands(app);
  ruvllm::cli::add_generate_command(app);
  ruvllm::cli::add_memory_commands(app);
  ruvllm::cli::add_attention_commands(app);
  ruvllm::cli::add_router_commands(app);
  ruvllm::cli::add_pipeline_commands(app);
  ruvllm::bench::add_bench_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ruvllm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
