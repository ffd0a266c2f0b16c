#include "fixtures.h"

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "ruvllm/embed.h"
#include "ruvllm/llm.h"

namespace ruvllm::test {
namespace fs = std::filesystem;

std::string tmp_dir() {
  const fs::path dir = RUVLLM_TEST_TMP;
  fs::create_directories(dir);
  return dir.string();
}

std::string write_at(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string fresh_dir(const std::string& name) {
  const std::string dir = tmp_dir() + "/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

bool have_word_vectors() { return fs::exists(embed::default_word_vectors()); }

std::string shared_data(const std::string& relative) {
  const fs::path path = fs::path(RUVLLM_SHARED_DATA) / relative;
  return fs::exists(path) ? path.string() : std::string{};
}

const std::string& tiny_lfm2() {
  // Synth is deterministic (fixed seed) and renames a per-process temporary into place, so test
  // processes running in parallel may all write it safely.
  static const std::string path = [] {
    const std::string p = (fs::path(tmp_dir()) / "tiny-lfm2-f16.gguf").string();
    if (!fs::exists(p)) {
      llm::SynthParams params;
      params.size = "tiny";
      params.out = p;
      params.type = "f16";
      params.seed = 7;
      llm::synth_lfm2(params);
    }
    return p;
  }();
  return path;
}

std::string write_file(const std::string& name, const std::string& bytes) {
  const std::string path = (fs::path(tmp_dir()) / name).string();
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CommandResult run(const std::string& args) {
  const std::string cmd = std::string(RUVLLM_BINARY) + " " + args + " 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe.get())) out.append(buf, n);
  const int status = pclose(pipe.release());
  return {WEXITSTATUS(status), out};
}

}  // namespace ruvllm::test
