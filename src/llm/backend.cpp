#include "backend.h"

#include <llama.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string_view>
#include <thread>

#include "ruvllm/llm.h"

namespace ruvllm::llm::detail {
namespace {

// The capture target of the current thread (llama.cpp logs on the thread that called it).
thread_local std::string* tls_capture = nullptr;

bool verbose_llama_log() {
  const char* level = std::getenv("RUVLLM_LLAMA_LOG");
  return level != nullptr && std::string_view(level) == "debug";
}

void route_log(ggml_log_level level, const char* text, void* user_data) {
  const bool verbose = user_data != nullptr;
  if (level == GGML_LOG_LEVEL_ERROR && tls_capture != nullptr) {
    std::string_view line(text);
    while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.remove_suffix(1);
    if (!line.empty()) {
      if (!tls_capture->empty()) tls_capture->append("; ");
      tls_capture->append(line);
    }
    return;  // reported to the caller through the exception instead
  }
  if (verbose || level == GGML_LOG_LEVEL_ERROR) {
    std::fputs(text, stderr);
  }
}

}  // namespace

void ensure_backend() {
  static std::once_flag once;
  std::call_once(once, [] {
    // A non-null user pointer marks verbose mode; the flag is fixed for the process lifetime.
    static int verbose_marker = 0;
    void* user = verbose_llama_log() ? &verbose_marker : nullptr;
    llama_log_set(route_log, user);
    llama_backend_init();
  });
}

LogCapture::LogCapture() : previous_(tls_capture) { tls_capture = &lines_; }
LogCapture::~LogCapture() { tls_capture = previous_; }

ThreadPool::ThreadPool(int threads) : pool_(nullptr, ggml_threadpool_free) {
  ggml_threadpool_params params = ggml_threadpool_params_default(threads);
  params.poll = 0;
  pool_.reset(ggml_threadpool_new(&params));
  if (!pool_) throw Error("cannot create a CPU thread pool of " + std::to_string(threads) + " threads");
}

int default_threads(int requested) {
  return requested > 0 ? requested : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

std::string LogCapture::message(const std::string& fallback) const { return lines_.empty() ? fallback : lines_; }

}  // namespace ruvllm::llm::detail
