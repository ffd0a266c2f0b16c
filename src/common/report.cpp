#include "common/report.h"

#include <llama.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <thread>

#include "ruvllm_commit.h"

#ifndef RUVLLM_LLAMA_COMMIT
#define RUVLLM_LLAMA_COMMIT "unknown"
#endif

namespace ruvllm::common {
namespace {

std::string proc_field(const std::string& file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  }
  return {};
}

}  // namespace

Summary summarize(std::vector<double> samples) {
  Summary s;
  s.n = samples.size();
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(s.n);
  double var = 0;
  for (double x : samples) var += (x - s.mean) * (x - s.mean);
  s.stddev = s.n > 1 ? std::sqrt(var / static_cast<double>(s.n - 1)) : 0.0;
  const auto quantile = [&](double q) {
    const double pos = q * static_cast<double>(s.n - 1);
    const auto lo = static_cast<std::size_t>(std::floor(pos)), hi = static_cast<std::size_t>(std::ceil(pos));
    return samples[lo] + (samples[hi] - samples[lo]) * (pos - static_cast<double>(lo));
  };
  s.p50 = quantile(0.5);
  s.p99 = quantile(0.99);
  s.min = samples.front();
  s.max = samples.back();
  return s;
}

nlohmann::json to_json(const Summary& s) {
  return {{"mean", s.mean}, {"stddev", s.stddev}, {"p50", s.p50}, {"p99", s.p99},
          {"min", s.min},   {"max", s.max},       {"n", s.n}};
}

nlohmann::json machine_info() {
  utsname u{};
  uname(&u);
  const std::string mem = proc_field("/proc/meminfo", "MemTotal");
  std::time_t now = std::time(nullptr);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return {{"cpu", proc_field("/proc/cpuinfo", "model name")},
          {"hardware_threads", std::thread::hardware_concurrency()},
          {"memory", mem},
          {"kernel", std::string(u.sysname) + " " + u.release},
          {"ruvllm_commit", RUVLLM_COMMIT},
          {"llama_cpp_commit", RUVLLM_LLAMA_COMMIT},
          {"llama_system_info", llama_print_system_info()},
          {"timestamp_utc", when}};
}

uint64_t peak_rss_bytes() {
  const std::string hwm = proc_field("/proc/self/status", "VmHWM");  // "123456 kB"
  return hwm.empty() ? 0 : std::stoull(hwm) * 1024;
}

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  return static_cast<bool>(out.flush());
}

void write_report(const std::string& dir, const std::string& name, const nlohmann::json& json,
                  const std::string& markdown) {
  std::filesystem::create_directories(dir);
  const auto base = std::filesystem::path(dir) / name;
  std::ofstream(base.string() + ".json") << json.dump(2) << "\n";
  std::ofstream md(base.string() + ".md");
  md << markdown;
  // The markdown file names the machine and the code that measured it; the JSON file has them under
  // "machine", and stdout gets the table alone.
  if (json.contains("machine") && json["machine"].is_object()) {
    const auto& m = json["machine"];
    const auto field = [&](const char* k) {
      if (!m.contains(k)) return std::string("?");
      return m[k].is_string() ? m[k].get<std::string>() : m[k].dump();
    };
    md << "\nMeasured " << field("timestamp_utc") << " on " << field("cpu") << " (" << field("hardware_threads")
       << " hardware threads, " << field("memory") << "), ruvllm " << field("ruvllm_commit") << ", llama.cpp "
       << field("llama_cpp_commit") << ".\n";
  }
  md.close();
  std::fputs(markdown.c_str(), stdout);
  std::fprintf(stderr, "wrote %s.json and %s.md\n", base.c_str(), base.c_str());
}

}  // namespace ruvllm::common
