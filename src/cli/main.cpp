#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "commands.h"
#include "ruvllm_commit.h"

namespace {

// `ruvllm bench ...` runs the benchmarks' own program, ruvllm-bench, from this program's folder:
// the product binary carries none of their code.
[[noreturn]] void run_bench(int argc, char** argv) {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) self = std::filesystem::absolute(argv[0], ec);  // argv[0] as run: a path, or a name found on PATH
  const std::string bench = (self.has_parent_path() ? self.parent_path() / "ruvllm-bench" : "ruvllm-bench").string();
  std::vector<char*> args{const_cast<char*>(bench.c_str())};
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  if (bench.find('/') != std::string::npos)
    execv(bench.c_str(), args.data());
  else
    execvp(bench.c_str(), args.data());
  std::fprintf(stderr,
               "ruvllm: error: cannot run %s (%s); build it with `cmake --build <tree> --target ruvllm-bench`\n",
               bench.c_str(), std::strerror(errno));
  std::exit(127);  // as a shell says of a command it cannot find
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "bench") run_bench(argc, argv);
  CLI::App app{"ruvllm: a self-learning LLM runtime on llama.cpp (LFM2 first)"};
  app.require_subcommand(1);
  app.set_version_flag("--version",
                       std::string("ruvllm ") + RUVLLM_COMMIT + " (llama.cpp " + RUVLLM_LLAMA_COMMIT + ")");
  app.fallthrough();
  ruvllm::cli::add_model_commands(app);
  ruvllm::cli::add_generate_command(app);
  ruvllm::cli::add_memory_commands(app);
  ruvllm::cli::add_attention_commands(app);
  ruvllm::cli::add_router_commands(app);
  ruvllm::cli::add_pipeline_commands(app);
  // Listed in --help; run_bench takes it before parsing.
  app.add_subcommand("bench", "Benchmarks (runs ruvllm-bench beside this program): ruvllm bench --help")
      ->allow_extras();
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
