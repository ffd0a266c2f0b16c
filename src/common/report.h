// What every measurement report shares (the benchmarks, `router eval`): summary statistics, the
// machine description, the JSON + markdown output files.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ruvllm::common {

struct Summary {
  double mean = 0, stddev = 0, p50 = 0, p99 = 0, min = 0, max = 0;
  std::size_t n = 0;
};
Summary summarize(std::vector<double> samples);
nlohmann::json to_json(const Summary& s);

// CPU, cores, memory, kernel, ruvllm's and llama.cpp's commits, llama.cpp's system info line.
nlohmann::json machine_info();

// Peak resident set size of this process in bytes (VmHWM), and a reset of that peak so the next
// reading covers only what follows (Linux clear_refs "5"; returns false where unsupported).
uint64_t peak_rss_bytes();
bool reset_peak_rss();

// Writes `<dir>/<name>.json` and `<dir>/<name>.md` (ending with the machine and the commits when
// the JSON has machine_info() under "machine"), and prints the markdown to stdout.
void write_report(const std::string& dir, const std::string& name, const nlohmann::json& json,
                  const std::string& markdown);

}  // namespace ruvllm::common
