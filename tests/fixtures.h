// Shared test fixtures: temporary files, the optional ../shared/data, and a tiny generated LFM2.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace ruvllm::test {

// A folder for this test run's files (created on first use).
std::string tmp_dir();
// Path of `relative` under ../shared/data, or "" when it is absent on this machine.
std::string shared_data(const std::string& relative);
// A tiny generated LFM2 model (f16), written once and reused: the real architecture at test size.
const std::string& tiny_lfm2();
// Writes `bytes` to a new file under tmp_dir() and returns its path.
std::string write_file(const std::string& name, const std::string& bytes);
std::string read_file(const std::string& path);

// Runs the `ruvllm` program with `args` (a shell word list); stdout and stderr together.
struct CommandResult {
  int status;
  std::string out;
};
CommandResult run(const std::string& args);

}  // namespace ruvllm::test

// Binds `var` to a ../shared/data file, or skips the test with a clear message when it is absent.
#define RUVLLM_REQUIRE_SHARED(var, relative)                                                      \
  const std::string var = ::ruvllm::test::shared_data(relative);                                  \
  if (var.empty()) {                                                                              \
    GTEST_SKIP() << "skipped: " << (relative) << " is not under " << RUVLLM_SHARED_DATA           \
                 << " (the ../shared/data folder beside the checkout is absent on this machine)"; \
  }
