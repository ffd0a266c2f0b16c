// `ruvllm bench ...` runs ruvllm-bench, the benchmarks' own program: the same subcommands and
// exit codes, and the product binary carries none of their code.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "fixtures.h"

namespace ruvllm {
namespace {

TEST(BenchCli, RuvllmBenchDispatchesToTheBenchmarksProgram) {
  const auto help = test::run("bench --help");
  EXPECT_EQ(help.status, 0) << help.out;
  for (const char* sub : {"models", "ann", "retrieval", "router", "e2e"})
    EXPECT_NE(help.out.find(sub), std::string::npos) << sub << " missing from:\n" << help.out;
  EXPECT_NE(help.out.find("ruvllm-bench"), std::string::npos) << help.out;
  // Its errors and exit codes come through unchanged.
  const auto bad = test::run("bench no-such-benchmark");
  EXPECT_NE(bad.status, 0) << bad.out;
  const auto missing = test::run("bench e2e");  // --config is required
  EXPECT_NE(missing.status, 0) << missing.out;
  // The program's own help lists bench, so that it can be found.
  const auto top = test::run("--help");
  EXPECT_NE(top.out.find("bench"), std::string::npos) << top.out;
}

// Without ruvllm-bench beside it, `ruvllm bench` says what to build and exits 127, as a shell would.
TEST(BenchCli, AMissingBenchmarksProgramIsAClearError) {
  namespace fs = std::filesystem;
  const fs::path dir = test::fresh_dir("bench-alone");
  fs::copy_file(RUVLLM_BINARY, dir / "ruvllm");
  const std::string cmd = (dir / "ruvllm").string() + " bench --help 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe.get())) out.append(buf, n);
  const int status = pclose(pipe.release());
  EXPECT_EQ(WEXITSTATUS(status), 127) << out;
  EXPECT_NE(out.find("ruvllm-bench"), std::string::npos) << out;
}

}  // namespace
}  // namespace ruvllm
