// A one-line progress bar on stderr for long CLI jobs.
#pragma once

#include <cstdio>

namespace ruvllm::cli {

class ProgressBar {
 public:
  void operator()(double fraction) {
    const int percent = static_cast<int>(fraction * 100.0);
    if (percent == last_percent_) return;
    last_percent_ = percent;
    const int width = 40, filled = static_cast<int>(fraction * width);
    std::fprintf(stderr, "\r  [%.*s%*s] %3d%%", filled, "########################################", width - filled, "",
                 percent);
    if (fraction >= 1.0) std::fputc('\n', stderr);
  }

 private:
  int last_percent_ = -1;
};

}  // namespace ruvllm::cli
