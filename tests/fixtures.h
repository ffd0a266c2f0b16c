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
// Writes `bytes` to `path` (any folder) and returns the path.
std::string write_at(const std::string& path, const std::string& bytes);
// An empty folder tmp_dir()/name (emptied when it exists): one per test, since ctest runs the
// tests of one executable as parallel processes.
std::string fresh_dir(const std::string& name);
// Whether scripts/setup.sh has converted the default GloVe table (embed::default_word_vectors()).
bool have_word_vectors();
std::string read_file(const std::string& path);

// Runs the `ruvllm` program with `args` (a shell word list); stdout and stderr together.
struct CommandResult {
  int status;
  std::string out;
};
CommandResult run(const std::string& args);

}  // namespace ruvllm::test

// Skips the test with a clear message when the default word vectors are absent.
#define RUVLLM_REQUIRE_VECTORS()                                                               \
  if (!::ruvllm::test::have_word_vectors()) {                                                  \
    GTEST_SKIP() << "skipped: no word-vector table (scripts/setup.sh converts GloVe into it)"; \
  }

// Binds `var` to a ../shared/data file, or skips the test with a clear message when it is absent.
#define RUVLLM_REQUIRE_SHARED(var, relative)                                                      \
  const std::string var = ::ruvllm::test::shared_data(relative);                                  \
  if (var.empty()) {                                                                              \
    GTEST_SKIP() << "skipped: " << (relative) << " is not under " << RUVLLM_SHARED_DATA           \
                 << " (the ../shared/data folder beside the checkout is absent on this machine)"; \
  }
