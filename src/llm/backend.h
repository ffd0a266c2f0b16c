// Process-wide llama.cpp set-up and log routing, shared by everything in src/llm.
#pragma once

#include <string>

namespace ruvllm::llm::detail {

// Initialises the llama.cpp backends once per process and routes llama.cpp's log through ruvllm:
// errors go to stderr (everything with RUVLLM_LLAMA_LOG=debug), and errors are also
// collected for the calling thread while a LogCapture is alive, so that a failed load can say why.
void ensure_backend();

// Collects llama.cpp error lines logged on this thread during its lifetime.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  // The collected lines, joined with "; ", or `fallback` when there were none.
  std::string message(const std::string& fallback) const;

 private:
  std::string lines_;
  std::string* previous_;
};

}  // namespace ruvllm::llm::detail
